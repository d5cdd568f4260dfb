"""The agent verdict in every report: the fleet answer first in the terminal summary and in
report.json (per group too), each host's `agent` object, the CSV agent columns, the JUnit
agent suite, and the `--require-agent` exit status."""

from __future__ import annotations

import csv
import gc
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from pytest import MonkeyPatch

import auditor.agent as agent_module
from auditor.agent import count_verdicts, fleet_sentence
from auditor.aggregate import EXIT_BLOCKED, EXIT_OK, exit_status
from auditor.models import (
    AgentFacts,
    AgentVerdict,
    AuditedHost,
    AuditRun,
    Connection,
    Host,
    HostResult,
    Observation,
    Platform,
    ProbePath,
    RunInfo,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters.csv import COLUMNS, CsvReporter
from auditor.reporters.json import JsonReporter
from auditor.reporters.junit import AGENT_SUITE, JunitReporter
from auditor.reporters.terminal import render_summary

CDN = Target(url="https://cask.qg3.apps.qualys.com/status", name="US3 CDN", category="CDN")
PLATFORM = Target(
    url="https://qagpublic.qg3.apps.qualys.com/", name="US3", category="agent platform"
)
TARGETS = (CDN, PLATFORM)


def _host(name: str, group: str, platform: Platform = Platform.LINUX) -> Host:
    return Host(
        name=name,
        address=f"{name}.lab",
        connection=Connection.SSH,
        platform=platform,
        groups=(group,),
    )


def _audited(
    name: str, group: str, agent: AgentFacts | None, cdn: Outcome = Outcome.REACHABLE
) -> AuditedHost:
    proxy = agent.proxy if agent else ""
    return AuditedHost(
        host=_host(name, group),
        observations=(
            Observation(url=CDN.url, outcome=cdn, proxy=proxy, at_proxy=cdn is Outcome.REFUSED),
            Observation(url=PLATFORM.url, outcome=Outcome.REACHABLE, proxy=proxy),
        ),
        agent=agent,
    )


def _agent(version: str, **kw: object) -> AgentFacts:
    return AgentFacts(installed=True, version=version, source="dpkg", **kw)  # type: ignore[arg-type]


PROXIED = _agent(
    "6.4.1.2",
    proxies=("http://corp:***@proxy1:3128", "http://proxy2:3128"),
    path=ProbePath.AGENT_PROXY,
    ca_bundle=True,
    running=True,
)
RESULTS: tuple[HostResult, ...] = (
    _audited("ready1", "dc1", PROXIED),
    _audited("ready2", "dc2", _agent("7.0.0")),
    _audited("blocked1", "dc1", PROXIED, Outcome.REFUSED),
    _audited("old1", "dc2", _agent("6.3.0.9")),
    _audited("none1", "dc1", AgentFacts(installed=False)),
    UnauditedHost(_host("down1", "dc2"), HostOutcome.UNREACHABLE, "no route"),
    _audited("win1", "dc2", None),
)


def _run(results: tuple[HostResult, ...] = RESULTS) -> AuditRun:
    return AuditRun(
        info=RunInfo(run_id="r1", started="2026-01-01T00:00:00Z", targets=TARGETS),
        results=results,
    )


def test_the_fleet_sentence_counts_every_verdict() -> None:
    counts = count_verdicts(RESULTS, TARGETS)
    assert fleet_sentence(counts) == (
        "Of 7 hosts: 2 agents will use the CDN, 1 agent is blocked from it (they fall back "
        "to the platform), 1 agent is too old to use it, 1 host has no agent, "
        "2 hosts could not be told"
    )


def test_the_terminal_summary_gives_the_fleet_answer_first() -> None:
    text = render_summary(_run(), color=False)
    lines = text.splitlines()
    assert lines[2].startswith("Qualys Cloud Agent: Of 7 hosts: 2 agents will use the CDN")
    assert any(line.startswith("  dc1: Of 3 hosts: 1 agent will use the CDN") for line in lines)
    assert any("agent blocked: blocked1: cask.qg3.apps.qualys.com: refused" in x for x in lines)
    assert text.index("Qualys Cloud Agent") < text.index("Readiness")


def test_report_json_has_each_hosts_agent_and_the_fleet_answer() -> None:
    report = json.loads(JsonReporter().render(_run()))
    hosts = {h["host"]["name"]: h["agent"] for h in report["hosts"]}
    assert hosts["ready1"] == {
        "installed": True,
        "version": "6.4.1.2",
        "uses_cdn": True,
        "proxy": "http://corp:***@proxy1:3128",
        "proxies": ["http://corp:***@proxy1:3128", "http://proxy2:3128"],
        "ca_bundle": True,
        "running": True,
        "verdict": "cdn_ready",
        "reason": "agent 6.4.1.2 reaches the CDN",
        "path": "agent_proxy",
        "credentials_encrypted": False,
        "source": "dpkg",
        "config": "",
        "proxy_key": "",
        "notes": [],
    }
    assert hosts["blocked1"]["verdict"] == "cdn_blocked"
    assert (hosts["old1"]["verdict"], hosts["old1"]["uses_cdn"]) == ("too_old", False)
    assert (hosts["none1"]["verdict"], hosts["none1"]["installed"]) == ("no_agent", False)
    assert hosts["down1"]["verdict"] == "unknown" and hosts["down1"]["installed"] is False
    agents = report["summary"]["agents"]
    assert {k: agents[k] for k in ("hosts", "cdn_ready", "cdn_blocked", "too_old")} == {
        "hosts": 7,
        "cdn_ready": 2,
        "cdn_blocked": 1,
        "too_old": 1,
    }
    assert agents["sentence"].startswith("Of 7 hosts: 2 agents will use the CDN")
    assert [(g["name"], g["hosts"], g["cdn_blocked"]) for g in agents["groups"]] == [
        ("dc1", 3, 1),
        ("dc2", 4, 0),
    ]


# The contract of each host's "agent" object in report.json: these keys, these types.
AGENT_CONTRACT: dict[str, tuple[type, ...]] = {
    "installed": (bool,),
    "version": (str, type(None)),
    "uses_cdn": (bool, type(None)),
    "proxy": (str,),
    "proxies": (list,),
    "ca_bundle": (bool,),
    "running": (bool, type(None)),
    "verdict": (str,),
}


def test_every_hosts_agent_object_keeps_the_contract_even_when_nothing_could_be_read() -> None:
    """`installed` is a bool for every host: an unknown is said by `verdict: "unknown"`
    (with its reason) and by the nullable fields, never by a null `installed`."""
    unreadable = _audited(
        "unreadable", "dc1", AgentFacts(installed=None, notes=("dpkg-query: exit 2",))
    )
    report = json.loads(JsonReporter().render(_run((*RESULTS, unreadable))))
    hosts = {h["host"]["name"]: h["agent"] for h in report["hosts"]}
    for name, agent in hosts.items():
        for key, types in AGENT_CONTRACT.items():
            assert type(agent[key]) in types, (name, key, agent[key])
        assert agent["verdict"] in {"cdn_ready", "cdn_blocked", "too_old", "no_agent", "unknown"}
        assert all(isinstance(p, str) for p in agent["proxies"])
        assert set(agent) == set(hosts["ready1"]), name  # one shape for every host
    # A host that could not be audited, one whose probe did not report the agent, and one
    # whose package database did not answer: not installed as far as is known, and unknown.
    unknown_facts = {
        "installed": False,
        "version": None,
        "uses_cdn": None,
        "proxy": "",
        "proxies": [],
        "ca_bundle": False,
        "running": None,
        "verdict": "unknown",
    }
    for name in ("down1", "win1", "unreadable"):
        assert {k: hosts[name][k] for k in AGENT_CONTRACT} == unknown_facts, name
    assert hosts["down1"]["reason"] == "host not audited (unreachable)"
    assert hosts["down1"]["path"] == "" and hosts["down1"]["notes"] == []
    assert hosts["win1"]["reason"] == "the probe did not report the agent"
    assert hosts["unreadable"]["reason"] == (
        "could not tell whether the agent is installed: dpkg-query: exit 2"
    )
    # Not installed (known) differs from unknown only by the verdict, which says which.
    assert hosts["none1"]["installed"] is False and hosts["none1"]["verdict"] == "no_agent"


def test_csv_appends_the_agent_columns() -> None:
    assert COLUMNS[-4:] == ("agent_version", "agent_uses_cdn", "agent_proxy", "agent_verdict")
    rows = list(csv.DictReader(io.StringIO(CsvReporter().render(_run()))))
    by_host = {r["host"]: r for r in rows}
    assert len(rows) == len(RESULTS) * len(TARGETS)
    assert [by_host["ready1"][c] for c in COLUMNS[-4:]] == [
        "6.4.1.2",
        "true",
        "http://corp:***@proxy1:3128",
        "cdn_ready",
    ]
    assert [by_host["old1"][c] for c in COLUMNS[-4:]] == ["6.3.0.9", "false", "", "too_old"]
    assert [by_host["down1"][c] for c in COLUMNS[-4:]] == ["", "", "", "unknown"]
    blocked = next(r for r in rows if r["host"] == "blocked1" and r["url"] == CDN.url)
    assert "proxy http://corp:***@proxy1:3128 refused" in blocked["remediation"]


def test_junit_fails_a_host_whose_agent_is_blocked_from_the_cdn() -> None:
    root = ET.fromstring(JunitReporter().render(_run()))
    (suite,) = [s for s in root.iter("testsuite") if s.get("name") == AGENT_SUITE]
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"ready1", "ready2", "blocked1", "old1"}
    assert [f.get("type") for f in cases["blocked1"].iter("failure")] == ["cdn_blocked"]
    assert not list(cases["ready1"].iter("failure"))
    assert suite.get("failures") == "1"
    without = ET.fromstring(JunitReporter().render(_run((RESULTS[4],))))
    assert AGENT_SUITE not in [s.get("name") for s in without.iter("testsuite")]


