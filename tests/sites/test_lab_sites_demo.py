"""`auditor-lab up --sites`: the design fleet's Linux sites with their runners, audited through
the broker with the command the lab prints; every host gets its designed outcome from a
runner of its own site."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from auditor_lab import LabInfo
from auditor_lab.spec import PROBE_URL

from tests.support.cli import BIN, environ

sites_lab = pytest.importorskip("auditor_lab.sites")

WAIT = 300.0


def test_the_demo_sites_audit_the_whole_linux_fleet_from_inside_each_site(
    lab: LabInfo, tmp_path: Path
) -> None:
    site_lab, runners = sites_lab.demo_up(lab, tmp_path / "sites")
    try:
        deadline = time.monotonic() + WAIT
        for name in runners:
            log = site_lab.directory / f"runner-{name}.log"
            while "ready" not in (log.read_text(errors="replace") if log.exists() else ""):
                assert time.monotonic() < deadline, f"runner {name} not ready"
                time.sleep(0.05)
        out = tmp_path / "out"
        proc = subprocess.run(
            [
                str(BIN / "audit"),
                "-i",
                str(site_lab.inventory),
                "--broker",
                site_lab.broker_url,
                "--url",
                PROBE_URL,
                "--queue-timeout",
                "20",
                "-o",
                str(out),
                # Generous: the TLS-intercepting endpoint's handshake took over 4 s once
                # on a busy machine, and a timeout there is not what the test is about.
                "--probe-timeout",
                "12",
                "--probe-connect-timeout",
                "8",
                "--connect-timeout",
                "5",
            ],
            env=environ(AUDITOR_BROKER_PASSWORD=site_lab.password()),
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 1, proc.stderr
    finally:
        sites_lab.sites_down(site_lab)
    hosts = {
        line["host"]["name"]: line
        for line in map(json.loads, (out / "results.jsonl").read_text().splitlines())
        if line["type"] == "host"
    }
    layout = sites_lab.demo_layout(lab)
    assert sorted(hosts) == sorted(n for names in layout.values() for n in names)
    for site, names in layout.items():
        for name in names:
            record, spec = hosts[name], lab.host(name)
            assert record["runner"].startswith(site.replace("_", "-")), record
            if spec.audited:
                assert record["observations"][0]["outcome"] == str(spec.outcome), record
            else:
                assert record["host_outcome"] == str(spec.outcome), record
