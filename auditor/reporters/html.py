"""report.html: one self-contained page a change board can read, even at 20,000 hosts.

Everything the page needs is inline (CSS, SVG charts, a small vanilla script); it loads
nothing, so it opens on locked-down machines. The summary (headline readiness per URL,
charts, breakdowns by outcome, group and platform, run metadata) is rendered on the server
and reads without JavaScript. The host tables are rendered in the browser from the rows
embedded as JSON (``<script type="application/json">``, with ``<``, ``>``, ``&`` and ``'``
escaped as ``\\u003c``… so the data can never close its element), paginated, filterable
and sortable; without JavaScript a capped list of blocked and not-audited hosts is shown.

The page opens with the change board's answer: per URL, how many hosts in scope are ready
("US3 CDN: 1,204 of 1,312 hosts ready (91.8 %); 37 not audited"), then the blocked hosts
grouped by cause and by inventory group, each with its remediation, then the host tables;
the details (charts, breakdowns, run metadata) follow. Optional `HtmlExtras` add what only
the run history knows: what changed since the last run, a readiness trend per URL, and the
readiness gate's result. It prints on A4 (no controls, rows never cut, a footer on every
page with the run id and start time).

Safety: the Jinja2 environment always autoescapes, nothing derived from hosts or results is
ever marked safe, the script builds the table with ``textContent`` only, and a
Content-Security-Policy admits just this page's own style and script (by hash). The only
value placed in CSS (the printed footer) goes through `css_string`, which leaves nothing
but letters, digits and spaces unescaped.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any

import jinja2
from markupsafe import Markup

import auditor
from auditor.agent import host_verdict
from auditor.aggregate import (
    SliceSummary,
    TargetSummary,
    by_group,
    by_platform,
    observation_for,
    run_totals,
    summarize_targets,
)
from auditor.models import (
    AgentVerdict,
    AuditedHost,
    AuditRun,
    HostResult,
    Observation,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome, Outcome, host_hint, target_hint
from auditor.reporters.base import Reporter
from auditor.reporters.terminal import format_readiness
from auditor.textsafe import for_text

TEMPLATE = "report.html.j2"
NOSCRIPT_ROWS = 500
"""How many blocked and not-audited rows the no-JavaScript fallback lists."""
CAUSE_GROUPS = 40
"""How many distinct causes (URL x outcome x issuer/proxy) the "blocked hosts" section lists."""
GROUP_ROWS = 60
"""How many inventory groups with blocked hosts that section lists."""
NAMES_SHOWN = 12
"""Host names listed under one cause before "and N more"."""
CHANGE_ROWS = 200
"""Rows listed per kind of change before "and N more"."""

# The order the "changed since the last run" section lists kinds of change in: what a change
# board must act on first. Kinds not named here (a newer history) follow, alphabetically.
CHANGE_ORDER: tuple[str, ...] = (
    "regression",
    "not_audited",
    "changed",
    "host_removed",
    "host_added",
    "audited_again",
    "fix",
)
CHANGE_MEANINGS: dict[str, str] = {
    "regression": "was reachable, now blocked",
    "not_audited": "was audited, now could not be",
    "changed": "still blocked, for another reason",
    "host_removed": "no longer in the inventory",
    "host_added": "new in the inventory",
    "audited_again": "could not be audited last time, audited now",
    "fix": "was blocked, now reachable",
}
# CSS level per kind (bad / warn / good / none): class names come from this table only,
# never from the kind's own text.
CHANGE_LEVELS: dict[str, str] = {
    "regression": "bad",
    "not_audited": "warn",
    "changed": "warn",
    "host_removed": "none",
    "host_added": "none",
    "audited_again": "good",
    "fix": "good",
}


@dataclass(frozen=True)
class ChangeRow:
    """One host x URL that changed since the previous run (as `auditor diff` reports it).

    `before`/`after` are the outcome names (target outcome where the host was audited, else
    its host-level outcome); None where the host was not in that run. `change` is the kind:
    regression, fix, changed, not_audited, audited_again, host_added or host_removed.
    `detail` says what changed when the outcomes alone do not (a TLS issuer).
    """

    host: str
    url: str
    before: str | None
    after: str | None
    change: str
    detail: str = ""


@dataclass(frozen=True)
class TrendPoint:
    """Readiness of one URL in one recorded run: `ready` hosts reached it of `total` in scope."""

    run_id: str
    started: str
    ready: int
    total: int


def _no_trends() -> Mapping[str, tuple[TrendPoint, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class HtmlExtras:
    """What the run history adds to report.html; every part is optional.

    - `changes`: None when there is no previous run to compare with (no section); a tuple,
      possibly empty ("nothing changed"), otherwise. `previous_run_id` names that run.
    - `trends`: URL -> points oldest first (this run last); a URL with no points has no chart.
    - `gate_line`: one line stating the gate and its result, shown under the headline;
      `gate_passed` colours it (None: neutral).
    """

    changes: tuple[ChangeRow, ...] | None = None
    previous_run_id: str = ""
    trends: Mapping[str, tuple[TrendPoint, ...]] = field(default_factory=_no_trends)
    gate_line: str = ""
    gate_passed: bool | None = None


OUTCOME_COLORS: dict[Outcome, str] = {
    Outcome.REACHABLE: "#2e7d32",
    Outcome.DNS_FAILURE: "#8e24aa",
    Outcome.REFUSED: "#c62828",
    Outcome.TIMEOUT: "#ef6c00",
    Outcome.TLS_FAILURE: "#d81b60",
    Outcome.PROXY_DENIED: "#3949ab",
    Outcome.HTTP_ERROR: "#b28704",
    Outcome.ERROR: "#6d4c41",
}
# Host-level outcomes are greys and slate blues: visibly "not a verdict".
HOST_OUTCOME_COLORS: dict[HostOutcome, str] = {
    HostOutcome.UNREACHABLE: "#546e7a",
    HostOutcome.AUTH_FAILED: "#78909c",
    HostOutcome.HOST_KEY_UNKNOWN: "#90a4ae",
    HostOutcome.HOST_KEY_CHANGED: "#455a64",
    HostOutcome.SESSION_TIMEOUT: "#8d8d8d",
    HostOutcome.PROBE_UNAVAILABLE: "#a1887f",
    HostOutcome.NOT_AUDITED: "#b0b0b0",
    HostOutcome.ERROR: "#616161",
    HostOutcome.SKIPPED: "#d7ccc8",
}
NOT_AUDITED_COLOR = "#9e9e9e"

OUTCOME_MEANINGS: dict[Outcome, str] = {
    Outcome.REACHABLE: "answered over verified TLS with an expected status",
    Outcome.DNS_FAILURE: "the name does not resolve on the host",
    Outcome.REFUSED: "actively rejected (TCP reset or ICMP unreachable)",
    Outcome.TIMEOUT: "no answer: packets silently dropped (black hole)",
    Outcome.TLS_FAILURE: "TLS handshake failed or certificate not trusted "
    "(the issuer seen may name an interception product)",
    Outcome.PROXY_DENIED: "a proxy refused the request (403/407 or CONNECT refused)",
    Outcome.HTTP_ERROR: "the server answered with an unexpected status",
    Outcome.ERROR: "unexpected probe failure",
}
HOST_OUTCOME_MEANINGS: dict[HostOutcome, str] = {
    HostOutcome.UNREACHABLE: "management port closed or no route (SSH/WinRM)",
    HostOutcome.AUTH_FAILED: "the auditor's credentials were refused",
    HostOutcome.HOST_KEY_UNKNOWN: "the host's key is not in known_hosts",
    HostOutcome.HOST_KEY_CHANGED: "the host's key differs from known_hosts",
    HostOutcome.SESSION_TIMEOUT: "connected, then hung",
    HostOutcome.PROBE_UNAVAILABLE: "no curl / PowerShell Invoke-WebRequest / fallback",
    HostOutcome.NOT_AUDITED: "the run ended before this host was tried",
    HostOutcome.ERROR: "unexpected error",
    HostOutcome.SKIPPED: "not audited by design: no transport for its connection (network_cli…)",
}


def clean(text: str) -> str:
    """Host-supplied text with characters that have no business in a page removed: controls,
    and the bidi and zero-width characters that could make a host name display as another."""
    return for_text(text)


def _finalize(value: Any) -> Any:
    """Applied by Jinja2 to every ``{{ }}`` value before autoescaping."""
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        return clean(value)
    return value


def _csp_source(block: Any) -> Markup:
    """The CSP hash source for the exact text of an inline <style>/<script> block.

    Only ever applied to the template's own CSS and script; the result is base64 in quotes.
    """
    digest = hashlib.sha256(str(block).encode("utf-8")).digest()
    return Markup("'sha256-{}'").format(base64.b64encode(digest).decode("ascii"))


def css_string(value: Any) -> Markup:
    """`value` as a quoted CSS string that cannot end the string, the rule or the <style>.

    Every character but ASCII letters, digits and the space becomes a six-digit CSS escape
    (six digits, so the next character is never read as part of it).
    """
    text = clean(str(value))
    out = "".join(
        c if (c.isascii() and c.isalnum()) or c == " " else f"\\{ord(c):06x}" for c in text
    )
    return Markup('"{}"').format(Markup(out))  # noqa: S704 - only letters, digits, escapes


def number(value: int) -> str:
    """A count as people read it in a report: 1,312."""
    return f"{value:,}"


@cache
def environment() -> jinja2.Environment:
    """The report's Jinja2 environment: package-loaded templates, autoescape always on."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("auditor.templates", "."),
        autoescape=True,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["csp_source"] = _csp_source
    env.filters["readiness"] = format_readiness
    env.filters["num"] = number
    env.filters["css_string"] = css_string
    env.policies["json.dumps_kwargs"] = {
        "ensure_ascii": False,
        "allow_nan": False,
        "separators": (",", ":"),
    }
    return env


