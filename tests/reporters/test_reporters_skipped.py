"""Skipped hosts in every report: present once, never blocked, never a failure.

A skipped host (its connection, e.g. network_cli, has no transport) is an `UnauditedHost`
with the outcome `skipped`. These runs are built by hand, with and without other
not-audited hosts, and rendered by every reporter.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

from auditor.aggregate import EXIT_BLOCKED, EXIT_NOT_AUDITED, EXIT_OK, exit_status
from auditor.models import (
    AuditedHost,
    AuditRun,
    Connection,
    Host,
    HostResult,
    Observation,
    Platform,
    RunInfo,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome, Outcome, host_hint
from auditor.reporters.base import render
from auditor.reporters.csv import CsvReporter
from auditor.reporters.html import HtmlReporter
from auditor.reporters.json import JsonReporter
from auditor.reporters.junit import JunitReporter
from auditor.reporters.terminal import Progress, render_summary

TARGET = Target(url="https://cdn.example.com/status", name="CDN")


def _host(name: str, connection: Connection = Connection.SSH, skip: str = "") -> Host:
    return Host(name, f"{name}.example", connection, Platform.LINUX, groups=("g",), skip=skip)


def _audited(name: str, outcome: Outcome = Outcome.REACHABLE) -> AuditedHost:
    return AuditedHost(_host(name), (Observation(TARGET.url, outcome),))


def _skipped(name: str) -> UnauditedHost:
    detail = "connection network_cli is not audited"
    return UnauditedHost(_host(name, Connection.NONE, detail), HostOutcome.SKIPPED, detail)


def _run(*results: HostResult) -> AuditRun:
    return AuditRun(RunInfo(run_id="r1", started="2026-01-01T00:00:00", targets=(TARGET,)), results)


def test_skipped_hosts_never_change_the_exit_status() -> None:
    assert exit_status(_run(_audited("a"), _skipped("sw1"))) == EXIT_OK
    assert exit_status(_run(_skipped("sw1"))) == EXIT_OK
    assert exit_status(_run(_audited("a", Outcome.TIMEOUT), _skipped("sw1"))) == EXIT_BLOCKED
    unreachable = UnauditedHost(_host("b"), HostOutcome.UNREACHABLE, "no route")
    assert exit_status(_run(_audited("a"), unreachable, _skipped("sw1"))) == EXIT_NOT_AUDITED


def test_junit_has_a_skipped_testcase_not_a_failure() -> None:
    root = ET.fromstring(render(JunitReporter(), _run(_audited("a"), _skipped("sw1"))))
    assert root.get("failures") == "0" and root.get("skipped") == "1"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("skipped") == "1" and suite.get("tests") == "2"
    cases = [c for c in root.iter("testcase") if c.get("name") == "sw1"]
    assert len(cases) == 1
    skipped = cases[0].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "connection network_cli is not audited"
    assert cases[0].find("failure") is None


def test_json_counts_skipped_apart_from_not_audited() -> None:
    unreachable = UnauditedHost(_host("b"), HostOutcome.UNREACHABLE, "no route")
    report = json.loads(render(JsonReporter(), _run(_audited("a"), unreachable, _skipped("sw1"))))
    summary = report["summary"]
    assert (summary["hosts"], summary["audited"], summary["not_audited"]) == (3, 1, 1)
    assert summary["skipped"] == 1 and summary["blocked_hosts"] == 0
    assert summary["targets"][0]["not_audited"] == 1
    assert summary["targets"][0]["skipped"] == 1
    assert summary["targets"][0]["readiness"] == 100.0
    group = summary["groups"][0]
    assert (group["not_audited"], group["skipped"]) == (1, 1)
    entries = [h for h in report["hosts"] if h["host"]["name"] == "sw1"]
    assert len(entries) == 1
    assert entries[0]["host_outcome"] == "skipped"
    assert entries[0]["host"]["connection"] == "none"


def test_csv_has_the_skipped_host_with_its_reason_and_no_verdict() -> None:
    rows = list(csv.DictReader(io.StringIO(render(CsvReporter(), _run(_skipped("sw1"))))))
    assert len(rows) == 1
    row = rows[0]
    assert (row["host"], row["host_outcome"], row["outcome"], row["audited"]) == (
        "sw1",
        "skipped",
        "",
        "false",
    )
    assert row["remediation"] == host_hint(HostOutcome.SKIPPED)


def test_html_lists_a_run_of_only_skipped_hosts() -> None:
    """The not-audited table was drawn only when some host was not audited; skipped hosts
    alone must still be listed."""
    html = render(HtmlReporter(), _run(_audited("a"), _skipped("sw1")))
    assert 'id="unaudited-table"' in html
    assert "1 skipped" in html
    assert "skipped by design" in html


def test_terminal_summary_lists_skipped_hosts_apart() -> None:
    unreachable = UnauditedHost(_host("b"), HostOutcome.UNREACHABLE, "no route")
    text = render_summary(_run(_audited("a"), unreachable, _skipped("sw1")), color=False)
    assert "3 hosts, 1 audited, 1 not audited, 1 skipped" in text
    assert "Not audited (1;" in text
    not_audited = text.split("Not audited (1;")[1].split("Skipped")[0]
    assert "sw1" not in not_audited
    assert "Skipped (1; connection not audited" in text
    assert "  sw1: connection network_cli is not audited" in text


def test_progress_counts_skipped_hosts_apart() -> None:
    progress = Progress(total=2, stream=io.StringIO())
    progress.update(_audited("a"))
    progress.update(_skipped("sw1"))
    assert (progress.ok, progress.not_audited, progress.skipped) == (1, 0, 1)
    assert "skipped 1" in progress.line()
