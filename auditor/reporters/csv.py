"""report.csv: one row per host x target, RFC 4180, safe to open in a spreadsheet.

A host that was not audited still gets one row per URL: its reason in `host_outcome`, the
target verdict (`outcome`) left empty, so nobody mistakes it for a blocked host.

Every text cell is sanitised (`auditor.textsafe.for_cell`): control, bidi and zero-width
characters other than TAB and newline are dropped, and a cell that a spreadsheet would read
as a formula (it starts with ``= + - @``, TAB or CR, possibly after spaces and invisible
characters such as U+FEFF or U+2060) gets a leading apostrophe, as OWASP recommends. A cell
with a ``,`` ``;`` TAB, quote or line break is quoted: spreadsheets set to a ``;`` or TAB
separator then still read one cell.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import TextIO

from auditor.agent import agent_report
from auditor.aggregate import observation_for
from auditor.models import AuditedHost, AuditRun, HostResult, Observation, Target, UnauditedHost
from auditor.outcomes import Outcome, host_hint, target_hint
from auditor.reporters.base import Reporter
from auditor.textsafe import for_cell

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
    "agent_version",
    "agent_uses_cdn",
    "agent_proxy",
    "agent_verdict",
)
"""The column order. New columns are only ever appended."""

_NEEDS_QUOTES = re.compile('[",;\t\r\n]')


def cell(value: str) -> str:
    """One text cell, sanitised and formula-neutralised."""
    return for_cell(value)


def _field(value: str) -> str:
    """One field of a record, RFC 4180 quoted when it holds a separator of any locale."""
    if _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _record(fields: list[str] | tuple[str, ...]) -> str:
    return ",".join(map(_field, fields)) + "\r\n"


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
    return [
        *common,
        "true",
        "",
        cell(target.url),
        *_evidence(observation, target),
        cell(result.runner),
        cell(target.name),
        _int(observation.exit_code),
        _warnings(result),
    ]


def _evidence(o: Observation, target: Target) -> list[str]:
    """The cells of one URL's verdict, from `outcome` to `time_total`."""
    return [
        o.outcome.value,
        _int(o.http_status),
        cell(o.detail),
        cell(target_hint(o.outcome, target.hostname, target.port, o.proxy, o.at_proxy)),
        cell(o.tls_issuer),
        cell(o.proxy),
        cell(o.remote_ip),
        cell(o.tool),
        _number(o.time_dns),
        _number(o.time_connect),
        _number(o.time_tls),
        _number(o.time_total),
    ]


def rows(run: AuditRun) -> Iterator[list[str]]:
    """Every host x target row, in host (inventory) order then target order, as the
    results are read."""
    targets = run.info.targets
    for result in run.results:
        agent = _agent_cells(result, targets)
        for index, target in enumerate(targets):
            obs = (
                observation_for(result, index, target) if isinstance(result, AuditedHost) else None
            )
            yield [*_row(result, target, obs), *agent]


def _joined(fields: list[str]) -> str:
    return ",".join(map(_field, fields))


def _lines(run: AuditRun) -> Iterator[str]:
    """The records of `rows`, as text: what belongs to the host (its cells, runner, warnings,
    agent) and to the URL is sanitised and quoted once, not once per row."""
    targets = run.info.targets
    urls = [_field(cell(t.url)) for t in targets]
    names = [_field(cell(t.name)) for t in targets]
    for result in run.results:
        host = result.host
        common = [
            cell(host.name),
            cell(host.address),
            cell(";".join(host.groups)),
            host.connection.value,
            host.platform.value,
        ]
        rest = _joined([_warnings(result), *_agent_cells(result, targets)]) + "\r\n"
        runner = _field(cell(result.runner))
        if isinstance(result, UnauditedHost):
            head = _joined([*common, "false", result.outcome.value]) + ","
            middle = (
                ","
                + _joined(["", "", cell(result.detail), host_hint(result.outcome), *([""] * 8)])
                + f",{runner},"
            )
            for url, name in zip(urls, names, strict=True):
                # An empty exit_code between the target's name and the warnings.
                yield head + url + middle + name + ",," + rest
            continue
        head = _joined([*common, "true", ""]) + ","
        for index, target in enumerate(targets):
            o = observation_for(result, index, target)
            evidence = _joined(_evidence(o, target))
            exit_code = _field(_int(o.exit_code))
            yield f"{head}{urls[index]},{evidence},{runner},{names[index]},{exit_code},{rest}"


def _agent_cells(result: HostResult, targets: tuple[Target, ...]) -> list[str]:
    """agent_version, agent_uses_cdn, agent_proxy (masked), agent_verdict: per host."""
    facts = agent_report(result, targets)
    uses = facts["uses_cdn"]
    return [
        cell(facts["version"] or ""),
        "" if uses is None else str(uses).lower(),
        cell(facts["proxy"]),
        facts["verdict"],
    ]


class CsvReporter(Reporter):
    """report.csv (see the module docstring)."""

    filename = "report.csv"

    def write(self, run: AuditRun, out: TextIO) -> None:
        out.write(_record(COLUMNS))
        for line in _lines(run):
            out.write(line)
