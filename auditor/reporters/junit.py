"""junit.xml: CI gating. One testsuite per URL, one testcase per inventory host.

A host that reaches the URL passes. A blocked host fails with the target outcome as the
failure type. A host that could not be audited also FAILS (type = its host-level outcome,
e.g. ``unreachable``): a CI gate must never go green because hosts silently dropped out.
A host skipped by design (a connection the auditor has no transport for, such as
``network_cli``) is a ``<skipped>`` testcase: visible, and not a failure.

Hostile text (host names, probe details) cannot break the document: characters XML 1.0
forbids are removed, so are bidi and zero-width characters (a CI page shows them to people),
and the rest is escaped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from auditor.aggregate import observation_for
from auditor.models import AuditedHost, AuditRun, HostResult, Observation, Target, UnauditedHost
from auditor.outcomes import Outcome, host_hint, target_hint
from auditor.reporters.base import Reporter
from auditor.textsafe import for_text

# Everything outside the XML 1.0 Char production (and lone surrogates).
_XML_FORBIDDEN = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTR_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def xml_text(value: str) -> str:
    """`value` as XML character data."""
    return _XML_FORBIDDEN.sub("", for_text(value)).translate(_TEXT_ESCAPES).replace("\r", "&#13;")


def xml_attr(value: str) -> str:
    """`value` as the content of a double-quoted XML attribute."""
    return _XML_FORBIDDEN.sub("", for_text(value)).translate(_ATTR_ESCAPES)


def _seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value) or value < 0:
        return "0.000"
    return f"{value:.3f}"


def _classname(result: HostResult) -> str:
    return result.host.groups[0] if result.host.groups else result.host.name


def _evidence(observation: Observation) -> list[str]:
    lines = []
    if observation.http_status is not None:
        lines.append(f"http status: {observation.http_status}")
    if observation.tls_issuer:
        lines.append(f"tls issuer: {observation.tls_issuer}")
    if observation.proxy:
        lines.append(f"proxy: {observation.proxy}")
    if observation.remote_ip:
        lines.append(f"remote ip: {observation.remote_ip}")
    if observation.tool:
        lines.append(f"tool: {observation.tool}")
    if observation.exit_code is not None:
        lines.append(f"exit code: {observation.exit_code}")
    return lines


def _warnings(result: HostResult) -> str:
    """Trust weakened for this host on the user's say-so (e.g. TLS validation off)."""
    if not result.warnings:
        return ""
    text = "\n".join(f"WARNING: {w}" for w in result.warnings)
    return f"      <system-err>{xml_text(text)}</system-err>\n"


def _testcase(result: HostResult, target: Target, index: int) -> tuple[str, bool]:
    """One <testcase> element and whether it failed."""
    head = (
        f'    <testcase classname="{xml_attr(_classname(result))}" '
        f'name="{xml_attr(result.host.name)}"'
    )
    if isinstance(result, UnauditedHost) and result.skipped:
        skipped = f'      <skipped message="{xml_attr(result.detail)}"/>\n'
        return f'{head} time="0.000">\n{skipped}    </testcase>\n', False
    if not isinstance(result, AuditedHost):
        kind = result.outcome.value
        message = f"host not audited: {kind}" + (f": {result.detail}" if result.detail else "")
        body = [
            f"{result.host.name} ({result.host.address}) was not audited: {kind}",
            *([result.detail] if result.detail else []),
            f"remediation: {host_hint(result.outcome)}",
        ]
        failure = (
            f'      <failure type="{kind}" message="{xml_attr(message)}">'
            f"{xml_text(chr(10).join(body))}</failure>\n"
        )
        body_xml = failure + _warnings(result)
        return f'{head} time="{_seconds(result.duration)}">\n{body_xml}    </testcase>\n', True
    observation = observation_for(result, index, target)
    time = _seconds(observation.time_total)
    if observation.outcome is Outcome.REACHABLE:
        if result.warnings:
            return f'{head} time="{time}">\n{_warnings(result)}    </testcase>\n', False
        return f'{head} time="{time}"/>\n', False
    kind = observation.outcome.value
    detail = observation.detail
    message = f"blocked: {kind}" + (f": {detail}" if detail else "")
    body = [
        f"{result.host.name} ({result.host.address}) cannot reach {target.url}: {kind}",
        *([detail] if detail else []),
        *_evidence(observation),
        f"remediation: {target_hint(observation.outcome, target.hostname, target.port)}",
    ]
    failure = (
        f'      <failure type="{kind}" message="{xml_attr(message)}">'
        f"{xml_text(chr(10).join(body))}</failure>\n"
    )
    return f'{head} time="{time}">\n{failure}{_warnings(result)}    </testcase>\n', True


def _suites(run: AuditRun) -> Iterator[tuple[str, int, int, int]]:
    """(XML of one testsuite, tests, failures, skipped) per target."""
    timestamp = xml_attr(run.info.started)
    skipped = sum(1 for r in run.results if r.skipped)
    for index, target in enumerate(run.info.targets):
        cases: list[str] = []
        failures = 0
        for result in run.results:
            xml, failed = _testcase(result, target, index)
            cases.append(xml)
            failures += failed
        tests = len(cases)
        props = (
            "    <properties>\n"
            f'      <property name="url" value="{xml_attr(target.url)}"/>\n'
            f'      <property name="target" value="{xml_attr(target.name)}"/>\n'
            f'      <property name="category" value="{xml_attr(target.category)}"/>\n'
            "    </properties>\n"
        )
        head = (
            f'  <testsuite name="{xml_attr(target.url)}" tests="{tests}" '
            f'failures="{failures}" errors="0" skipped="{skipped}" '
            f'time="{_seconds(run.info.duration)}" timestamp="{timestamp}">\n'
        )
        yield head + props + "".join(cases) + "  </testsuite>\n", tests, failures, skipped


class JunitReporter(Reporter):
    """junit.xml (see the module docstring)."""

    filename = "junit.xml"

    def render(self, run: AuditRun) -> str:
        suites = list(_suites(run))
        tests = sum(t for _, t, _, _ in suites)
        failures = sum(f for _, _, f, _ in suites)
        skipped = sum(k for _, _, _, k in suites)
        head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuites name="{xml_attr("allow-list audit " + run.info.run_id)}" '
            f'tests="{tests}" failures="{failures}" errors="0" skipped="{skipped}" '
            f'time="{_seconds(run.info.duration)}">\n'
        )
        return head + "".join(xml for xml, _, _, _ in suites) + "</testsuites>\n"