def test_require_agent_fails_on_no_agent_or_too_old_only() -> None:
    ready = _run((RESULTS[0], RESULTS[1]))
    assert exit_status(ready, require_agent=True) == EXIT_OK
    assert exit_status(_run((RESULTS[0], RESULTS[3])), require_agent=True) == EXIT_BLOCKED
    assert exit_status(_run((RESULTS[0], RESULTS[3])), require_agent=False) == EXIT_OK
    assert exit_status(_run((RESULTS[4],)), require_agent=True) == EXIT_BLOCKED


def test_report_html_gives_the_fleet_answer_under_the_headline_and_per_group() -> None:
    from auditor.reporters.html import HtmlReporter

    html = HtmlReporter().render(_run())
    answer = html[html.index('<section id="answer">') : html.index("</section>")]
    assert (
        '<p class="agents lvl-bad" id="agents"><b>Qualys Cloud Agent:</b> Of 7 hosts: 2' in answer
    )
    table = answer[answer.index('<table class="agent-groups">') :]
    assert (
        "<tr><td>dc1</td><td>3</td><td>1</td><td>1</td><td>0</td><td>1</td><td>0</td></tr>" in table
    )
    # A run in which no host reported on an agent has no agent answer at all.
    plain = HtmlReporter().render(_run((RESULTS[-1], RESULTS[-2])))
    assert 'id="agents"' not in plain


