"""What changed between two runs: one entry per host x URL whose verdict changed.

Pure functions over two `AuditRun`s; `auditor diff` reads the runs from the history.
Hosts are matched by inventory name and URLs by URL; a URL only one run audited has no
entries (there is nothing to compare it with).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from auditor.aggregate import observation_for
from auditor.models import AuditedHost, AuditRun, HostResult, Target, UnauditedHost
from auditor.outcomes import Outcome


class ChangeKind(StrEnum):
    """How one host x URL changed, in the order a reader wants them."""

    REGRESSION = "regression"
    """Was reachable, is now not reachable, on a host audited both times."""
    FIX = "fix"
    """Was not reachable, is now reachable, on a host audited both times."""
    CHANGED = "changed"
    """One not-reachable verdict became another (refused -> timeout, another TLS issuer),
    or a host not audited both times for another reason."""
    NOT_AUDITED = "not_audited"
    """Was audited, now could not be."""
    AUDITED_AGAIN = "audited_again"
    """Could not be audited before, is now."""
    HOST_ADDED = "host_added"
    HOST_REMOVED = "host_removed"


@dataclass(frozen=True)
class Seen:
    """One host x URL in one run: the target outcome of an audited host, else the host's
    own outcome (`audited` False)."""

    outcome: str
    audited: bool
    tls_issuer: str = ""


@dataclass(frozen=True)
class Change:
    host: str
    url: str
    kind: ChangeKind
    before: Seen | None
    after: Seen | None

    @property
    def detail(self) -> str:
        """The TLS issuers, when that is what changed."""
        b, a = self.before, self.after
        if b and a and b.outcome == a.outcome and b.tls_issuer != a.tls_issuer:
            return f"TLS issuer {b.tls_issuer or '-'} -> {a.tls_issuer or '-'}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "host": self.host,
            "url": self.url,
            "before": None if self.before is None else self.before.outcome,
            "after": None if self.after is None else self.after.outcome,
            "change": self.kind.value,
        }
        if self.detail:
            data["detail"] = self.detail
        return data


@dataclass(frozen=True)
class RunDiff:
    old_run_id: str
    new_run_id: str
    changes: tuple[Change, ...]

    @property
    def regressions(self) -> int:
        return sum(1 for c in self.changes if c.kind is ChangeKind.REGRESSION)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": {"run_id": self.old_run_id},
            "new": {"run_id": self.new_run_id},
            "changes": [c.to_dict() for c in self.changes],
        }


def _seen(result: HostResult, index: int, target: Target) -> Seen:
    if isinstance(result, AuditedHost):
        o = observation_for(result, index, target)
        return Seen(o.outcome.value, True, o.tls_issuer)
    assert isinstance(result, UnauditedHost)
    return Seen(result.outcome.value, False)


def classify(before: Seen | None, after: Seen | None) -> ChangeKind | None:
    """The kind of change from `before` to `after`; None when nothing changed."""
    if before is None and after is None:
        return None
    if before is None:
        return ChangeKind.HOST_ADDED
    if after is None:
        return ChangeKind.HOST_REMOVED
    if before.audited and not after.audited:
        return ChangeKind.NOT_AUDITED
    if not before.audited and after.audited:
        return ChangeKind.AUDITED_AGAIN
    was = before.outcome == Outcome.REACHABLE.value and before.audited
    now = after.outcome == Outcome.REACHABLE.value and after.audited
    if was and not now:
        return ChangeKind.REGRESSION
    if now and not was:
        return ChangeKind.FIX
    if was and now:
        return None
    if before.outcome != after.outcome or before.tls_issuer != after.tls_issuer:
        return ChangeKind.CHANGED
    return None


def diff_runs(old: AuditRun, new: AuditRun) -> RunDiff:
    """Every host x URL that changed from `old` to `new`, grouped by kind (in
    `ChangeKind` order), then by host and URL."""
    old_urls = {t.url: i for i, t in enumerate(old.info.targets)}
    new_urls = {t.url: i for i, t in enumerate(new.info.targets)}
    urls = [t for t in new.info.targets if t.url in old_urls]
    before = {r.host.name: r for r in old.results}
    after = {r.host.name: r for r in new.results}
    changes = []
    for name in sorted(before.keys() | after.keys()):
        b, a = before.get(name), after.get(name)
        for target in urls:
            url = target.url
            seen_b = None if b is None else _seen(b, old_urls[url], target)
            seen_a = None if a is None else _seen(a, new_urls[url], target)
            kind = classify(seen_b, seen_a)
            if kind is not None:
                changes.append(Change(name, url, kind, seen_b, seen_a))
    order = {kind: i for i, kind in enumerate(ChangeKind)}
    changes.sort(key=lambda c: (order[c.kind], c.host, c.url))
    return RunDiff(old.info.run_id, new.info.run_id, tuple(changes))


def render_diff(diff: RunDiff) -> str:
    """A terminal table of `diff`, grouped by change (text from hosts is not sanitised
    here: the caller prints through `for_terminal`)."""
    if not diff.changes:
        return f"no changes from {diff.old_run_id} to {diff.new_run_id}"
    lines = [f"changes from {diff.old_run_id} to {diff.new_run_id}:"]
    host_w = max(len(c.host) for c in diff.changes)
    url_w = max(len(c.url) for c in diff.changes)
    for kind in ChangeKind:
        group = [c for c in diff.changes if c.kind is kind]
        if not group:
            continue
        lines.append("")
        lines.append(f"{kind.value} ({len(group)})")
        for c in group:
            b = "-" if c.before is None else c.before.outcome
            a = "-" if c.after is None else c.after.outcome
            extra = f"  {c.detail}" if c.detail else ""
            lines.append(f"  {c.host:{host_w}}  {c.url:{url_w}}  {b} -> {a}{extra}")
    return "\n".join(lines)
