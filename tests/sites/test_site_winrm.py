"""Windows hosts through the broker: a site whose WS-Management endpoints (the lab's PowerShell
emulators) answer only that site's runner, audited by a runner that holds the WinRM password
in its own password file. The password travels nowhere: not in any command sent to Redis
(watched with MONITOR for the whole run), nor in a report, a log or any process's argv."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import LabInfo
from auditor_lab.spec import PROBE_URL

from tests.support.cli import BIN, environ
from tests.support.proc import command_lines

sites_lab = pytest.importorskip("auditor_lab.sites")
redis = pytest.importorskip("redis")

# NTLM with message encryption over HTTP 5985, and Basic over HTTPS 5986 (lab CA).
SITES = {"madrid": ("win-direct", "win-https")}
WAIT = 180.0


@pytest.fixture(scope="module")
def site_lab(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    built = sites_lab.sites_up(lab, tmp_path_factory.mktemp("winsites"), SITES, {"madrid": 1})
    try:
        yield built
    finally:
        sites_lab.sites_down(built)


class Monitor:
    """Every command Redis executes while the run lasts (MONITOR), kept as text."""

    def __init__(self, site_lab: Any) -> None:
        self.client = redis.Redis(
            host=sites_lab.BROKER_ADDRESS, port=6379, password=site_lab.password()
        )
        self.commands: list[str] = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        assert self.ready.wait(30), "MONITOR did not start"

    def _watch(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            for command in monitor.listen():
                self.commands.append(str(command.get("command", "")))
                if self.stop.is_set():
                    break

    def close(self) -> None:
        self.stop.set()
        # One more command wakes the listener so it sees `stop`.
        self.client.ping()
        self.thread.join(timeout=30)


def test_windows_hosts_of_a_site_are_audited_by_its_runner_with_its_own_winrm_password(
    lab: LabInfo, site_lab: Any, tmp_path: Path
) -> None:
    assert lab.winrm_password is not None
    password = lab.winrm_password.read_text().strip()
    log = site_lab.directory / "runner-madrid-1.log"
    runner = sites_lab.start_runner(
        site_lab, "madrid", 1, "madrid-1", "--password-file", str(lab.winrm_password)
    )
    try:
        deadline = time.monotonic() + WAIT
        while "runner madrid-1 of site madrid ready" not in (
            log.read_text(errors="replace") if log.exists() else ""
        ):
            assert runner.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "runner madrid-1 not ready"
            time.sleep(0.05)
        monitor = Monitor(site_lab)
        out = tmp_path / "out"
        # The coordinator is given the WinRM password on purpose: it must never travel.
        coordinator = subprocess.Popen(
            [
                str(BIN / "audit"),
                "-i",
                str(site_lab.inventory),
                "--broker",
                site_lab.broker_url,
                "--queue-timeout",
                "30",
                "--url",
                PROBE_URL,
                "-o",
                str(out),
                "--timeout",
                "60",
                "--probe-timeout",
                "10",
            ],
            env=environ(
                AUDITOR_BROKER_PASSWORD=site_lab.password(), AUDITOR_WINRM_PASSWORD=password
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        samples = 0
        while coordinator.poll() is None:
            for line in command_lines():
                assert password.encode() not in line
            samples += 1
            time.sleep(0.05)
        stdout, stderr = coordinator.communicate(timeout=WAIT)
        monitor.close()
    finally:
        os.killpg(runner.pid, signal.SIGTERM)
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=30)
    assert samples > 0
    assert "Traceback" not in stderr, stderr
    assert coordinator.returncode == 0, stderr

    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    hosts = {x["host"]["name"]: x for x in lines if x["type"] == "host"}
    assert sorted(hosts) == ["win-direct", "win-https"]
    for record in hosts.values():
        assert record["audited"], record
        assert record["runner"] == "madrid-1", record
        assert record["observations"][0]["outcome"] == "reachable", record
        assert record["host"]["connection"] == "winrm", record

    # The tasks went through Redis: their bodies (base64 in the message) are decoded...
    seen = "\n".join(monitor.commands)
    bodies = [base64.b64decode(b) for b in re.findall(r'body\\?": \\?"([A-Za-z0-9+/=]+)', seen)]
    assert {n for n in hosts if any(n.encode() in b for b in bodies)} == set(hosts)
    # ...and the password is in none of them, in no other command Redis ran, and in nothing
    # the run or the runner wrote.
    for text in (seen.encode(), *bodies):
        assert password.encode() not in text
    written = b"".join(p.read_bytes() for p in out.iterdir())
    for text in (written, stdout.encode(), stderr.encode(), log.read_bytes()):
        assert password.encode() not in text
