"""What the terminal shows: a compact end-of-run summary and a live progress line.

Everything a host (or an inventory) supplies is sanitised before it reaches the terminal
(`auditor.textsafe.for_terminal`): ANSI escape sequences, control characters and the bidi
and zero-width characters are removed, so a hostile host name or probe
message cannot move the cursor, retitle the window or hide lines.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from auditor.agent import fleet_sentence
from auditor.aggregate import fully_ready, tally_of
from auditor.models import AgentVerdict, AuditedHost, AuditRun, HostResult, UnauditedHost
from auditor.outcomes import HostOutcome, Outcome, host_hint
from auditor.textsafe import for_terminal

sanitize = for_terminal
"""`text` safe to print (see `auditor.textsafe.for_terminal`)."""


def format_readiness(percent: float | None) -> str:
    """Readiness as people read it: "92 %", "99.9 %"; never rounds a gap up to 100 %."""
    if percent is None or not math.isfinite(percent):
        return "n/a"
    if percent >= 100.0:
        return "100 %"
    if percent <= 0.0:
        return "0 %"
    value = min(max(round(percent, 1), 0.1), 99.9)
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} %"


_RESET = "\x1b[0m"
_STYLES = {
    "good": "\x1b[32m",
    "bad": "\x1b[31m",
    "warn": "\x1b[33m",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
}


def _painter(color: bool) -> Callable[[str, str], str]:
    def paint(text: str, style: str) -> str:
        return f"{_STYLES[style]}{text}{_RESET}" if color else text

    return paint


def _outcome_list(pairs: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {count}" for name, count in pairs) or "none"


def render_summary(run: AuditRun, color: bool, *, max_hosts: int = 20) -> str:
    """A compact plain-text summary of `run` for the terminal (ends with a newline).

    Per URL readiness, verdicts by outcome, up to `max_hosts` blocked hosts and up to
    `max_hosts` not-audited hosts shared between the reasons (then "and K more"), and the
    run's warnings.
    With `color`, ANSI colours are added; host-supplied text is sanitised either way.
    """
    paint = _painter(color)
    info = run.info
    # Counts and the first few hosts of each kind, from the run's tally: the summary never
    # reads every result again.
    tally = tally_of(run)
    totals = tally.totals()
    skipped = tally.skipped
    lines: list[str] = []

    title = f"Allow-list audit {sanitize(info.run_id, 60)}".rstrip()
    lines.append(paint(title, "bold"))
    facts = [
        f"{totals.hosts} hosts",
        f"{totals.audited} audited",
        f"{totals.not_audited} not audited",
    ]
    if skipped:
        facts.append(f"{skipped} skipped")
    if info.duration and math.isfinite(info.duration):
        facts.append(f"{info.duration:.1f} s")
    if info.inventory:
        facts.append(f"inventory {sanitize(info.inventory, 80)}")
    lines.append("  " + ", ".join(facts))
    lines.extend(agent_lines(run, paint, max_groups=max_hosts // 2))
    for warning in info.warnings:
        lines.append(paint(f"WARNING: {sanitize(warning, 200)}", "warn"))
    if info.interrupted:
        lines.append(paint("WARNING: the run was interrupted; some hosts were not audited", "warn"))

    lines.append("")
    lines.append("Readiness (reachable / audited hosts):")
    summaries = tally.summaries()
    width = max((len(format_readiness(s.readiness)) for s in summaries), default=0)
    for s in summaries:
        text = format_readiness(s.readiness).rjust(width)
        style = "good" if s.blocked == 0 and s.audited else "bad" if s.blocked else "warn"
        counts = f"{s.reachable} reachable, {s.blocked} blocked, {s.not_audited} not audited"
        lines.append(f"  {paint(text, style)}  {sanitize(s.target.url, 120)}  ({counts})")
        failing = [(o.value, n) for o, n in s.outcomes if o is not Outcome.REACHABLE]
        if failing:
            lines.append(f"        blocked by: {_outcome_list(failing)}")
    if not summaries:
        lines.append("  (no targets)")
    lines.append(f"  {totals.fully_ready} of {totals.audited} audited hosts reach every URL")

    blocked = tally.blocked_sample
    blocked_count = tally.blocked_hosts
    if blocked_count:
        lines.append("")
        lines.append(paint(f"Blocked hosts ({blocked_count}):", "bad"))
        for result in blocked[:max_hosts]:
            lines.append("  " + _blocked_line(run, result))
        if blocked_count > max_hosts:
            lines.append(f"  and {blocked_count - max_hosts} more (see the HTML or CSV report)")

    if totals.not_audited:
        lines.append("")
        lines.append(paint(f"Not audited ({totals.not_audited}; not counted as blocked):", "warn"))
        reasons = [(o, n) for o, n in totals.host_outcomes if o is not HostOutcome.SKIPPED]
        # The host budget is shared between the reasons, so the summary stays short.
        per_reason = max(1, max_hosts // len(reasons))
        for outcome, count in reasons:
            members = tally.reason_sample.get(outcome, [])
            lines.append(f"  {outcome.value} ({count}): fix: {host_hint(outcome)}")
            for member in members[:per_reason]:
                detail = sanitize(member.detail, 100)
                name = sanitize(member.host.name, 60)
                lines.append(f"    {name}" + (f": {detail}" if detail else ""))
            if count > per_reason:
                lines.append(f"    and {count - per_reason} more")

    if skipped:
        lines.append("")
        lines.append(f"Skipped ({skipped}; connection not audited, not counted as blocked):")
        for member in tally.reason_sample.get(HostOutcome.SKIPPED, [])[:max_hosts]:
            name = sanitize(member.host.name, 60)
            lines.append(f"  {name}: {sanitize(member.detail, 100)}")
        if skipped > max_hosts:
            lines.append(f"  and {skipped - max_hosts} more (see the HTML or CSV report)")
    return "\n".join(lines) + "\n"


def agent_lines(
    run: AuditRun, paint: Callable[[str, str], str], *, max_groups: int = 10
) -> list[str]:
    """The fleet's agent answer (first in the summary) and the same per group, when any
    host reported on the Qualys agent; then the hosts whose agent is blocked from the CDN."""
    tally = tally_of(run)
    if not tally.any_agent:
        return []
    fleet = tally.agent_counts()
    style = "bad" if fleet[AgentVerdict.CDN_BLOCKED] else "good"
    lines = [paint(f"Qualys Cloud Agent: {fleet_sentence(fleet)}", style)]
    groups = tally.agent_groups_counts()
    if len(groups) > 1:
        for name, counts in groups[:max_groups]:
            lines.append(f"  {sanitize(name, 40)}: {fleet_sentence(counts)}")
        if len(groups) > max_groups:
            lines.append(f"  and {len(groups) - max_groups} more groups (see report.json)")
    blocked = tally.agent_blocked
    blocked_count = fleet[AgentVerdict.CDN_BLOCKED]
    for name, why in blocked[: max(max_groups, 1)]:
        lines.append(f"  agent blocked: {sanitize(name, 60)}: {sanitize(why, 120)}")
    if blocked_count > max_groups:
        lines.append(f"  and {blocked_count - max_groups} more agents blocked")
    return lines


def _blocked_line(run: AuditRun, result: AuditedHost) -> str:
    parts = []
    targets = run.info.targets
    for index, observation in enumerate(result.observations):
        if observation.outcome is Outcome.REACHABLE:
            continue
        url = targets[index].url if index < len(targets) else observation.url
        part = f"{sanitize(url, 80)}: {observation.outcome.value}"
        if observation.detail:
            part += f" ({sanitize(observation.detail, 80)})"
        if observation.outcome is Outcome.TLS_FAILURE and observation.tls_issuer:
            part += f" [issuer: {sanitize(observation.tls_issuer, 80)}]"
        if observation.outcome is Outcome.PROXY_DENIED and observation.proxy:
            part += f" [proxy: {sanitize(observation.proxy, 80)}]"
        parts.append(part)
    name = sanitize(result.host.name, 60)
    address = sanitize(result.host.address, 60)
    where = name if address in ("", name) else f"{name} ({address})"
    return f"{where}: " + "; ".join(parts)


class Progress:
    """A one-line progress display on stderr while hosts finish.

    Shows done/total, fully reachable / blocked / not audited and elapsed time, redrawn at
    most every `interval` seconds, and only when the stream is a TTY (otherwise every call
    is a no-op, so logs and pipes stay clean). Use as a context manager or call `close()`.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream: TextIO = sys.stderr if stream is None else stream
        self.interval = interval
        self.clock = clock
        self.done = 0
        self.ok = 0
        self.blocked = 0
        self.not_audited = 0
        self.skipped = 0
        self.started = clock()
        self._last_draw: float | None = None
        self._drawn = False
        self._lock = threading.RLock()  # results may come from worker threads
        try:
            self.enabled = bool(self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            self.enabled = False

    def update(self, result: HostResult) -> None:
        """Count one finished host and redraw if the last redraw is old enough."""
        with self._lock:
            self.done += 1
            if isinstance(result, UnauditedHost) and result.skipped:
                self.skipped += 1
            elif isinstance(result, UnauditedHost):
                self.not_audited += 1
            elif fully_ready(result):
                self.ok += 1
            else:
                self.blocked += 1
            self._draw(force=self.done >= self.total)

    def line(self) -> str:
        """The progress text (without terminal control sequences)."""
        elapsed = self.clock() - self.started
        return (
            f"{self.done}/{self.total} hosts  ok {self.ok}  blocked {self.blocked}  "
            f"not audited {self.not_audited}  "
            + (f"skipped {self.skipped}  " if self.skipped else "")
            + f"{elapsed:.1f} s"
        )

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not force and self._last_draw is not None and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        try:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False
            return
        self._drawn = True

    def close(self) -> None:
        """Draw the final state and end the line, so later output starts on a fresh one."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if not self.enabled:
            return
        self._draw(force=True)
        if self._drawn:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self.enabled = False

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
