"""The `audit` command end to end on this machine (local transport), as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support.cli import BIN, audit
from tests.support.loopback import Loopback, loopback_servers


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _env(lb: Loopback) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["CURL_CA_BUNDLE"] = str(lb.ca_bundle)
    return env


def _inventory(tmp: Path, text: str) -> Path:
    path = tmp / "inv.ini"
    path.write_text(text)
    return path


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_a_local_audit_writes_every_report(tmp_path: Path, servers: Loopback) -> None:
    inv = _inventory(
        tmp_path, "[here]\nbox1 ansible_connection=local\nbox2 ansible_connection=local\n"
    )
    out = tmp_path / "out"
    ok = f"https://localhost:{servers.https_port}/status"
    bad = f"http://127.0.0.1:{servers.closed_port}/"
    proc = audit(
        "--inventory", str(inv), "--url", ok, "--url", bad, "--out", str(out), env=_env(servers)
    )
    assert proc.returncode == 1, proc.stderr  # one URL is blocked
    assert "Traceback" not in proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["junit.xml", "report.csv", "report.html", "report.json", "results.jsonl"]
    for p in out.iterdir():
        assert p.stat().st_mode & 0o077 == 0, p  # owner-only by default

    rows = list(csv.DictReader((out / "report.csv").open(newline="")))
    assert [(r["host"], r["url"], r["outcome"]) for r in rows] == [
        ("box1", ok, "reachable"),
        ("box1", bad, "refused"),
        ("box2", ok, "reachable"),
        ("box2", bad, "refused"),
    ]
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1
    assert len(report["hosts"]) == 2
    parser = _Tags()
    parser.feed((out / "report.html").read_text())
    assert "table" in parser.tags
    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.iter("failure") is not None


def test_all_reachable_exits_0_and_unaudited_hosts_exit_3(
    tmp_path: Path, servers: Loopback
) -> None:
    ok = f"https://localhost:{servers.https_port}/status"
    inv = _inventory(tmp_path, "box ansible_connection=local\n")
    proc = audit("-i", str(inv), "--url", ok, "-o", str(tmp_path / "a"), "-q", env=_env(servers))
    assert proc.returncode == 0, proc.stderr
    # An SSH host on a closed loopback port cannot be audited: exit 3, never "blocked".
    inv2 = tmp_path / "inv2.ini"
    inv2.write_text(
        f"box ansible_connection=local\nghost ansible_host=127.0.0.1 ansible_port={servers.closed_port}\n"
    )
    proc = audit(
        "-i",
        str(inv2),
        "--url",
        ok,
        "-o",
        str(tmp_path / "b"),
        "--connect-timeout",
        "2",
        env=_env(servers),
    )
    assert proc.returncode == 3, proc.stderr
    rows = list(csv.DictReader((tmp_path / "b" / "report.csv").open(newline="")))
    ghost = [r for r in rows if r["host"] == "ghost"]
    assert (
        len(ghost) == 1 and ghost[0]["host_outcome"] == "unreachable" and ghost[0]["outcome"] == ""
    )


@pytest.mark.parametrize(
    ("inventory", "args", "expect"),
    [
        ("[web\nhost1\n", (), "inv.ini:1:"),
        ("[g:bogus]\nx=1\n", (), "inv.ini:1:"),
        ("h[1:x] ansible_connection=local\n", (), "inv.ini:1:"),
        ("h1 ansible_connection=local\n", ("--url", "https://bad host/"), "bad URL"),
        ("h1 ansible_connection=local\n", ("--url", "ftp://x.example/"), "bad URL"),
        ("h1 ansible_connection=local\n", ("--limit", "nomatch"), "matched no hosts"),
        ("h1 ansible_connection=local\n", ("--platform", "ZZ9"), "unknown platform"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, inventory: str, args: tuple[str, ...], expect: str
) -> None:
    inv = _inventory(tmp_path, inventory)
    proc = audit("-i", str(inv), "-o", str(tmp_path / "out"), *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_missing_inventory_file_is_exit_2(tmp_path: Path) -> None:
    proc = audit("-i", str(tmp_path / "nope.ini"))
    assert proc.returncode == 2
    assert "nope.ini" in proc.stderr and "Traceback" not in proc.stderr


def test_an_existing_report_directory_needs_force(tmp_path: Path, servers: Loopback) -> None:
    inv = _inventory(tmp_path, "box ansible_connection=local\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    url = f"https://localhost:{servers.https_port}/status"
    proc = audit("-i", str(inv), "--url", url, "-o", str(out), env=_env(servers))
    assert proc.returncode == 2 and "--force" in proc.stderr
    proc = audit("-i", str(inv), "--url", url, "-o", str(out), "--force", "-q", env=_env(servers))
    assert proc.returncode == 0, proc.stderr


def _host_records(results: Path) -> int:
    try:
        text = results.read_text()
    except FileNotFoundError:
        return 0
    # Only whole (newline-terminated) records count; the last may be half written.
    return sum(1 for line in text.split("\n")[:-1] if json.loads(line).get("type") == "host")


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_a_run_writes_reports_and_marks_the_rest_not_audited(
    tmp_path: Path, servers: Loopback, sig: signal.Signals, status: int
) -> None:
    inv = _inventory(tmp_path, "[many]\nbox[1:6] ansible_connection=local\n")
    out = tmp_path / "out"
    slow = f"https://127.0.0.1:{servers.silent_port}/"
    proc = subprocess.Popen(
        [
            str(BIN / "audit"),
            "-i",
            str(inv),
            "--url",
            slow,
            "-o",
            str(out),
            "--forks",
            "2",
            "--probe-timeout",
            "3",
        ],
        env=_env(servers),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once the first two hosts have finished (two more are then in flight): wait
    # on their records in the results stream, not on the clock, so a busy machine is fine.
    deadline = time.monotonic() + 120
    while _host_records(out / "results.jsonl") < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first two hosts never finished"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    rows = list(csv.DictReader((out / "report.csv").open(newline="")))
    assert sorted(r["host"] for r in rows) == [f"box{i}" for i in range(1, 7)]
    outcomes = {r["host"]: (r["host_outcome"] or r["outcome"]) for r in rows}
    assert list(outcomes.values()).count("timeout") >= 2
    assert "not_audited" in outcomes.values()
    summary = json.loads((out / "report.json").read_text())
    assert summary["run"]["interrupted"] is True


def test_report_and_merge_rerender_from_results(tmp_path: Path, servers: Loopback) -> None:
    inv = _inventory(tmp_path, "[g]\nbox[1:12] ansible_connection=local\n")
    url = f"https://localhost:{servers.https_port}/status"
    outs = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}"
        proc = audit(
            "-i",
            str(inv),
            "--url",
            url,
            "-o",
            str(out),
            "--shard",
            f"{k}/2",
            "-q",
            "--runner",
            f"r{k}",
            env=_env(servers),
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(out / "results.jsonl")
    merged = tmp_path / "merged"
    proc = subprocess.run(
        [str(BIN / "auditor"), "merge", *map(str, outs), "-o", str(merged)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((merged / "report.csv").open(newline="")))
    assert sorted(r["host"] for r in rows) == sorted(f"box{i}" for i in range(1, 13))
    assert {r["runner"] for r in rows} == {"r1", "r2"}


def test_a_password_file_must_be_owner_only_and_never_reaches_any_output(
    tmp_path: Path, servers: Loopback
) -> None:
    secret = "pw-Zq81-never-print-me"
    pw = tmp_path / "password"
    pw.write_text(secret + "\n")
    pw.chmod(0o644)
    inv = _inventory(tmp_path, "box ansible_connection=local\n")
    url = f"https://localhost:{servers.https_port}/status"
    proc = audit(
        "-i",
        str(inv),
        "--url",
        url,
        "-o",
        str(tmp_path / "a"),
        "--password-file",
        str(pw),
        env=_env(servers),
    )
    assert proc.returncode == 2 and "readable by group or others" in proc.stderr
    assert not (tmp_path / "a").exists()
    pw.chmod(0o600)
    out = tmp_path / "b"
    proc = audit(
        "-i", str(inv), "--url", url, "-o", str(out), "--password-file", str(pw), env=_env(servers)
    )
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    for path in out.iterdir():
        assert secret not in path.read_text(), path