def _pct(part: int, whole: int) -> float:
    return 0.0 if whole <= 0 else 100.0 * part / whole


def _level(summary: TargetSummary) -> str:
    """CSS level for a readiness figure."""
    if summary.audited == 0:
        return "none"
    if summary.blocked == 0:
        return "good"
    readiness = summary.readiness or 0.0
    return "warn" if readiness >= 90.0 else "bad"


@dataclass(frozen=True)
class Segment:
    """One part of a stacked bar (SVG user units: the bar is 1000 wide)."""

    key: str
    label: str
    count: int
    color: str
    x: float
    width: float
    percent: str
    hatched: bool = False


def _segments(parts: Iterable[tuple[str, str, int, str, bool]], total: int) -> list[Segment]:
    out: list[Segment] = []
    x = 0.0
    for key, label, count, color, hatched in parts:
        if count <= 0:
            continue
        width = 1000.0 * count / total if total else 0.0
        out.append(
            Segment(
                key=key,
                label=label,
                count=count,
                color=color,
                x=round(x, 2),
                width=round(width, 2),
                percent=f"{_pct(count, total):.1f}",
                hatched=hatched,
            )
        )
        x += width
    return out


def _target_bar(summary: TargetSummary) -> list[Segment]:
    counts = dict(summary.outcomes)
    parts = [(o.value, o.value, counts.get(o, 0), OUTCOME_COLORS[o], False) for o in Outcome]
    parts.append(("not-audited", "not audited", summary.not_audited, NOT_AUDITED_COLOR, True))
    return _segments(parts, summary.hosts)


