"""A 300-host lab audit with 10 % of the hosts broken in mixed ways: every host appears exactly
once in every report, at the right level (host-level faults never count as blocked)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from auditor_lab import LabInfo

from auditor.reporters.junit import AGENT_SUITE

BIN = Path(sys.executable).parent
URL = "https://cask.qg3.apps.qualys.com/status"


pytestmark = pytest.mark.lab_exclusive


@pytest.fixture
def faulty_lab(
    tmp_path_factory: pytest.TempPathFactory, lab_slot: None
) -> Iterator[tuple[LabInfo, dict[str, str]]]:
    from auditor_lab import lab_down, lab_up
    from auditor_lab.spec import fleet

    directory = tmp_path_factory.mktemp("faulty-lab")
    extra = 300 - len(fleet())  # the Linux and Windows design hosts, then scale hosts
    try:
        info = lab_up(directory, extra_hosts=extra)
        state = json.loads((directory / "state.json").read_text())
        pids = {p["role"]: p["pid"] for p in state["processes"]}
        scale = [h for h in info.hosts if h.name.startswith("scale-")]
        faults: dict[str, str] = {}
        for i, host in enumerate(scale[:30]):
            kind = ("killed", "dropped", "rejected")[i % 3]
            if kind == "killed":
                os.kill(pids[f"sshd:{host.name}"], signal.SIGKILL)
            else:
                verdict = "drop" if kind == "dropped" else "reject with tcp reset"
                rules = f"table inet fault {{ chain in {{ type filter hook input priority 0; tcp dport 22 {verdict}; }}; }}"
                subprocess.run(
                    ["ip", "netns", "exec", host.namespace, "nft", "-f", "-"],
                    input=rules,
                    text=True,
                    check=True,
                )
            faults[host.name] = kind
        yield info, faults
    finally:
        lab_down(directory)


def test_every_host_appears_exactly_once_at_the_right_level(
    faulty_lab: tuple[LabInfo, dict[str, str]], tmp_path: Path
) -> None:
    info, faults = faulty_lab
    out = tmp_path / "o"
    proc = subprocess.run(
        [
            str(BIN / "audit"),
            "-i",
            str(info.inventory),
            "--known-hosts",
            str(info.known_hosts),
            "--url",
            URL,
            "-o",
            str(out),
            # The lab's sshds share two cores with everything else: 50 handshakes at once
            # take seconds, so a short connect timeout would fail healthy hosts.
            "-f",
            "50",
            "--connect-timeout",
            "20",
            "--timeout",
            "90",
            "--probe-timeout",
            "10",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        # The fleet has Windows hosts: a run that selects them needs a WinRM password before
        # it starts. A wrong one keeps them quick (refused at login), as before.
        env={**os.environ, "AUDITOR_WINRM_PASSWORD": "not-the-lab-password"},
    )
    assert proc.returncode == 1, proc.stderr
    names = sorted(h.name for h in info.hosts)
    assert len(names) == 300

    rows = list(csv.DictReader((out / "report.csv").open(newline="")))
    assert sorted(r["host"] for r in rows) == names
    report = json.loads((out / "report.json").read_text())
    assert sorted(h["host"]["name"] for h in report["hosts"]) == names
    # Every host once in the URL's suite; the agent suite (hosts whose agent answered) holds
    # no host twice either.
    suites = {s.get("name"): s for s in ET.parse(out / "junit.xml").getroot().iter("testsuite")}
    agent_suite = suites.pop(AGENT_SUITE, None)
    (url_suite,) = suites.values()
    cases = [c.get("name") for c in url_suite.iter("testcase")]
    assert sorted(cases) == names
    if agent_suite is not None:
        agent_cases = [c.get("name") for c in agent_suite.iter("testcase")]
        assert len(agent_cases) == len(set(agent_cases)) and set(agent_cases) <= set(names)
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["host"]["name"] for r in results if r["type"] == "host") == names
    html = (out / "report.html").read_text()
    for name in names:
        assert re.search(rf"\b{re.escape(name)}\b", html), name

    by_name = {r["host"]: r for r in rows}
    for name, kind in faults.items():
        row = by_name[name]
        assert row["audited"] == "false", row
        assert row["host_outcome"] == "unreachable", (kind, row)
        assert row["outcome"] == ""
    healthy = [n for n in names if n.startswith("scale-") and n not in faults]
    wrong = {
        n: (by_name[n]["host_outcome"], by_name[n]["outcome"], by_name[n]["detail"])
        for n in healthy
        if by_name[n]["outcome"] != "reachable"
    }
    assert wrong == {}
    summary = report["summary"]
    assert json.dumps(summary)  # the summary counts the faulty hosts as not audited, not blocked
