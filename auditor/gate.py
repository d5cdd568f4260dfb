"""The readiness gate a change board signs: `--fail-under PCT` and `--fail-on OUTCOME`.

For the gate, a URL's readiness is the hosts that reach it over every host in scope: a host
that could not be audited counts as not ready, so a gate can never be passed on hosts that
were not checked. Hosts skipped by design (a connection the auditor has no transport for,
such as a network device) are out of scope, as they are everywhere else in the reports.
Pure functions; the CLI turns the verdict into the exit status.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditor.aggregate import tally_of
from auditor.models import AuditRun

EXIT_GATE_PASSED = 0
EXIT_GATE_FAILED = 1


@dataclass(frozen=True)
class Gate:
    """What the gate demands: a readiness floor per URL, and outcomes that must not occur."""

    fail_under: float | None = None
    fail_on: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.fail_under is not None or bool(self.fail_on)


@dataclass(frozen=True)
class UrlVerdict:
    url: str
    name: str
    ready: int
    in_scope: int
    passed: bool

    @property
    def percent(self) -> float | None:
        return None if self.in_scope == 0 else 100.0 * self.ready / self.in_scope


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    urls: tuple[UrlVerdict, ...]
    """Per URL, in target order (empty without `fail_under`)."""
    hits: tuple[tuple[str, int], ...]
    """Per `fail_on` outcome, how many host x URL verdicts (or hosts, for a host-level
    outcome) had it."""

    @property
    def passed(self) -> bool:
        return all(u.passed for u in self.urls) and not any(n for _, n in self.hits)

    @property
    def exit_status(self) -> int:
        return EXIT_GATE_PASSED if self.passed else EXIT_GATE_FAILED


def in_scope(run: AuditRun) -> int:
    """Hosts the gate counts: every host of the run but the skipped ones."""
    tally = tally_of(run)
    return tally.hosts - tally.skipped


def evaluate(run: AuditRun, gate: Gate) -> GateResult:
    """The gate's verdict, from the run's counts (`auditor.aggregate.tally_of`)."""
    tally = tally_of(run)
    scope = tally.hosts - tally.skipped
    urls: list[UrlVerdict] = []
    if gate.fail_under is not None:
        for summary in tally.summaries():
            target = summary.target
            ready = summary.reachable
            # Exact: ready/scope < PCT/100, in integers and one float multiply, so 95 % of
            # 20 hosts (19) passes a 95 % gate; no hosts in scope proves nothing and fails.
            passed = scope > 0 and ready * 100 >= gate.fail_under * scope
            urls.append(UrlVerdict(target.url, target.name, ready, scope, passed))
    # Target and host outcomes share some names ("error"): both count.
    counts: dict[str, int] = {}
    for outcome, n in [*tally.target_outcomes.items(), *tally.host_outcomes.items()]:
        counts[outcome.value] = counts.get(outcome.value, 0) + n
    hits = tuple((name, counts.get(name, 0)) for name in dict.fromkeys(gate.fail_on))
    return GateResult(gate, tuple(urls), hits)


def format_percent(ready: int, total: int, fail_under: float | None = None) -> str:
    """Readiness to the nearest 0.1, as the report's headline shows it ("91.8 %"), except
    that a gap is never rounded away: short of all hosts is never "100 %", and a URL that
    fails a `fail_under` gate never shows a figure that would pass it (94.96 % of a 95 %
    gate reads "94.9 %", not "95 %")."""
    if total <= 0:
        return "n/a"
    tenths = (ready * 2000 + total) // (2 * total)  # half up, in integers
    if ready < total:
        tenths = min(tenths, 999)
    if fail_under is not None and ready * 100 < fail_under * total:
        while tenths > 0 and tenths / 10 >= fail_under:
            tenths -= 1
    text = f"{tenths / 10:.1f}".removesuffix(".0")
    return f"{text} %"


def _describe(u: UrlVerdict, fail_under: float | None) -> str:
    if u.in_scope == 0:
        return f"{u.name or u.url}: no hosts in scope"
    share = format_percent(u.ready, u.in_scope, fail_under)
    return f"{u.name or u.url} {share} ({u.ready:,} of {u.in_scope:,} hosts)"


def gate_line(result: GateResult) -> str:
    """The gate and its result in one line, for the terminal summary and the HTML report,
    e.g. "gate 95 %: FAILED — US3 CDN 91.8 % (1,204 of 1,312 hosts)"."""
    parts: list[str] = []
    gate = result.gate
    if gate.fail_under is not None:
        head = f"gate {gate.fail_under:g} %"
        failing = sorted(
            (u for u in result.urls if not u.passed), key=lambda u: (u.percent or 0.0, u.url)
        )
        if failing:
            parts.append(
                f"{head}: FAILED — "
                + "; ".join(_describe(u, result.gate.fail_under) for u in failing)
            )
        elif result.urls:
            lowest = min(result.urls, key=lambda u: (u.percent or 0.0, u.url))
            parts.append(f"{head}: passed — lowest {_describe(lowest, None)}")
        else:
            parts.append(f"{head}: passed — no URLs")
    for name, count in result.hits:
        if count:
            parts.append(f"fail-on {name}: FAILED — seen {count:,} time{'s' if count != 1 else ''}")
        else:
            parts.append(f"fail-on {name}: passed — not seen")
    return " | ".join(parts)