def _headline(summary: TargetSummary) -> dict[str, Any]:
    target = summary.target
    failing = [
        {
            "outcome": o.value,
            "count": n,
            "hint": target_hint(o, target.hostname, target.port),
        }
        for o, n in summary.outcomes
        if o is not Outcome.REACHABLE
    ]
    return {
        "target": target,
        "summary": summary,
        "readiness": format_readiness(summary.readiness),
        "level": _level(summary),
        "failing": failing,
        "bar": _target_bar(summary),
    }


def _answer(summary: TargetSummary) -> dict[str, Any]:
    """The headline answer for one URL, over every host in scope (skipped hosts are not):
    a host that could not be audited is not ready, as the readiness gate counts it."""
    in_scope = summary.hosts - summary.skipped
    percent = None if in_scope == 0 else 100.0 * summary.reachable / in_scope
    if in_scope == 0:
        level = "none"
    elif summary.reachable == in_scope:
        level = "good"
    else:
        level = "warn" if (percent or 0.0) >= 90.0 else "bad"
    return {
        "name": summary.target.name or summary.target.url,
        "url": summary.target.url,
        "ready": summary.reachable,
        "in_scope": in_scope,
        "readiness": format_readiness(percent),
        "blocked": summary.blocked,
        "not_audited": summary.not_audited,
        "skipped": summary.skipped,
        "level": level,
    }


