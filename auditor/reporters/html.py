"""report.html: one self-contained page a change board can read, even at 20,000 hosts.

Everything the page needs is inline (CSS, SVG charts, a small vanilla script); it loads
nothing, so it opens on locked-down machines. The summary (headline readiness per URL,
charts, breakdowns by outcome, group and platform, run metadata) is rendered on the server
and reads without JavaScript. The host tables are rendered in the browser from the rows
embedded as JSON (``<script type="application/json">``, with ``<``, ``>``, ``&`` and ``'``
escaped as ``\\u003c``… so the data can never close its element), paginated, filterable
and sortable; without JavaScript a capped list of blocked and not-audited hosts is shown.

Safety: the Jinja2 environment always autoescapes, nothing derived from hosts or results is
ever marked safe, the script builds the table with ``textContent`` only, and a
Content-Security-Policy admits just this page's own style and script (by hash).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

import auditor
from auditor.aggregate import (
    SliceSummary,
    TargetSummary,
    by_group,
    by_platform,
    observation_for,
    run_totals,
    summarize_targets,
)
from auditor.models import AuditedHost, AuditRun, HostResult, Target, UnauditedHost
from auditor.outcomes import HostOutcome, Outcome, host_hint, target_hint
from auditor.reporters.base import Reporter
from auditor.reporters.terminal import format_readiness
from auditor.textsafe import for_text

TEMPLATE = "report.html.j2"
NOSCRIPT_ROWS = 500
"""How many blocked and not-audited rows the no-JavaScript fallback lists."""

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


def table_data(run: AuditRun) -> dict[str, Any]:
    """The host rows the page's script renders, in a compact positional form.

    ``a``: audited hosts ``[name, address, [group…], platform, transport, runner,
    [[outcome, http_status, detail, tls_issuer, proxy, remote_ip, tool]…]]`` and ``u``:
    not-audited hosts ``[name, address, [group…], platform, transport, runner,
    host_outcome, detail]``, where outcomes index ``o``/``ho``, groups index ``g`` and
    every other string (detail, issuer…) indexes the string table ``s``.
    """
    targets = run.info.targets
    ref = _Strings()
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
            audited.append([*common, _observations(result, targets, ref)])
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


def context(run: AuditRun) -> dict[str, Any]:
    """Everything the template needs (plain data; the template escapes all of it)."""
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
    return {
        "info": info,
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
    """report.html (see the module docstring)."""

    filename = "report.html"

    def render(self, run: AuditRun) -> str:
        return environment().get_template(TEMPLATE).render(context(run))
