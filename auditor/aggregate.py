"""Fleet summaries computed from the observations, never stored twice.

Everything is counted in one pass by a `Tally`, one host at a time: it keeps counters (and a
few bounded samples of hosts for the summaries that name them), never the results, so a
run of any size is summed up in the same memory. A live run keeps its tally as results are
recorded; a run read back is counted once, and every reporter then reads the counts.

Readiness for a URL is reachable hosts over audited hosts; hosts that could not be audited
are counted separately and never as blocked. Skipped hosts (a connection the auditor has
no transport for) are counted on their own: neither blocked nor "not audited", and they
never change the exit status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from auditor.agent import AgentCounts, host_verdict
from auditor.models import (
    AgentVerdict,
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


SAMPLE = 500
"""How many blocked hosts, and not-audited hosts, a tally keeps by name (in run order)
for the summaries that list hosts; the rest are counted."""
REASON_SAMPLE = 50
"""Not-audited (and skipped) hosts kept per reason (the terminal lists a few per reason)."""
NAMES_KEPT = 12
"""Host names kept per cause of a blocked verdict."""
MAX_CAUSES = 10_000
"""Distinct causes (URL x outcome x TLS issuer or proxy) counted one by one; hostile hosts
could make every issuer unique, so beyond this they are counted together."""


class _Slice:
    """Counters for one group or platform."""

    __slots__ = ("audited", "blocked", "fully_ready", "hosts", "per_target", "skipped", "verdicts")

    def __init__(self, targets: int) -> None:
        self.hosts = 0
        self.audited = 0
        self.skipped = 0
        self.fully_ready = 0
        self.blocked = 0
        self.per_target: list[Counter[Outcome]] = [Counter() for _ in range(targets)]
        self.verdicts: Counter[tuple[int, Outcome]] = Counter()
        """Failing (target index, outcome) pairs of its blocked hosts."""


@dataclass(frozen=True)
class Cause:
    """Blocked host x URL verdicts that share a cause: the URL (by index), the outcome and
    the evidence that names it further (the TLS issuer, the proxy); the first names."""

    index: int
    outcome: Outcome
    evidence_label: str
    evidence: str
    count: int
    names: tuple[str, ...]


def evidence_of(o: Observation) -> tuple[str, str]:
    """What further names the cause of a blocked verdict: the TLS issuer seen (an
    interception product names itself there) or the proxy that refused."""
    if o.outcome is Outcome.TLS_FAILURE and o.tls_issuer:
        return "TLS issuer", o.tls_issuer
    if o.outcome is Outcome.PROXY_DENIED and o.proxy:
        return "proxy", o.proxy
    return "", ""


class _CauseCount:
    __slots__ = ("count", "names")

    def __init__(self) -> None:
        self.count = 0
        self.names: list[str] = []


class Tally:
    """A run's aggregates, counted one host at a time (`add`); holds counters and bounded
    samples, never the results themselves."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = tuple(targets)
        n = len(self.targets)
        self.hosts = 0
        self.audited = 0
        self.skipped = 0
        self.fully_ready = 0
        self.host_outcomes: Counter[HostOutcome] = Counter()
        self.target_outcomes: Counter[Outcome] = Counter()
        """Over every observation of every audited host."""
        self.per_target: list[Counter[Outcome]] = [Counter() for _ in range(n)]
        """Per target (through `observation_for`), over audited hosts."""
        self.groups: dict[str, _Slice] = {}
        self.platforms: dict[str, _Slice] = {}
        self.agents: Counter[AgentVerdict] = Counter()
        self.agent_hosts = 0
        self.agent_groups: dict[str, Counter[AgentVerdict]] = {}
        self.agent_group_hosts: Counter[str] = Counter()
        self.any_agent = False
        """Some audited host reported on its agent (the summaries then have an agent part)."""
        self.installed_agents: Counter[AgentVerdict] = Counter()
        """Verdicts of audited hosts with the agent installed (junit.xml's agent suite)."""
        self.agent_blocked: list[tuple[str, str]] = []
        """(host name, reason) of the first agents blocked from the CDN."""
        self.require_agent_failures = 0
        self.blocked_sample: list[AuditedHost] = []
        self.unaudited_sample: list[UnauditedHost] = []
        """The first not-audited hosts, skipped ones included."""
        self.reason_sample: dict[HostOutcome, list[UnauditedHost]] = {}
        self.blocked_verdicts = 0
        """Failing host x URL verdicts (target order, through `observation_for`)."""
        self._causes: dict[tuple[int, Outcome, str, str], _CauseCount] = {}
        self.causes_lumped = 0

    def add(self, result: HostResult) -> None:
        """Count one host's result."""
        self.hosts += 1
        targets = self.targets
        host = result.host
        groups = host.groups or ("ungrouped",)
        slices = [self._slice(self.groups, g) for g in groups]
        slices.append(self._slice(self.platforms, host.platform.value))
        verdict, reason = host_verdict(result, targets)
        if not result.skipped:
            self.agents[verdict] += 1
            self.agent_hosts += 1
            for group in groups:
                self.agent_group_hosts[group] += 1
                self.agent_groups.setdefault(group, Counter())[verdict] += 1
            if verdict in (AgentVerdict.NO_AGENT, AgentVerdict.TOO_OLD):
                self.require_agent_failures += 1
        else:
            for group in groups:
                self.agent_groups.setdefault(group, Counter())
        if verdict is AgentVerdict.CDN_BLOCKED and len(self.agent_blocked) < SAMPLE:
            self.agent_blocked.append((host.name, reason))
        for piece in slices:
            piece.hosts += 1
        if isinstance(result, UnauditedHost):
            self.host_outcomes[result.outcome] += 1
            if result.skipped:
                self.skipped += 1
                for piece in slices:
                    piece.skipped += 1
            kept = self.reason_sample.setdefault(result.outcome, [])
            if len(kept) < REASON_SAMPLE:
                kept.append(result)
            if len(self.unaudited_sample) < SAMPLE:
                self.unaudited_sample.append(result)
            return
        self.audited += 1
        if result.agent is not None:
            self.any_agent = True
            if result.agent.installed:
                self.installed_agents[verdict] += 1
        ready = True
        for o in result.observations:
            self.target_outcomes[o.outcome] += 1
            if o.outcome is not Outcome.REACHABLE:
                ready = False
        failing: list[tuple[int, Outcome]] = []
        for index, target in enumerate(targets):
            o = observation_for(result, index, target)
            self.per_target[index][o.outcome] += 1
            for piece in slices:
                piece.per_target[index][o.outcome] += 1
            if o.outcome is not Outcome.REACHABLE:
                failing.append((index, o.outcome))
                self.blocked_verdicts += 1
                self._cause(index, o, host.name)
        for piece in slices:
            piece.audited += 1
        if ready:
            self.fully_ready += 1
            for piece in slices:
                piece.fully_ready += 1
        elif len(self.blocked_sample) < SAMPLE:
            self.blocked_sample.append(result)
        if failing:
            for group in groups:
                piece = self.groups[group]
                piece.blocked += 1
                piece.verdicts.update(failing)

    def _slice(self, table: dict[str, _Slice], name: str) -> _Slice:
        piece = table.get(name)
        if piece is None:
            piece = table[name] = _Slice(len(self.targets))
        return piece

    def _cause(self, index: int, o: Observation, name: str) -> None:
        key = (index, o.outcome, *evidence_of(o))
        entry = self._causes.get(key)
        if entry is None:
            if len(self._causes) >= MAX_CAUSES:
                self.causes_lumped += 1
                return
            entry = self._causes[key] = _CauseCount()
        entry.count += 1
        if len(entry.names) < NAMES_KEPT:
            entry.names.append(name)

    # --- reading the counts -------------------------------------------------------------

    @property
    def not_audited(self) -> int:
        return self.hosts - self.audited - self.skipped

    @property
    def blocked_hosts(self) -> int:
        return self.audited - self.fully_ready

    def causes(self) -> list[Cause]:
        """Every counted cause, largest first (then URL order, then outcome order)."""
        order = {o: i for i, o in enumerate(Outcome)}
        found = [
            Cause(index, outcome, label, evidence, entry.count, tuple(entry.names))
            for (index, outcome, label, evidence), entry in self._causes.items()
        ]
        found.sort(key=lambda c: (-c.count, c.index, order[c.outcome]))
        return found

    def summaries(self) -> tuple[TargetSummary, ...]:
        return _summaries(self.targets, self.hosts, self.audited, self.skipped, self.per_target)

    def totals(self) -> RunTotals:
        return RunTotals(
            hosts=self.hosts,
            audited=self.audited,
            fully_ready=self.fully_ready,
            skipped=self.skipped,
            host_outcomes=tuple(
                (o, self.host_outcomes[o]) for o in HostOutcome if self.host_outcomes[o]
            ),
            target_outcomes=tuple(
                (o, self.target_outcomes[o]) for o in Outcome if self.target_outcomes[o]
            ),
        )

    def slices(self, table: dict[str, _Slice]) -> tuple[SliceSummary, ...]:
        return tuple(
            SliceSummary(
                name=name,
                hosts=piece.hosts,
                audited=piece.audited,
                fully_ready=piece.fully_ready,
                targets=_summaries(
                    self.targets, piece.hosts, piece.audited, piece.skipped, piece.per_target
                ),
                skipped=piece.skipped,
            )
            for name, piece in sorted(table.items())
        )

    def agent_counts(self) -> AgentCounts:
        return _agent_counts(self.agent_hosts, self.agents)

    def agent_groups_counts(self) -> list[tuple[str, AgentCounts]]:
        return [
            (g, _agent_counts(self.agent_group_hosts[g], self.agent_groups[g]))
            for g in sorted(self.agent_groups)
        ]

    def exit_status(self, require_agent: bool = False) -> int:
        if require_agent and self.require_agent_failures:
            return EXIT_BLOCKED
        if self.blocked_hosts:
            return EXIT_BLOCKED
        if self.not_audited:
            return EXIT_NOT_AUDITED
        return EXIT_OK