def _evidence(o: Observation) -> tuple[str, str]:
    """What further names the cause of a blocked verdict: the TLS issuer seen (an
    interception product names itself there) or the proxy that refused."""
    if o.outcome is Outcome.TLS_FAILURE and o.tls_issuer:
        return "TLS issuer", clean(o.tls_issuer)
    if o.outcome is Outcome.PROXY_DENIED and o.proxy:
        return "proxy", clean(o.proxy)
    return "", ""


def _blocked_by_cause(run: AuditRun) -> tuple[list[dict[str, Any]], int]:
    """Blocked host x URL verdicts grouped by cause (URL, outcome, issuer or proxy), largest
    first, each with its remediation and the first host names; and how many causes were
    left out by the cap."""
    targets = run.info.targets
    members: dict[tuple[int, Outcome, str, str], list[str]] = {}
    for result in run.results:
        if not isinstance(result, AuditedHost):
            continue
        for index, target in enumerate(targets):
            o = observation_for(result, index, target)
            if o.outcome is not Outcome.REACHABLE:
                key = (index, o.outcome, *_evidence(o))
                members.setdefault(key, []).append(result.host.name)
    ordered = sorted(
        members.items(), key=lambda kv: (-len(kv[1]), kv[0][0], _OUTCOME_INDEX[kv[0][1]])
    )
    causes = []
    for (index, outcome, label, evidence), names in ordered[:CAUSE_GROUPS]:
        target = targets[index]
        causes.append(
            {
                "target": target,
                "outcome": outcome.value,
                "evidence_label": label,
                "evidence": evidence,
                "count": len(names),
                "names": [clean(n) for n in names[:NAMES_SHOWN]],
                "more": max(0, len(names) - NAMES_SHOWN),
                "hint": target_hint(outcome, target.hostname, target.port),
            }
        )
    return causes, max(0, len(ordered) - CAUSE_GROUPS)


