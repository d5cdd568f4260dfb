"""report.csv: one row per host x target, RFC 4180, safe to open in a spreadsheet.

A host that was not audited still gets one row per URL: its reason in `host_outcome`, the
target verdict (`outcome`) left empty, so nobody mistakes it for a blocked host.

Every text cell is sanitised: control characters other than TAB and newline are dropped,
and a cell that a spreadsheet would read as a formula (it starts with ``= + - @``, TAB or
CR, possibly after leading whitespace) gets a leading apostrophe, as OWASP recommends.
"""

from __future__ import annotations

import csv
import io
import math
import re

from auditor.models import AuditedHost, HostResult, Observation, Target, UnauditedHost
from auditor.outcomes import Outcome, host_hint, target_hint
from auditor.reporters.base import Reporter
from auditor.results import AuditRun

COLUMNS: tuple[str, ...] = (
    "host",
    "address",
    "groups",
    "transport",
    "platform",
    "audited",
    "host_outcome",
    "url",
    "outcome",
    "http_status",
    "detail",
    "remediation",
    "tls_issuer",
    "proxy",
    "remote_ip",
    "tool",
    "time_dns",
    "time_connect",
    "time_tls",
    "time_total",
    "runner",
    "target",
    "exit_code",
    "warnings",
)
"""The column order. New columns are only ever appended."""

# C0 controls except TAB and LF, DEL, C1 controls, lone surrogates, and the Unicode
# bidirectional overrides that can make a cell display something other than it holds.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_NEWLINES = re.compile("\r\n?")
# Characters that make a spreadsheet evaluate a cell; the full-width forms are read the same
# way by some spreadsheet applications.
_FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def cell(value: str) -> str:
    """One text cell, sanitised and formula-neutralised."""
    if not value.isprintable():
        value = _CONTROL.sub("", _NEWLINES.sub("\n", value))
    if value and (value[0] in _FORMULA_START or value.lstrip()[:1] in _FORMULA_START):
        return "'" + value
    return value


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.6f}"


def _int(value: int | None) -> str:
    return "" if value is None else str(int(value))


def _warnings(result: HostResult) -> str:
    """Trust weakened for this host on the user's say-so, e.g. TLS validation off."""
    return cell("; ".join(result.warnings))


def _row(result: HostResult, target: Target, observation: Observation | None) -> list[str]:
    host = result.host
    common = [
        cell(host.name),
        cell(host.address),
        cell(";".join(host.groups)),
        host.connection.value,
        host.platform.value,
    ]
    if isinstance(result, UnauditedHost):
        return [
            *common,
            "false",
            result.outcome.value,
            cell(target.url),
            "",
            "",
            cell(result.detail),
            host_hint(result.outcome),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            cell(result.runner),
            cell(target.name),
            "",
            _warnings(result),
        ]
    if observation is None:  # an audited host without a verdict for this URL
        return [
            *common,
            "true",
            "",
            cell(target.url),
            Outcome.ERROR.value,
            "",
            "no observation was recorded for this URL",
            target_hint(Outcome.ERROR, target.hostname, target.port),
            *([""] * 9),
            cell(result.runner),
            cell(target.name),
            "",
            _warnings(result),
        ]
    o = observation
    return [
        *common,
        "true",
        "",
        cell(target.url),
        o.outcome.value,
        _int(o.http_status),
        cell(o.detail),
        cell(target_hint(o.outcome, target.hostname, target.port)),
        cell(o.tls_issuer),
        cell(o.proxy),
        cell(o.remote_ip),
        cell(o.tool),
        _number(o.time_dns),
        _number(o.time_connect),
        _number(o.time_tls),
        _number(o.time_total),
        cell(result.runner),
        cell(target.name),
        _int(o.exit_code),
        _warnings(result),
    ]


def rows(run: AuditRun) -> list[list[str]]:
    """Every host x target row, in host (inventory) order then target order."""
    out: list[list[str]] = []
    targets = run.info.targets
    for result in run.results:
        observations = result.observations if isinstance(result, AuditedHost) else ()
        for index, target in enumerate(targets):
            obs = observations[index] if index < len(observations) else None
            out.append(_row(result, target, obs))
    return out


class CsvReporter(Reporter):
    """report.csv (see the module docstring)."""

    filename = "report.csv"

    def render(self, run: AuditRun) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(COLUMNS)
        writer.writerows(rows(run))
        return buffer.getvalue()
