"""Hosts the auditor cannot audit (network devices, containers) are skipped, not refused.

End to end with the installed commands: an inventory mixing local hosts with
`network_cli`, `docker` and an unknown connection plugin is audited; the skipped hosts
appear once in every report, count neither as blocked nor as not audited, and leave the
exit status alone.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import BIN, audit, environ
from tests.support.loopback import Loopback, loopback_servers

SKIPPED = {
    "switch1": "connection network_cli is not audited",
    "web-container": "connection community.docker.docker is not audited",
    "pager": "connection telnet is not audited",
}
# 192.0.2.0/24 is TEST-NET-1: nothing answers there, so a host handed to a transport by
# mistake would come back unreachable or error, never skipped.
INVENTORY = """\
[servers]
box1 ansible_connection=local
box2 ansible_connection=local

[network]
switch1 ansible_host=192.0.2.1 ansible_connection=network_cli ansible_network_os=ios

[containers]
web-container ansible_connection=community.docker.docker

[legacy]
pager ansible_host=192.0.2.2

[legacy:vars]
ansible_connection=telnet
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _env(lb: Loopback) -> dict[str, str]:
    env = {k: v for k, v in environ().items() if not k.lower().endswith("_proxy")}
    env["CURL_CA_BUNDLE"] = str(lb.ca_bundle)
    return env


def _html_data(text: str) -> dict[str, list[list[object]]]:
    match = re.search(
        r'<script type="application/json" id="audit-data">(.*?)</script>', text, re.DOTALL
    )
    assert match, "no embedded data table"
    data: dict[str, list[list[object]]] = json.loads(match.group(1))
    return data


def test_skipped_hosts_appear_once_in_every_report_and_keep_exit_0(
    tmp_path: Path, servers: Loopback
) -> None:
    inv = tmp_path / "fleet.ini"
    inv.write_text(INVENTORY)
    out = tmp_path / "out"
    ok = f"https://localhost:{servers.https_port}/status"
    proc = audit("-i", str(inv), "--url", ok, "-o", str(out), env=_env(servers))
    # Only reachable and skipped hosts: the skipped ones change nothing.
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    # The unknown plugin (set in [legacy:vars] on line 15) is a warning naming it.
    assert f"{inv}:15: host 'pager': unknown connection plugin 'telnet'" in proc.stderr
    assert "network_cli" not in proc.stderr.split("Skipped")[0]  # known plugins: no warning
    summary = proc.stderr.split("Skipped (3;")[1]
    for name, detail in SKIPPED.items():
        assert f"{name}: {detail}" in summary
    assert "3 skipped" in proc.stderr and "0 not audited" in proc.stderr

    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    hosts = [x for x in lines if x["type"] == "host"]
    assert sorted(h["host"]["name"] for h in hosts) == sorted(["box1", "box2", *SKIPPED])
    for h in hosts:
        if h["host"]["name"] in SKIPPED:
            assert h["host_outcome"] == "skipped"
            assert h["detail"] == SKIPPED[h["host"]["name"]]
            assert h["host"]["connection"] == "none"
            assert h["duration"] == 0  # never handed to a transport

    report = json.loads((out / "report.json").read_text())
    names = [h["host"]["name"] for h in report["hosts"]]
    assert sorted(names) == sorted(["box1", "box2", *SKIPPED])  # each exactly once
    summary_json = report["summary"]
    assert summary_json["skipped"] == 3
    assert summary_json["not_audited"] == 0
    assert summary_json["blocked_hosts"] == 0
    assert summary_json["host_outcomes"]["skipped"] == 3
    assert summary_json["exit_status"] == 0
    assert summary_json["targets"][0]["readiness"] == 100.0
    assert summary_json["targets"][0]["not_audited"] == 0

    rows = list(csv.DictReader((out / "report.csv").open(newline="")))
    skipped_rows = [r for r in rows if r["host_outcome"] == "skipped"]
    assert sorted(r["host"] for r in skipped_rows) == sorted(SKIPPED)
    assert all(r["outcome"] == "" and r["audited"] == "false" for r in skipped_rows)

    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.get("failures") == "0" and junit.get("skipped") == "3"
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    assert len(list(junit.iter("testcase"))) == 5
    for name, detail in SKIPPED.items():
        skipped = cases[name].find("skipped")
        assert skipped is not None and skipped.get("message") == detail
        assert cases[name].find("failure") is None

    data = _html_data((out / "report.html").read_text())
    unaudited = [row[0] for row in data["u"]]
    assert sorted(unaudited) == sorted(SKIPPED)
    assert sorted(str(row[0]) for row in data["a"]) == ["box1", "box2"]


def test_a_blocked_run_with_skipped_hosts_still_says_blocked(
    tmp_path: Path, servers: Loopback
) -> None:
    inv = tmp_path / "fleet.ini"
    inv.write_text(INVENTORY)
    bad = f"http://127.0.0.1:{servers.closed_port}/"
    proc = audit("-i", str(inv), "--url", bad, "-o", str(tmp_path / "o"), "-q", env=_env(servers))
    assert proc.returncode == 1, proc.stderr


def test_inventory_list_and_graph_show_skipped_hosts(tmp_path: Path) -> None:
    inv = tmp_path / "fleet.ini"
    inv.write_text(INVENTORY)
    listed = subprocess.run(
        [str(BIN / "auditor"), "inventory", "-i", str(inv), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["network"]["hosts"] == ["switch1"]
    assert data["_meta"]["hostvars"]["switch1"]["ansible_connection"] == "network_cli"
    assert listed.stderr.count("unknown connection plugin 'telnet'") == 1
    graph = subprocess.run(
        [str(BIN / "auditor"), "inventory", "-i", str(inv), "--graph"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert graph.returncode == 0, graph.stderr
    assert "  |  |--switch1" in graph.stdout


def test_limit_to_audited_hosts_drops_the_warning(tmp_path: Path) -> None:
    inv = tmp_path / "fleet.ini"
    inv.write_text(INVENTORY)
    listed = subprocess.run(
        [str(BIN / "auditor"), "inventory", "-i", str(inv), "--limit", "servers"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
