"""Fleet summaries computed from the observations, never stored twice.

Readiness for a URL is reachable hosts over audited hosts; hosts that could not be audited
are counted separately and never as blocked. Skipped hosts (a connection the auditor has
no transport for) are counted on their own: neither blocked nor "not audited", and they
never change the exit status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from auditor.models import (
    AuditedHost,
    AuditRun,
    HostResult,
    Observation,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome, Outcome

EXIT_OK = 0
EXIT_BLOCKED = 1
EXIT_USAGE = 2
EXIT_NOT_AUDITED = 3


@dataclass(frozen=True)
class TargetSummary:
    """How the fleet (or one slice of it) fares against one URL."""

    target: Target
    hosts: int
    audited: int
    reachable: int
    outcomes: tuple[tuple[Outcome, int], ...]
    skipped: int = 0

    @property
    def blocked(self) -> int:
        return self.audited - self.reachable

    @property
    def not_audited(self) -> int:
        """Hosts that should have been audited and were not (skipped hosts excluded)."""
        return self.hosts - self.audited - self.skipped

    @property
    def readiness(self) -> float | None:
        """Percent of audited hosts that reach the URL; None when no host was audited."""
        return None if self.audited == 0 else 100.0 * self.reachable / self.audited


@dataclass(frozen=True)
class SliceSummary:
    """One group or platform: its hosts and its per-URL summaries."""

    name: str
    hosts: int
    audited: int
    fully_ready: int
    targets: tuple[TargetSummary, ...]
    skipped: int = 0

    @property
    def not_audited(self) -> int:
        return self.hosts - self.audited - self.skipped


def summarize_targets(
    run: AuditRun, results: Iterable[HostResult] | None = None
) -> tuple[TargetSummary, ...]:
    """Per-URL summaries over `results` (default: every host of the run)."""
    chosen = tuple(run.results if results is None else results)
    audited = [r for r in chosen if isinstance(r, AuditedHost)]
    skipped = sum(1 for r in chosen if r.skipped)
    summaries = []
    for index, target in enumerate(run.info.targets):
        counts = Counter(r.observations[index].outcome for r in audited)
        summaries.append(
            TargetSummary(
                target=target,
                hosts=len(chosen),
                audited=len(audited),
                reachable=counts[Outcome.REACHABLE],
                outcomes=tuple((o, counts[o]) for o in Outcome if counts[o]),
                skipped=skipped,
            )
        )
    return tuple(summaries)


@dataclass(frozen=True)
class RunTotals:
    """The run's headline counts, computed once for every reporter."""

    hosts: int
    audited: int
    fully_ready: int
    skipped: int
    host_outcomes: tuple[tuple[HostOutcome, int], ...]
    """Hosts not audited (and skipped), by reason."""
    target_outcomes: tuple[tuple[Outcome, int], ...]
    """Host x target verdicts over audited hosts, by outcome."""

    @property
    def not_audited(self) -> int:
        return self.hosts - self.audited - self.skipped


def run_totals(run: AuditRun) -> RunTotals:
    results = run.results
    return RunTotals(
        hosts=len(results),
        audited=sum(1 for r in results if r.audited),
        fully_ready=sum(1 for r in results if fully_ready(r)),
        skipped=sum(1 for r in results if r.skipped),
        host_outcomes=host_outcome_counts(run),
        target_outcomes=target_outcome_counts(run),
    )


def observation_for(result: AuditedHost, index: int, target: Target) -> Observation:
    """The host's observation of the run's `index`-th target; a results file that lacks one
    (cut short, or written by hand) reads as an error, never as reachable."""
    if index < len(result.observations):
        return result.observations[index]
    return Observation(target.url, Outcome.ERROR, "no observation was recorded for this URL")


def fully_ready(result: HostResult) -> bool:
    return isinstance(result, AuditedHost) and all(
        o.outcome is Outcome.REACHABLE for o in result.observations
    )


def _slices(run: AuditRun, keys: Callable[[HostResult], Iterable[str]]) -> tuple[SliceSummary, ...]:
    members: dict[str, list[HostResult]] = {}
    for result in run.results:
        for key in keys(result):
            members.setdefault(key, []).append(result)
    return tuple(
        SliceSummary(
            name=name,
            hosts=len(rs),
            audited=sum(1 for r in rs if r.audited),
            fully_ready=sum(1 for r in rs if fully_ready(r)),
            targets=summarize_targets(run, rs),
            skipped=sum(1 for r in rs if r.skipped),
        )
        for name, rs in sorted(members.items())
    )


def by_group(run: AuditRun) -> tuple[SliceSummary, ...]:
    """Per inventory group (a host in several groups counts in each)."""
    return _slices(run, lambda r: r.host.groups or ("ungrouped",))


def by_platform(run: AuditRun) -> tuple[SliceSummary, ...]:
    return _slices(run, lambda r: (r.host.platform.value,))


def host_outcome_counts(run: AuditRun) -> tuple[tuple[HostOutcome, int], ...]:
    """How many hosts were not audited, by reason."""
    counts = Counter(r.outcome for r in run.results if isinstance(r, UnauditedHost))
    return tuple((o, counts[o]) for o in HostOutcome if counts[o])


def target_outcome_counts(run: AuditRun) -> tuple[tuple[Outcome, int], ...]:
    """Host x target verdicts over audited hosts, by outcome."""
    counts: Counter[Outcome] = Counter()
    for r in run.results:
        if isinstance(r, AuditedHost):
            counts.update(o.outcome for o in r.observations)
    return tuple((o, counts[o]) for o in Outcome if counts[o])


def exit_status(run: AuditRun) -> int:
    """0 all audited hosts reach all targets; 1 something blocked; 3 nothing blocked but
    some hosts not audited. Skipped hosts count for nothing here. (2 is bad input,
    decided before a run starts.)"""
    blocked = any(
        o.outcome is not Outcome.REACHABLE
        for r in run.results
        if isinstance(r, AuditedHost)
        for o in r.observations
    )
    if blocked:
        return EXIT_BLOCKED
    if any(not r.audited and not r.skipped for r in run.results):
        return EXIT_NOT_AUDITED
    return EXIT_OK