def test_each_hosts_verdict_is_judged_once_for_every_report(monkeypatch: MonkeyPatch) -> None:
    """The five reports ask for each host's verdict many times; it is judged once per result
    and targets, judged again for other targets, and forgotten with its result."""
    from auditor.reporters.html import HtmlReporter

    judged: list[HostResult] = []
    judge = agent_module._judge

    def counting(result: HostResult, targets: Sequence[Target]) -> tuple[AgentVerdict, str]:
        judged.append(result)
        return judge(result, targets)

    monkeypatch.setattr(agent_module, "_judge", counting)
    fresh = (_audited("fresh1", "dc1", PROXIED), _audited("fresh2", "dc2", _agent("6.3.0.9")))
    run = _run(fresh)
    for reporter in (CsvReporter(), HtmlReporter(), JsonReporter(), JunitReporter()):
        reporter.render(run)
    render_summary(run, color=False)
    assert sorted(r.host.name for r in judged) == ["fresh1", "fresh2"]
    assert agent_module.host_verdict(fresh[0], TARGETS)[0] is AgentVerdict.CDN_READY
    assert len(judged) == 2
    # Other targets (no CDN among them): judged anew, and right for them.
    assert agent_module.host_verdict(fresh[0], (PLATFORM,))[0] is AgentVerdict.UNKNOWN
    assert len(judged) == 3
    keys = [id(r) for r in fresh]
    assert all(k in agent_module._VERDICTS for k in keys)
    del run, fresh
    judged.clear()
    gc.collect()
    assert not any(k in agent_module._VERDICTS for k in keys)