def _blocked_by_group(run: AuditRun) -> tuple[list[dict[str, Any]], int]:
    """Inventory groups that have blocked hosts, most blocked first: per group how many of
    its audited hosts are blocked, and per URL x outcome the count and the remediation."""
    targets = run.info.targets
    hosts: Counter[str] = Counter()
    blocked_hosts: Counter[str] = Counter()
    verdicts: dict[str, Counter[tuple[int, Outcome]]] = {}
    for result in run.results:
        groups = result.host.groups or ("ungrouped",)
        failing = (
            [
                (i, o.outcome)
                for i, o in ((i, observation_for(result, i, t)) for i, t in enumerate(targets))
                if o.outcome is not Outcome.REACHABLE
            ]
            if isinstance(result, AuditedHost)
            else []
        )
        for group in groups:
            hosts[group] += 1
            if failing:
                blocked_hosts[group] += 1
                verdicts.setdefault(group, Counter()).update(failing)
    ordered = sorted(blocked_hosts.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = []
    for group, blocked in ordered[:GROUP_ROWS]:
        counts = verdicts[group]
        rows.append(
            {
                "name": clean(group),
                "blocked": blocked,
                "hosts": hosts[group],
                "verdicts": [
                    {
                        "target": targets[i],
                        "outcome": o.value,
                        "count": n,
                        "hint": target_hint(o, targets[i].hostname, targets[i].port),
                    }
                    for (i, o), n in sorted(
                        counts.items(), key=lambda kv: (-kv[1], kv[0][0], _OUTCOME_INDEX[kv[0][1]])
                    )
                ],
            }
        )
    return rows, max(0, len(ordered) - GROUP_ROWS)


def _changes(extras: HtmlExtras, targets: Sequence[Target]) -> dict[str, Any] | None:
    """The "changed since the last run" section, grouped by kind in `CHANGE_ORDER`."""
    if extras.changes is None:
        return None
    names = {t.url: t.name or t.url for t in targets}
    by_kind: dict[str, list[ChangeRow]] = {}
    for row in extras.changes:
        by_kind.setdefault(row.change, []).append(row)
    order = [k for k in CHANGE_ORDER if k in by_kind]
    order += sorted(k for k in by_kind if k not in CHANGE_ORDER)
    kinds = []
    for kind in order:
        rows = sorted(by_kind[kind], key=lambda r: (r.host, r.url))
        kinds.append(
            {
                "kind": kind,
                "meaning": CHANGE_MEANINGS.get(kind, ""),
                "level": CHANGE_LEVELS.get(kind, "none"),
                "count": len(rows),
                "rows": [
                    {
                        "host": r.host,
                        "url": r.url,
                        "name": names.get(r.url, ""),
                        "before": r.before,
                        "after": r.after,
                        "detail": r.detail,
                    }
                    for r in rows[:CHANGE_ROWS]
                ],
                "more": max(0, len(rows) - CHANGE_ROWS),
            }
        )
    return {"previous": extras.previous_run_id, "total": len(extras.changes), "kinds": kinds}


# The trend chart's plot area, in SVG user units (the chart is 1000 x 170).
_TREND_LEFT, _TREND_RIGHT, _TREND_TOP, _TREND_BOTTOM = 70.0, 900.0, 12.0, 132.0


@dataclass(frozen=True)
class TrendDot:
    """One run on a trend chart."""

    x: float
    y: float
    run_id: str
    started: str
    ready: int
    total: int
    readiness: str


def _trend_floor(percents: Sequence[float]) -> int:
    """The trend's lowest axis value: a multiple of 10 from 50 up, at least 5 points under the
    lowest readiness, so that the few points a change board argues about stay visible; else 0."""
    floor = int((min(percents) - 5.0) // 10) * 10
    return min(90, floor) if floor >= 50 else 0


def _trend_y(percent: float, floor: int) -> float:
    share = (percent - floor) / (100.0 - floor)
    return round(_TREND_BOTTOM - (_TREND_BOTTOM - _TREND_TOP) * share, 2)


def _trends(extras: HtmlExtras, targets: Sequence[Target]) -> list[dict[str, Any]]:
    """One inline-SVG line chart per URL with points: readiness (ready / in scope) per run,
    oldest left; runs with no host in scope are left out (there is no figure to draw). The
    axis starts under the lowest figure (labelled), not always at 0."""
    names = {t.url: t.name or t.url for t in targets}
    charts = []
    for url, points in extras.trends.items():
        usable = [p for p in points if p.total > 0]
        if not usable:
            continue
        percents = [100.0 * min(max(p.ready, 0), p.total) / p.total for p in usable]
        floor = _trend_floor(percents)
        step = (_TREND_RIGHT - _TREND_LEFT) / (len(usable) - 1) if len(usable) > 1 else 0.0
        dots = [
            TrendDot(
                x=round(_TREND_LEFT + step * index, 2),
                y=_trend_y(percent, floor),
                run_id=p.run_id,
                started=p.started,
                ready=p.ready,
                total=p.total,
                readiness=format_readiness(percent),
            )
            for index, (p, percent) in enumerate(zip(usable, percents, strict=True))
        ]
        ticks = list(range(floor, 101, 10 if floor else 25))
        charts.append(
            {
                "url": url,
                "name": names.get(url, url),
                "dots": dots,
                "line": " ".join(f"{d.x},{d.y}" for d in dots),
                "first": dots[0],
                "last": dots[-1],
                "grid": [(tick, _trend_y(tick, floor)) for tick in ticks],
                "left": _TREND_LEFT,
                "right": _TREND_RIGHT,
            }
        )
    return charts


def _slice_row(summary: SliceSummary) -> dict[str, Any]:
    return {
        "name": summary.name,
        "hosts": summary.hosts,
        "audited": summary.audited,
        "not_audited": summary.not_audited,
        "fully_ready": summary.fully_ready,
        "targets": [
            {
                "readiness": format_readiness(t.readiness),
                "level": _level(t),
                "reachable": t.reachable,
                "audited": t.audited,
            }
            for t in summary.targets
        ],
    }


_OUTCOME_INDEX = {o: i for i, o in enumerate(Outcome)}
_HOST_OUTCOME_INDEX = {o: i for i, o in enumerate(HostOutcome)}


class _Strings:
    """Interns repeated strings (details, issuers, IPs…) so each is embedded once."""

    def __init__(self) -> None:
        self.table: list[str] = [""]
        self._index: dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self.table)
            self.table.append(clean(text))
        return index


def _observations(
    result: AuditedHost, targets: tuple[Target, ...], ref: _Strings
) -> list[list[Any]]:
    out: list[list[Any]] = []
    for index, target in enumerate(targets):
        o = observation_for(result, index, target)
        status = o.http_status if isinstance(o.http_status, int) else None
        out.append(
            [
                _OUTCOME_INDEX[o.outcome],
                status,
                ref(o.detail),
                ref(o.tls_issuer),
                ref(o.proxy),
                ref(o.remote_ip),
                ref(o.tool),
            ]
        )
    return out


_VERDICT_INDEX = {v: i for i, v in enumerate(AgentVerdict)}


def _agent_cells(result: AuditedHost, targets: tuple[Target, ...], ref: _Strings) -> list[int]:
    """``[agent_version, agent_verdict, verdict_reason]`` of one audited host: the verdict
    indexes ``av``, the two texts the string table."""
    verdict, reason = host_verdict(result, targets)
    version = result.agent.version if result.agent is not None else ""
    return [ref(version), _VERDICT_INDEX[verdict], ref(reason)]


def table_data(run: AuditRun) -> dict[str, Any]:
    """The host rows the page's script renders, in a compact positional form.

    ``a``: audited hosts ``[name, address, [group…], platform, transport, runner,
    [[outcome, http_status, detail, tls_issuer, proxy, remote_ip, tool]…]]`` and ``u``:
    not-audited hosts ``[name, address, [group…], platform, transport, runner,
    host_outcome, detail]``, where outcomes index ``o``/``ho``, groups index ``g`` and
    every other string (detail, issuer…) indexes the string table ``s``. When any host
    reported on the Qualys agent (``ag`` true), each audited row ends with its agent's
    ``[version, verdict, reason]`` (`_agent_cells`), the verdict indexing ``av``.
    """
    targets = run.info.targets
    ref = _Strings()
    agents = any(isinstance(r, AuditedHost) and r.agent is not None for r in run.results)
    groups: dict[str, int] = {}

    def group_ids(result: HostResult) -> list[int]:
        return [groups.setdefault(g, len(groups)) for g in (result.host.groups or ("ungrouped",))]

    audited: list[list[Any]] = []
    unaudited: list[list[Any]] = []
    for result in run.results:
        host = result.host
        common: list[Any] = [
            clean(host.name),
            clean(host.address),
            group_ids(result),
            host.platform.value,
            host.connection.value,
            ref(result.runner),
        ]
        if isinstance(result, AuditedHost):
            row = [*common, _observations(result, targets, ref)]
            audited.append([*row, *_agent_cells(result, targets, ref)] if agents else row)
        else:
            unaudited.append([*common, _HOST_OUTCOME_INDEX[result.outcome], ref(result.detail)])
    return {
        "o": [o.value for o in Outcome],
        "ho": [o.value for o in HostOutcome],
        "hh": [host_hint(o) for o in HostOutcome],
        "t": [
            {
                "url": clean(t.url),
                "name": clean(t.name),
                "hints": [clean(target_hint(o, t.hostname, t.port)) for o in Outcome],
            }
            for t in targets
        ],
        "g": [clean(g) for g in groups],
        "ag": agents,
        "av": [v.value for v in AgentVerdict],
        "s": ref.table,
        "a": audited,
        "u": unaudited,
    }


def _noscript_rows(run: AuditRun) -> tuple[list[dict[str, Any]], int, list[UnauditedHost], int]:
    """The capped fallback lists: failing host x URL rows and not-audited hosts."""
    blocked: list[dict[str, Any]] = []
    blocked_total = 0
    targets = run.info.targets
    for result in run.results:
        if not isinstance(result, AuditedHost):
            continue
        for index, o in enumerate(result.observations[: len(targets)]):
            if o.outcome is Outcome.REACHABLE:
                continue
            blocked_total += 1
            if len(blocked) < NOSCRIPT_ROWS:
                target = targets[index]
                blocked.append(
                    {
                        "host": result.host,
                        "target": target,
                        "obs": o,
                        "hint": target_hint(o.outcome, target.hostname, target.port),
                    }
                )
    unaudited = [r for r in run.results if isinstance(r, UnauditedHost)]
    return blocked, blocked_total, unaudited[:NOSCRIPT_ROWS], len(unaudited)


def _warnings(run: AuditRun) -> list[str]:
    warnings = [w for w in run.info.warnings if w]
    if run.info.interrupted:
        missing = sum(
            1
            for r in run.results
            if isinstance(r, UnauditedHost) and r.outcome is HostOutcome.NOT_AUDITED
        )
        warnings.insert(
            0,
            f"The run was interrupted: {missing} host(s) were never tried; "
            "their status is unknown.",
        )
    unverified = [t for t in run.info.targets if not t.verified]
    if unverified:
        names = ", ".join(t.url for t in unverified)
        warnings.append(f"Unverified target URL(s) (not confirmed from vendor docs): {names}")
    return warnings


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds <= 0:
        return "0 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _agents(run: AuditRun) -> dict[str, Any] | None:
    """The fleet's Qualys agent answer and the same per group, when any host reported on
    its agent (else no section)."""
    from auditor.agent import by_group, count_verdicts, fleet_sentence

    if not any(isinstance(r, AuditedHost) and r.agent is not None for r in run.results):
        return None
    targets = run.info.targets
    fleet = count_verdicts(run.results, targets)
    verdicts = list(AgentVerdict)
    return {
        "sentence": fleet_sentence(fleet),
        "blocked": fleet[AgentVerdict.CDN_BLOCKED],
        "verdicts": [v.value for v in verdicts],
        "groups": [
            {"name": name, "hosts": counts.hosts, "counts": [counts[v] for v in verdicts]}
            for name, counts in by_group(run.results, targets)[:MAX_AGENT_GROUPS]
        ],
    }


MAX_AGENT_GROUPS = 200
"""Groups listed in the agent table; the rest are in report.json."""


def context(run: AuditRun, extras: HtmlExtras | None = None) -> dict[str, Any]:
    """Everything the template needs (plain data; the template escapes all of it)."""
    extras = extras or HtmlExtras()
    info = run.info
    results = run.results
    totals = run_totals(run)
    total, audited, skipped, ready = (
        totals.hosts,
        totals.audited,
        totals.skipped,
        totals.fully_ready,
    )
    summaries = summarize_targets(run)
    host_counts = totals.host_outcomes
    target_counts = dict(totals.target_outcomes)
    per_target = [dict(s.outcomes) for s in summaries]

    host_bar = _segments(
        [
            ("fully-ready", "reaches every URL", ready, OUTCOME_COLORS[Outcome.REACHABLE], False),
            ("blocked", "blocked on at least one URL", audited - ready, "#c62828", False),
            *(
                (
                    o.value,
                    "skipped" if o is HostOutcome.SKIPPED else f"not audited: {o.value}",
                    n,
                    HOST_OUTCOME_COLORS[o],
                    True,
                )
                for o, n in host_counts
            ),
        ],
        total,
    )
    outcome_rows = [
        {
            "outcome": o.value,
            "meaning": OUTCOME_MEANINGS[o],
            "per_target": [counts.get(o, 0) for counts in per_target],
            "total": target_counts.get(o, 0),
        }
        for o in Outcome
        if target_counts.get(o, 0) or o is Outcome.REACHABLE
    ]
    host_outcome_rows = [
        {
            "outcome": o.value,
            "meaning": HOST_OUTCOME_MEANINGS[o],
            "count": n,
            "percent": f"{_pct(n, total):.1f}",
            "hint": host_hint(o),
        }
        for o, n in host_counts
    ]
    blocked_rows, blocked_total, unaudited_rows, unaudited_total = _noscript_rows(run)
    groups = [_slice_row(s) for s in by_group(run)]
    data = table_data(run)
    causes, causes_more = _blocked_by_cause(run)
    blocked_groups, blocked_groups_more = _blocked_by_group(run)
    return {
        "info": info,
        "answers": [_answer(s) for s in summaries],
        "agents": _agents(run),
        "causes": causes,
        "causes_more": causes_more,
        "blocked_groups": blocked_groups,
        "blocked_groups_more": blocked_groups_more,
        "changes": _changes(extras, info.targets),
        "trends": _trends(extras, info.targets),
        "gate_line": extras.gate_line,
        "gate_level": {None: "none", True: "good", False: "bad"}[extras.gate_passed],
        "tool_version": info.tool_version or auditor.__version__,
        "duration": _duration(info.duration),
        "warnings": _warnings(run),
        "totals": {
            "hosts": total,
            "audited": audited,
            "not_audited": total - audited - skipped,
            "skipped": skipped,
            "fully_ready": ready,
            "blocked": audited - ready,
        },
        "headlines": [_headline(s) for s in summaries],
        "host_bar": host_bar,
        "outcome_rows": outcome_rows,
        "host_outcome_rows": host_outcome_rows,
        "groups": groups,
        "platforms": [_slice_row(s) for s in by_platform(run)],
        "group_options": sorted(enumerate(data["g"]), key=lambda item: item[1]),
        "platform_names": sorted({r.host.platform.value for r in results}),
        "outcomes": [o.value for o in Outcome],
        "host_outcome_options": [(_HOST_OUTCOME_INDEX[o], o.value) for o, _ in host_counts],
        "outcome_colors": {o.value: c for o, c in OUTCOME_COLORS.items()},
        "host_outcome_colors": {o.value: c for o, c in HOST_OUTCOME_COLORS.items()},
        "default_filter": "blocked" if audited - ready else "",
        "noscript_blocked": blocked_rows,
        "noscript_blocked_more": blocked_total - len(blocked_rows),
        "noscript_unaudited": unaudited_rows,
        "noscript_unaudited_more": unaudited_total - len(unaudited_rows),
        "host_hints": {o.value: host_hint(o) for o in HostOutcome},
        "data": data,
    }


class HtmlReporter(Reporter):
    """report.html (see the module docstring); `extras` adds what the run history knows."""

    filename = "report.html"

    def __init__(self, extras: HtmlExtras | None = None) -> None:
        self.extras = extras

    def render(self, run: AuditRun) -> str:
        return environment().get_template(TEMPLATE).render(context(run, self.extras))
