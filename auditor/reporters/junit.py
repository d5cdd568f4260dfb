"""junit.xml: CI gating. One testsuite per URL, one testcase per inventory host.

A host that reaches the URL passes. A blocked host fails with the target outcome as the
failure type. A host that could not be audited also FAILS (type = its host-level outcome,
e.g. ``unreachable``): a CI gate must never go green because hosts silently dropped out.
A host skipped by design (a connection the auditor has no transport for, such as
``network_cli``) is a ``<skipped>`` testcase: visible, and not a failure. When hosts have
the Qualys agent, one more testsuite holds a testcase per such host: an agent blocked from
the CDN (it would silently fall back to the platform) fails.

Hostile text (host names, probe details) cannot break the document: characters XML 1.0
forbids are removed, so are bidi and zero-width characters (a CI page shows them to people),
and the rest is escaped.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from typing import TextIO

from auditor.agent import host_verdict
from auditor.aggregate import observation_for, tally_of
from auditor.models import (
    AgentVerdict,
    AuditedHost,
    AuditRun,
    HostResult,
    Observation,
    Target,
    UnauditedHost,
)
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
        "remediation: "
        + target_hint(
            observation.outcome,
            target.hostname,
            target.port,
            observation.proxy,
            observation.at_proxy,
        ),
    ]
    failure = (
        f'      <failure type="{kind}" message="{xml_attr(message)}">'
        f"{xml_text(chr(10).join(body))}</failure>\n"
    )
    return f'{head} time="{time}">\n{failure}{_warnings(result)}    </testcase>\n', True


def _suite_head(run: AuditRun, name: str, tests: int, failures: int, skipped: int) -> str:
    return (
        f'  <testsuite name="{xml_attr(name)}" tests="{tests}" '
        f'failures="{failures}" errors="0" skipped="{skipped}" '
        f'time="{_seconds(run.info.duration)}" timestamp="{xml_attr(run.info.started)}">\n'
    )


def _properties(target: Target) -> str:
    return (
        "    <properties>\n"
        f'      <property name="url" value="{xml_attr(target.url)}"/>\n'
        f'      <property name="target" value="{xml_attr(target.name)}"/>\n'
        f'      <property name="category" value="{xml_attr(target.category)}"/>\n'
        "    </properties>\n"
    )


AGENT_SUITE = "qualys-cloud-agent: downloads from the CDN"


def _agent_case(result: HostResult, targets: tuple[Target, ...]) -> str | None:
    """The agent suite's testcase for a host with the Qualys agent installed (else None). An
    agent that cannot reach the CDN (`cdn_blocked`: it silently falls back) fails; one that
    could not be judged is skipped with the reason; ready and too-old agents pass (the
    verdict is in the case's output; `--require-agent` gates on too-old ones)."""
    if not (isinstance(result, AuditedHost) and result.agent and result.agent.installed):
        return None
    verdict, reason = host_verdict(result, targets)
    head = (
        f'    <testcase classname="{xml_attr(_classname(result))}" '
        f'name="{xml_attr(result.host.name)}" time="0.000">\n'
    )
    if verdict is AgentVerdict.CDN_BLOCKED:
        body = (
            f'      <failure type="{verdict.value}" message="{xml_attr(reason)}">'
            f"{xml_text(reason)}</failure>\n"
        )
    elif verdict is AgentVerdict.UNKNOWN:
        body = f'      <skipped message="{xml_attr(reason)}"/>\n'
    else:
        body = f"      <system-out>{xml_text(f'{verdict.value}: {reason}')}</system-out>\n"
    return head + body + "    </testcase>\n"


def _spool() -> TextIO:
    # An unnamed file of this user's (gone when closed): a later testsuite's cases wait
    # here, not in memory, while the results are read once.
    return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace", newline="")


class JunitReporter(Reporter):
    """junit.xml (see the module docstring): one testsuite per URL, then the agent suite
    when any host has the agent; the results are read once."""

    filename = "junit.xml"

    def write(self, run: AuditRun, out: TextIO) -> None:
        tally = tally_of(run)
        targets = run.info.targets
        suites: list[tuple[str, int, int, int, Target | None]] = []
        for summary in tally.summaries():
            failures = tally.not_audited + summary.audited - summary.reachable
            suites.append(
                (summary.target.url, tally.hosts, failures, tally.skipped, summary.target)
            )
        agents = tally.installed_agents
        agent_cases = sum(agents.values())
        if agent_cases:
            suites.append(
                (
                    AGENT_SUITE,
                    agent_cases,
                    agents[AgentVerdict.CDN_BLOCKED],
                    agents[AgentVerdict.UNKNOWN],
                    None,
                )
            )
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuites name="{xml_attr("allow-list audit " + run.info.run_id)}" '
            f'tests="{sum(s[1] for s in suites)}" failures="{sum(s[2] for s in suites)}" '
            f'errors="0" skipped="{sum(s[3] for s in suites)}" '
            f'time="{_seconds(run.info.duration)}">\n'
        )
        if not suites:
            out.write("</testsuites>\n")
            return
        # The first suite goes straight out; the others wait in spool files.
        spools = [_spool() for _ in suites[1:]]
        try:
            sinks: list[TextIO] = [out, *spools]
            name, tests, failures, skipped, target = suites[0]
            out.write(_suite_head(run, name, tests, failures, skipped))
            if target is not None:
                out.write(_properties(target))
            for result in run.results:
                for index, target in enumerate(targets):
                    sinks[index].write(_testcase(result, target, index)[0])
                if agent_cases:
                    case = _agent_case(result, targets)
                    if case is not None:
                        sinks[-1].write(case)
            out.write("  </testsuite>\n")
            for (name, tests, failures, skipped, target), spool in zip(
                suites[1:], spools, strict=True
            ):
                out.write(_suite_head(run, name, tests, failures, skipped))
                if target is not None:
                    out.write(_properties(target))
                spool.seek(0)
                shutil.copyfileobj(spool, out)
                out.write("  </testsuite>\n")
        finally:
            for spool in spools:
                spool.close()
        out.write("</testsuites>\n")
