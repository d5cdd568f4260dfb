"""report.json: strict JSON, versioned, one entry per host, aggregates included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditor.models import AuditRun, RunInfo, UnauditedHost
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters.base import render
from auditor.reporters.json import JsonReporter, json_safe
from auditor.results import SCHEMA_VERSION
from tests.reporters.fleet import HOSTILE_NAME, TARGETS, all_reachable, host, sample_run


def strict_loads(text: str) -> Any:
    def no_constants(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


def test_parses_and_round_trips_hosts() -> None:
    run = sample_run()
    text = render(JsonReporter(), run)
    text.encode("utf-8")  # no lone surrogates
    doc = strict_loads(text)
    assert doc["schema_version"] == SCHEMA_VERSION
    assert len(doc["hosts"]) == len(run.results)
    assert [h["host"]["name"] for h in doc["hosts"]][:2] == ["web-01", "web-02"]
    assert doc["run"]["run_id"] == "run-2024-0001"
    assert [t["url"] for t in doc["run"]["targets"]] == [t.url for t in TARGETS]
    unaudited = [h for h in doc["hosts"] if not h["audited"]]
    assert len(unaudited) == sum(1 for r in run.results if isinstance(r, UnauditedHost))
    assert all(h["host_outcome"] in {o.value for o in HostOutcome} for h in unaudited)
    assert all(h["observations"] == [] for h in unaudited)
    hostile = next(h for h in doc["hosts"] if h["host"]["name"] == HOSTILE_NAME)
    assert hostile["duration"] is None  # NaN became null
    assert hostile["observations"][1]["time_total"] is None
    assert hostile["observations"][1]["time_dns"] is None


def test_summary() -> None:
    doc = strict_loads(render(JsonReporter(), sample_run()))
    summary = doc["summary"]
    assert summary["hosts"] == 22
    assert summary["audited"] == 13
    assert summary["not_audited"] == 9
    assert summary["fully_ready"] == 4
    assert summary["blocked_hosts"] == 9
    assert summary["exit_status"] == 1
    first = summary["targets"][0]
    assert first["url"] == TARGETS[0].url
    assert (first["reachable"], first["blocked"], first["not_audited"]) == (4, 9, 9)
    assert first["readiness"] == pytest.approx(30.77)
    assert set(first["outcomes"]) == {o.value for o in Outcome}
    assert sum(first["outcomes"].values()) == first["audited"]
    assert set(summary["host_outcomes"]) == {o.value for o in HostOutcome}
    assert summary["host_outcomes"]["error"] == 2
    assert sum(summary["host_outcomes"].values()) == 9
    assert sum(summary["target_outcomes"].values()) == 13 * len(TARGETS)
    groups = {g["name"]: g for g in summary["groups"]}
    assert {"web", "db", "dc2", "dmz", "prod", "windows", "ungrouped"} <= set(groups)
    assert groups["ungrouped"]["hosts"] == 1
    platforms = {p["name"]: p for p in summary["platforms"]}
    assert platforms["linux"]["hosts"] + platforms["windows"]["hosts"] == 22


def test_no_secrets() -> None:
    text = render(JsonReporter(), sample_run())
    assert "s3cret-must-not-leak" not in text
    assert "ansible_password" not in text


def test_default_run_info_options() -> None:
    # RunInfo's default options is a MappingProxyType, which dataclasses.asdict cannot copy.
    run = AuditRun(
        RunInfo(run_id="r", started="2024-01-01T00:00:00Z", targets=TARGETS),
        (all_reachable(host("a")),),
    )
    doc = strict_loads(render(JsonReporter(), run))
    assert doc["run"]["options"] == {}
    assert doc["summary"]["targets"][0]["readiness"] == 100.0


def test_empty_run() -> None:
    run = AuditRun(RunInfo(run_id="r", started="s", options={}), ())
    doc = strict_loads(render(JsonReporter(), run))
    assert doc["hosts"] == []
    assert doc["summary"]["targets"] == []
    assert doc["summary"]["exit_status"] == 0


def test_no_audited_host_means_null_readiness() -> None:
    run = AuditRun(
        RunInfo(run_id="r", started="s", targets=TARGETS, options={}),
        (UnauditedHost(host("x"), HostOutcome.UNREACHABLE, "no route"),),
    )
    doc = strict_loads(render(JsonReporter(), run))
    assert all(t["readiness"] is None for t in doc["summary"]["targets"])
    assert doc["summary"]["exit_status"] == 3


def test_json_safe() -> None:
    value = {"a": float("nan"), "b": [float("inf"), 1.5, "x\ud800y"], 3: (True, None)}
    assert json_safe(value) == {"a": None, "b": [None, 1.5, "x\ufffdy"], "3": [True, None]}
