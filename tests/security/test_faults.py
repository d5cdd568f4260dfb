"""Faults on the remote side: every host is accounted for, at the right level, in bounded
time and memory. The hosts are real OpenSSH servers on loopback whose sessions misbehave."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sshd import LoopbackSSHD, loopback_sshd, sshd_available

BIN = Path(sys.executable).parent
URL = "http://127.0.0.1:9/status"  # a closed loopback port: a fast, local verdict

pytestmark = pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH sshd")


def run_audit(
    inventory: Path, known: Path, out: Path, *args: str
) -> tuple[int, dict[str, Any], str, float, int]:
    """Run `audit`; returns status, hosts by name, stderr, wall seconds, peak RSS in KiB."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [
            str(BIN / "audit"),
            "-i",
            str(inventory),
            "--known-hosts",
            str(known),
            "--url",
            URL,
            "-o",
            str(out),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err_chunks: list[str] = []
    reader = threading.Thread(
        target=lambda: err_chunks.append(proc.stderr.read() if proc.stderr else "")
    )
    reader.start()
    # ru_maxrss would be useless here: Linux carries the parent's high-water mark (pytest's,
    # hundreds of MB late in a run) into the child across fork and exec. VmHWM is per process
    # image, so sample it until the audit exits.
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass
            sampling.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        _, status, _usage = os.wait4(proc.pid, 0)
    finally:
        sampling.set()
        sampler.join()
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    report = json.loads((out / "report.json").read_text())
    return (
        proc.returncode,
        {h["host"]["name"]: h for h in report["hosts"]},
        "".join(err_chunks),
        wall,
        peak[0],
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP and never sends an SSH banner."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def _inventory(tmp: Path, *lines: str) -> Path:
    path = tmp / "faults.ini"
    path.write_text("[faulty]\n" + "\n".join(lines) + "\n")
    return path


def _known(tmp: Path, *servers: LoopbackSSHD) -> Path:
    path = tmp / "known_hosts"
    path.write_text("".join(s.known_hosts.read_text() for s in servers))
    return path


def test_a_host_that_never_sends_a_banner_is_a_session_timeout(
    tmp_path: Path, silent_port: int
) -> None:
    inv = _inventory(tmp_path, f"mute ansible_host=127.0.0.1 ansible_port={silent_port}")
    (tmp_path / "kh").write_text("")
    status, hosts, err, wall, _ = run_audit(
        inv, tmp_path / "kh", tmp_path / "o", "--connect-timeout", "2", "--timeout", "4"
    )
    assert status == 3, err
    assert hosts["mute"]["host_outcome"] == "session_timeout"
    assert wall < 15


def test_a_command_that_never_returns_is_a_session_timeout(tmp_path: Path) -> None:
    with loopback_sshd(tmp_path / "s", "ForceCommand sleep 600\n") as server:
        inv = _inventory(tmp_path, server.inventory_line("hang"))
        status, hosts, err, wall, _ = run_audit(
            inv, _known(tmp_path, server), tmp_path / "o", "--timeout", "4"
        )
    assert status == 3, err
    assert hosts["hang"]["host_outcome"] == "session_timeout"
    assert "deadline" in hosts["hang"]["detail"]
    assert wall < 20


def test_a_host_that_prints_100_mb_cannot_exhaust_memory(tmp_path: Path) -> None:
    flood = "ForceCommand head -c 100000000 /dev/zero | tr '\\\\0' A\n"
    with loopback_sshd(tmp_path / "s", flood) as server:
        inv = _inventory(tmp_path, server.inventory_line("flood"))
        status, hosts, err, _, rss_kib = run_audit(
            inv, _known(tmp_path, server), tmp_path / "o", "--timeout", "60"
        )
    assert status == 3, err
    assert hosts["flood"]["host_outcome"] == "error"
    print(f"peak RSS of the audit: {rss_kib} KiB")
    assert 0 < rss_kib < 150 * 1024, f"peak RSS {rss_kib} KiB"


def test_a_channel_closed_mid_record_marks_the_target_not_the_fleet(tmp_path: Path) -> None:
    # The real probe runs, but its output is cut inside the target's record (kind T): the
    # records before it arrive whole, that one does not. (A cut at a fixed byte count
    # stopped falling inside it when the probe's records grew shorter.)
    cut_script = tmp_path / "cut.awk"
    cut_script.write_text(
        '$0 ~ /^AUD1 [^\\t]*\\tT\\t/ { printf "%s", substr($0, 1, 20); exit }\n'
        "{ print; fflush() }\n"
    )
    cut = f"ForceCommand /bin/sh -c '/bin/sh -s | awk -f {cut_script}'\n"
    with loopback_sshd(tmp_path / "s", cut) as server:
        inv = _inventory(tmp_path, server.inventory_line("cut"))
        status, hosts, err, _, _ = run_audit(inv, _known(tmp_path, server), tmp_path / "o")
    assert status == 1, err
    host = hosts["cut"]
    assert host["audited"] is True
    (obs,) = host["observations"]
    assert obs["outcome"] == "error"
    assert "probe output ended before this target's record" in obs["detail"]


def test_sshd_killed_mid_run_is_an_error_and_the_others_finish(tmp_path: Path) -> None:
    # The session announces itself, then stalls: sshd is killed only once the host's session
    # really is under way (a fixed delay raced the auditor's start on a busy machine).
    started = tmp_path / "session-started"
    slow = f"ForceCommand /bin/sh -c ': > {started}; sleep 30; exec /bin/sh -s'\n"
    with loopback_sshd(tmp_path / "a", slow) as doomed, loopback_sshd(tmp_path / "b") as fine:
        inv = _inventory(tmp_path, doomed.inventory_line("doomed"), fine.inventory_line("fine"))
        stop = threading.Event()

        def kill_once_started() -> None:
            while not stop.wait(0.05):
                if started.exists():
                    doomed.kill_tree()
                    return

        killer = threading.Thread(target=kill_once_started, daemon=True)
        killer.start()
        try:
            status, hosts, err, wall, _ = run_audit(
                inv, _known(tmp_path, doomed, fine), tmp_path / "o", "--timeout", "20"
            )
        finally:
            stop.set()
            killer.join()
    assert started.exists(), "the doomed host's session never started"
    assert status == 1, err  # `fine` audited: its one URL is refused
    assert hosts["doomed"]["audited"] is False
    assert hosts["doomed"]["host_outcome"] == "error"
    assert "connection lost" in hosts["doomed"]["detail"]
    assert hosts["fine"]["observations"][0]["outcome"] == "refused"
    assert wall < 15


def test_retries_apply_to_connection_failures_only(tmp_path: Path) -> None:
    with loopback_sshd(tmp_path / "s") as server:
        (server.directory / "authorized_keys").write_text("")  # nobody is authorised
        inv = _inventory(
            tmp_path,
            server.inventory_line("noauth"),
            "closed ansible_host=127.0.0.1 ansible_port=9",
        )
        status, hosts, err, _, _ = run_audit(
            inv, _known(tmp_path, server), tmp_path / "o", "--retries", "2"
        )
    assert status == 3, err
    assert hosts["noauth"]["host_outcome"] == "auth_failed"
    assert "attempts" not in hosts["noauth"]["detail"]
    assert hosts["closed"]["host_outcome"] == "unreachable"
    assert "after 3 attempts" in hosts["closed"]["detail"]
