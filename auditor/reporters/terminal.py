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

from auditor.aggregate import fully_ready, run_totals, summarize_targets
from auditor.models import AuditedHost, AuditRun, HostResult, UnauditedHost
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
    results = run.results
    totals = run_totals(run)
    audited = [r for r in results if isinstance(r, AuditedHost)]
    unaudited = [r for r in results if isinstance(r, UnauditedHost) and not r.skipped]
    skipped = [r for r in results if isinstance(r, UnauditedHost) and r.skipped]
    lines: list[str] = []

    title = f"Allow-list audit {sanitize(info.run_id, 60)}".rstrip()
    lines.append(paint(title, "bold"))
    facts = [
        f"{totals.hosts} hosts",
        f"{totals.audited} audited",
        f"{totals.not_audited} not audited",
    ]
    if skipped:
        facts.append(f"{len(skipped)} skipped")
    if info.duration and math.isfinite(info.duration):
        facts.append(f"{info.duration:.1f} s")
    if info.inventory:
        facts.append(f"inventory {sanitize(info.inventory, 80)}")
    lines.append("  " + ", ".join(facts))
    for warning in info.warnings:
        lines.append(paint(f"WARNING: {sanitize(warning, 200)}", "warn"))
    if info.interrupted:
        lines.append(paint("WARNING: the run was interrupted; some hosts were not audited", "warn"))

    lines.append("")
    lines.append("Readiness (reachable / audited hosts):")
    summaries = summarize_targets(run)
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

    blocked = [r for r in audited if not fully_ready(r)]
    if blocked:
        lines.append("")
        lines.append(paint(f"Blocked hosts ({len(blocked)}):", "bad"))
        for result in blocked[:max_hosts]:
            lines.append("  " + _blocked_line(run, result))
        if len(blocked) > max_hosts:
            lines.append(f"  and {len(blocked) - max_hosts} more (see the HTML or CSV report)")

    if unaudited:
        lines.append("")
        lines.append(paint(f"Not audited ({len(unaudited)}; not counted as blocked):", "warn"))
        reasons = [(o, n) for o, n in totals.host_outcomes if o is not HostOutcome.SKIPPED]
        # The host budget is shared between the reasons, so the summary stays short.
        per_reason = max(1, max_hosts // len(reasons))
        for outcome, count in reasons:
            members = [r for r in unaudited if r.outcome is outcome]
            lines.append(f"  {outcome.value} ({count}): fix: {host_hint(outcome)}")
            for member in members[:per_reason]:
                detail = sanitize(member.detail, 100)
                name = sanitize(member.host.name, 60)
                lines.append(f"    {name}" + (f": {detail}" if detail else ""))
            if count > per_reason:
                lines.append(f"    and {count - per_reason} more")

    if skipped:
        lines.append("")
        lines.append(f"Skipped ({len(skipped)}; connection not audited, not counted as blocked):")
        for member in skipped[:max_hosts]:
            name = sanitize(member.host.name, 60)
            lines.append(f"  {name}: {sanitize(member.detail, 100)}")
        if len(skipped) > max_hosts:
            lines.append(f"  and {len(skipped) - max_hosts} more (see the HTML or CSV report)")
    return "\n".join(lines) + "\n"


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