def _agent_counts(hosts: int, counts: Counter[AgentVerdict]) -> AgentCounts:
    from types import MappingProxyType

    return AgentCounts(hosts, MappingProxyType({v: counts[v] for v in AgentVerdict}))


def _summaries(
    targets: Sequence[Target],
    hosts: int,
    audited: int,
    skipped: int,
    per_target: Sequence[Counter[Outcome]],
) -> tuple[TargetSummary, ...]:
    return tuple(
        TargetSummary(
            target=target,
            hosts=hosts,
            audited=audited,
            reachable=counts[Outcome.REACHABLE],
            outcomes=tuple((o, counts[o]) for o in Outcome if counts[o]),
            skipped=skipped,
        )
        for target, counts in zip(targets, per_target, strict=True)
    )


def count(targets: Sequence[Target], results: Iterable[HostResult]) -> Tally:
    """A tally of `results` (one pass)."""
    found = Tally(targets)
    for result in results:
        found.add(result)
    return found


def tally_of(run: AuditRun) -> Tally:
    """The run's tally: the one its maker kept, else counted now (one pass over results)."""
    kept = run.totals
    if isinstance(kept, Tally) and kept.targets == run.info.targets:
        return kept
    return count(run.info.targets, run.results)


def summarize_targets(
    run: AuditRun, results: Iterable[HostResult] | None = None
) -> tuple[TargetSummary, ...]:
    """Per-URL summaries over `results` (default: every host of the run)."""
    if results is None:
        return tally_of(run).summaries()
    return count(run.info.targets, results).summaries()


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
    return tally_of(run).totals()


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


def by_group(run: AuditRun) -> tuple[SliceSummary, ...]:
    """Per inventory group (a host in several groups counts in each)."""
    found = tally_of(run)
    return found.slices(found.groups)


def by_platform(run: AuditRun) -> tuple[SliceSummary, ...]:
    found = tally_of(run)
    return found.slices(found.platforms)


def host_outcome_counts(run: AuditRun) -> tuple[tuple[HostOutcome, int], ...]:
    """How many hosts were not audited, by reason."""
    return tally_of(run).totals().host_outcomes


def target_outcome_counts(run: AuditRun) -> tuple[tuple[Outcome, int], ...]:
    """Host x target verdicts over audited hosts, by outcome."""
    return tally_of(run).totals().target_outcomes


def exit_status(run: AuditRun, require_agent: bool = False) -> int:
    """0 all audited hosts reach all targets; 1 something blocked (or, with
    `require_agent`, a host has no Qualys agent or one too old for the CDN); 3 nothing
    blocked but some hosts not audited. Skipped hosts count for nothing here. (2 is bad
    input, decided before a run starts.)"""
    return tally_of(run).exit_status(require_agent)
