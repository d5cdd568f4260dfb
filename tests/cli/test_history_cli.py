"""The run history, the diff and the readiness gate through the installed commands, with
real `audit` processes on this machine (local transport) and real loopback servers."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import BIN, audit, environ
from tests.support.loopback import Loopback, crowd_server, loopback_servers

DEADLINE = 120.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _env(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    env = environ(XDG_DATA_HOME=str(tmp_path / "data"), **changes)
    return {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}


def auditor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "auditor"), *args], capture_output=True, text=True, timeout=DEADLINE, env=env
    )


def _inventory(tmp_path: Path, hosts: int, name: str = "inv.ini") -> Path:
    path = tmp_path / name
    path.write_text(f"[g]\nbox[1:{hosts}] ansible_connection=local\n")
    return path


def _rows(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def _wait_for(what: str, check: Any, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def http_server() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_every_run_is_recorded_by_default_in_the_data_directory_owner_only(
    tmp_path: Path, servers: Loopback
) -> None:
    inv = _inventory(tmp_path, 3)
    url = f"http://127.0.0.1:{servers.http_port}/"
    secret = "history-must-never-hold-this-9f3k"
    env = _env(tmp_path, AUDITOR_SSH_PASSWORD=secret, AUDITOR_WINRM_PASSWORD=secret)
    proc = audit(
        "-i", str(inv), "--url", url, "-o", str(tmp_path / "out"), "--runner", "r-1",
        "--fail-on", "tls_failure", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "data" / "fleet-auditor" / "history.sqlite"
    ((info,),) = _rows(db, "SELECT info FROM runs")
    meta = json.loads(info)
    assert [t["url"] for t in meta["targets"]] == [url]
    assert meta["runners"] == ["r-1"] and meta["tool_version"] and meta["finished"]
    assert meta["options"]["fail_on"] == "tls_failure" and meta["options"]["inventory"] == str(inv)
    for path in db.parent.iterdir():
        assert secret.encode() not in path.read_bytes(), path
    assert db.stat().st_mode & 0o777 == 0o600
    ((run_id, state, inventory, sha, hosts),) = _rows(
        db, "SELECT run_id, state, inventory_key, inventory_sha256, hosts FROM runs"
    )
    import hashlib

    assert (state, inventory, hosts) == ("finished", str(inv), 3)
    assert sha == hashlib.sha256(inv.read_bytes()).hexdigest()
    assert f"run {run_id} recorded in {db}" in proc.stderr
    assert sorted(r[0] for r in _rows(db, "SELECT host FROM results")) == ["box1", "box2", "box3"]


def test_no_history_records_nothing(tmp_path: Path, servers: Loopback) -> None:
    inv = _inventory(tmp_path, 1)
    url = f"http://127.0.0.1:{servers.http_port}/"
    out = tmp_path / "out"
    proc = audit("-i", str(inv), "--url", url, "-o", str(out), "--no-history", env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "data").exists()
    assert (out / "report.json").exists()


def test_two_audits_started_at_once_are_both_recorded_completely(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    # Each request is held until 8 are open at once: 4 from each audit, so the two runs
    # are provably probing (and recording) at the same time; a straggler waits 3 s at most.
    with crowd_server(release_at=8, hold=3) as crowd:
        url = f"http://127.0.0.1:{crowd.port}/"
        procs = [
            subprocess.Popen(
                [
                    str(BIN / "audit"),
                    "-i",
                    str(_inventory(tmp_path, 12, f"inv{k}.ini")),
                    "--url",
                    url,
                    "-o",
                    str(tmp_path / f"out{k}"),
                    "--history",
                    str(db),
                    "--forks",
                    "4",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(tmp_path),
            )
            for k in (1, 2)
        ]
        outputs = [p.communicate(timeout=DEADLINE) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert crowd.peak[0] >= 8
    runs = _rows(db, "SELECT run_id, state, hosts FROM runs ORDER BY inventory_key")
    assert [(state, hosts) for _, state, hosts in runs] == [("finished", 12), ("finished", 12)]
    for run_id, _, _ in runs:
        assert _rows(db, "SELECT count(*) FROM results WHERE run_id = ?", run_id) == [(12,)]


def test_an_interrupted_run_is_recorded_as_interrupted_with_what_finished(
    tmp_path: Path, servers: Loopback
) -> None:
    db = tmp_path / "h.sqlite"
    inv = _inventory(tmp_path, 6)
    proc = subprocess.Popen(
        [
            str(BIN / "audit"),
            "-i",
            str(inv),
            "--url",
            f"https://127.0.0.1:{servers.silent_port}/",
            "-o",
            str(tmp_path / "out"),
            "--forks",
            "2",
            "--probe-timeout",
            "2",
            "--history",
            str(db),
        ],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(
            "two hosts recorded",
            lambda: db.exists() and _count(db) >= 2,
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    ((state, hosts),) = _rows(db, "SELECT state, hosts FROM runs")
    assert (state, hosts) == ("interrupted", 6)
    outcomes = [json.loads(r[0]) for r in _rows(db, "SELECT record FROM results ORDER BY position")]
    assert len(outcomes) == 6
    finished = [o for o in outcomes if o["audited"]]
    assert len(finished) >= 2
    assert all(o["observations"][0]["outcome"] == "timeout" for o in finished)
    assert {o["host_outcome"] for o in outcomes if not o["audited"]} == {"not_audited"}


def _count(db: Path) -> int:
    try:
        return int(_rows(db, "SELECT count(*) FROM results")[0][0])
    except sqlite3.Error:
        return 0


def _holding(db: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_locked_history_stops_the_run_before_any_host_or_report(
    tmp_path: Path, servers: Loopback
) -> None:
    db = tmp_path / "h.sqlite"
    inv = _inventory(tmp_path, 1)
    args = ["-i", str(inv), "--url", f"http://127.0.0.1:{servers.http_port}/"]
    assert audit(*args, "-o", str(tmp_path / "first"), "--history", str(db)).returncode == 0
    holder = _holding(db)
    try:
        out = tmp_path / "out"
        proc = audit(
            *args, "-o", str(out), "--history", str(db), "--history-timeout", "0.5",
            env=_env(tmp_path),
        )  # fmt: skip
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {db}: history: database is locked (another process held it past the busy timeout)"
    ]
    assert not out.exists()


@pytest.mark.parametrize("kind", ["corrupt", "newer"])
def test_a_corrupt_or_newer_history_is_one_line_and_exit_2(
    tmp_path: Path, servers: Loopback, kind: str
) -> None:
    db = tmp_path / "h.sqlite"
    inv = _inventory(tmp_path, 1)
    args = ["-i", str(inv), "--url", f"http://127.0.0.1:{servers.http_port}/"]
    if kind == "corrupt":
        db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
        db.chmod(0o600)
        expected = "(corrupt, or not a history file)"
    else:
        assert audit(*args, "-o", str(tmp_path / "first"), "--history", str(db)).returncode == 0
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA user_version = 99")
        expected = "schema version 99 is newer than this tool's (1)"
    out = tmp_path / "out"
    proc = audit(*args, "-o", str(out), "--history", str(db), env=_env(tmp_path))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {db}: history: ") and expected in line, line
    assert not out.exists()


class _Gated(BaseHTTPRequestHandler):
    """Tells the test a request arrived, then answers once the test says so."""

    arrived = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:
        type(self).arrived.set()
        type(self).release.wait(DEADLINE)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_history_locked_mid_run_loses_no_report_and_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    inv = _inventory(tmp_path, 1)
    out = tmp_path / "out"
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Gated)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    holder = None
    try:
        proc = subprocess.Popen(
            [
                str(BIN / "audit"),
                "-i",
                str(inv),
                "--url",
                f"http://127.0.0.1:{srv.server_address[1]}/",
                "-o",
                str(out),
                "--history",
                str(db),
                "--history-timeout",
                "0.5",
            ],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert _Gated.arrived.wait(DEADLINE)
        holder = _holding(db)  # the run has started; its host's result cannot be written
        _Gated.release.set()
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        _Gated.release.set()
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        srv.shutdown()
        srv.server_close()
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1] == (
        f"error: {db}: history: database is locked (another process held it past the busy timeout)"
    )
    report = json.loads((out / "report.json").read_text())
    assert [h["host"]["name"] for h in report["hosts"]] == ["box1"]
    assert report["hosts"][0]["observations"][0]["outcome"] == "reachable"


def test_runs_report_and_diff_from_the_history(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    inv = _inventory(tmp_path, 3)
    env = _env(tmp_path)
    with http_server() as port:
        url = f"http://127.0.0.1:{port}/"
        first = audit(
            "-i", str(inv), "--url", url, "-o", str(tmp_path / "one"), "--history", str(db), env=env
        )
        assert first.returncode == 0, first.stderr
    # The server is gone: the same URL is now refused from every host.
    second = audit(
        "-i", str(inv), "--url", url, "-o", str(tmp_path / "two"), "--history", str(db), env=env
    )
    assert second.returncode == 1, second.stderr

    listed = auditor("runs", "--history", str(db), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)["runs"]
    assert [r["hosts"] for r in runs] == [3, 3]
    new_id, old_id = runs[0]["run_id"], runs[1]["run_id"]
    assert runs[0]["started"] >= runs[1]["started"]
    assert [u["reachable"] for r in runs for u in r["readiness"]] == [0, 3]
    assert runs[0]["inventory"] == str(inv) and runs[0]["audited"] == 3
    only = auditor(
        "runs", "--history", str(db), "--json", "--inventory", str(tmp_path / "x.ini"), env=env
    )
    assert json.loads(only.stdout) == {"runs": []}
    text = auditor("runs", "--history", str(db), env=env)
    assert text.returncode == 0 and new_id in text.stdout.splitlines()[0]

    # Every report of the first run again, from the history alone: byte for byte.
    again = tmp_path / "again"
    rendered = auditor("report", old_id, "--out", str(again), "--history", str(db), env=env)
    assert rendered.returncode == 0, rendered.stderr
    for name in ("report.csv", "report.json", "junit.xml", "report.html"):
        assert (again / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    by_prefix = auditor(
        "report", new_id[:6], "--out", str(tmp_path / "p"), "--history", str(db), env=env
    )
    assert by_prefix.returncode == 1, by_prefix.stderr

    diff = auditor("diff", "--history", str(db), "--json", env=env)
    assert diff.returncode == 1, diff.stderr
    found = json.loads(diff.stdout)
    assert found["old"] == {"run_id": old_id} and found["new"] == {"run_id": new_id}
    assert found["changes"] == [
        {
            "host": f"box{i}",
            "url": url,
            "before": "reachable",
            "after": "refused",
            "change": "regression",
        }
        for i in (1, 2, 3)
    ]
    backwards = auditor("diff", new_id, old_id, "--history", str(db), env=env)
    assert backwards.returncode == 0, backwards.stderr
    assert backwards.stdout.splitlines()[:3] == [
        f"changes from {new_id} to {old_id}:",
        "",
        "fix (3)",
    ]
    same = auditor("diff", old_id, old_id, "--history", str(db), "--json", env=env)
    assert same.returncode == 0 and json.loads(same.stdout)["changes"] == []


def test_a_recorded_runs_report_shows_what_changed_its_trend_and_its_gate(tmp_path: Path) -> None:
    """The history reaches report.html: the second run's page names the hosts that regressed
    since the first and draws each URL's trend over both runs; a gate states its line."""
    db = tmp_path / "h.sqlite"
    inv = _inventory(tmp_path, 3)
    env = _env(tmp_path)
    with http_server() as port:
        url = f"http://127.0.0.1:{port}/"
        first = audit(
            "-i", str(inv), "--url", url, "-o", str(tmp_path / "one"), "--history", str(db), env=env
        )
        assert first.returncode == 0, first.stderr
    first_html = (tmp_path / "one" / "report.html").read_text()
    assert 'id="changes"' not in first_html  # nothing to compare with yet
    second = audit(
        "-i",
        str(inv),
        "--url",
        url,
        "-o",
        str(tmp_path / "two"),
        "--history",
        str(db),
        "--fail-under",
        "50",
        env=env,
    )
    assert second.returncode == 1, second.stderr
    html = (tmp_path / "two" / "report.html").read_text()
    changes = html[
        html.index('<section id="changes">') : html.index(
            "</section>", html.index('<section id="changes">')
        )
    ]
    assert "3</b> regression" in changes, changes
    for host in ("box1", "box2", "box3"):
        assert f"<tr><td>{host}</td>" in changes
    assert changes.count("<td>reachable</td><td>refused</td>") == 3
    trends = html[html.index('<section id="trends">') :]
    assert '<svg class="trend"' in trends
    assert "over 2 runs" in trends
    assert 'id="gate"' in html and "gate 50 %: FAILED" in html

    # Re-rendered from the history, the page carries the same changes and trend.
    listed = json.loads(auditor("runs", "--history", str(db), "--json", env=env).stdout)
    again = tmp_path / "again"
    rendered = auditor(
        "report", listed["runs"][0]["run_id"], "--out", str(again), "--history", str(db), env=env
    )
    assert rendered.returncode == 1, rendered.stderr
    rerendered = (again / "report.html").read_text()
    assert rerendered.count("<td>reachable</td><td>refused</td>") == 3
    assert '<svg class="trend"' in rerendered


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("diff", "nothex!"), "'nothex!' is not a run id"),
        (("diff", "abcdef"), "no run abcdef"),
        (("report", "abcdef", "--out", "OUT"), "no run abcdef"),
        (("runs",), "no such history file"),
    ],
)
def test_bad_history_commands_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    db = tmp_path / "h.sqlite"
    if args[0] != "runs":
        from auditor.history import History

        History.open(db).close()
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    proc = auditor(*argv, "--history", str(db), env=_env(tmp_path))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "out").exists()


def test_the_read_commands_refuse_a_link_in_place_of_the_history(tmp_path: Path) -> None:
    from auditor.history import History

    History.open(tmp_path / "real.sqlite").close()
    link = tmp_path / "h.sqlite"
    link.symlink_to(tmp_path / "real.sqlite")
    for args in (("runs",), ("diff",), ("report", "abcdef", "--out", str(tmp_path / "o"))):
        proc = auditor(*args, "--history", str(link), env=_env(tmp_path))
        assert proc.returncode == 2
        assert proc.stderr.strip() == (
            f"error: {link}: history: is a symbolic link; refusing to follow it"
        ), args


def test_diff_needs_two_runs_of_one_inventory(tmp_path: Path, servers: Loopback) -> None:
    db = tmp_path / "h.sqlite"
    inv = _inventory(tmp_path, 1)
    url = f"http://127.0.0.1:{servers.http_port}/"
    assert (
        audit(
            "-i", str(inv), "--url", url, "-o", str(tmp_path / "o"), "--history", str(db)
        ).returncode
        == 0
    )
    proc = auditor("diff", "--history", str(db), env=_env(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {db}: history: only one recorded run of {inv}"


def test_keep_applies_retention_after_the_run(tmp_path: Path, servers: Loopback) -> None:
    db = tmp_path / "h.sqlite"
    url = f"http://127.0.0.1:{servers.http_port}/"
    a, b = _inventory(tmp_path, 1, "a.ini"), _inventory(tmp_path, 1, "b.ini")
    ids = []
    for k, inv in enumerate((a, a, b, a)):
        proc = audit(
            "-i",
            str(inv),
            "--url",
            url,
            "-o",
            str(tmp_path / f"o{k}"),
            "--history",
            str(db),
            "--keep",
            "2",
        )
        assert proc.returncode == 0, proc.stderr
        ids.append(proc.stderr.split("run ")[-1].split()[0])
    kept = {r[0] for r in _rows(db, "SELECT run_id FROM runs")}
    assert kept == {ids[1], ids[2], ids[3]}
    assert {r[0] for r in _rows(db, "SELECT DISTINCT run_id FROM results")} == kept


@pytest.mark.parametrize(
    ("gate", "status", "line"),
    [
        (("--fail-under", "50"), 1, "gate 50 %: FAILED — "),
        (("--fail-under", "100"), 1, "gate 100 %: FAILED — "),
        (("--fail-under", "0"), 0, "gate 0 %: passed"),
        (("--fail-on", "refused"), 1, "fail-on refused: FAILED — seen 2 times"),
        (("--fail-on", "tls_failure"), 0, "fail-on tls_failure: passed — not seen"),
        (("--fail-on", "timeout", "--fail-on", "refused"), 1, "fail-on timeout: passed"),
        ((), 1, None),
    ],
)
def test_the_gate_decides_the_exit_status_of_audit_and_report(
    tmp_path: Path, servers: Loopback, gate: tuple[str, ...], status: int, line: str | None
) -> None:
    # Two hosts: one URL reachable from both, one refused from both (an exit status 1
    # run without a gate).
    inv = _inventory(tmp_path, 2)
    ok = f"http://127.0.0.1:{servers.http_port}/"
    bad = f"http://127.0.0.1:{servers.closed_port}/"
    db = tmp_path / "h.sqlite"
    out = tmp_path / "out"
    env = _env(tmp_path)
    proc = audit(
        "-i",
        str(inv),
        "--url",
        ok,
        "--url",
        bad,
        "-o",
        str(out),
        "--history",
        str(db),
        *gate,
        env=env,
    )
    assert proc.returncode == status, proc.stderr
    gate_lines = [x for x in proc.stderr.splitlines() if x.startswith(("gate ", "fail-on "))]
    if line is None:
        assert gate_lines == []
    else:
        (shown,) = gate_lines
        assert line in shown
    run_id = proc.stderr.split("run ")[-1].split()[0]
    again = auditor(
        "report", run_id, "--out", str(tmp_path / "again"), "--history", str(db), *gate, env=env
    )
    assert again.returncode == status, again.stderr
    from_file = auditor(
        "report", str(out / "results.jsonl"), "--out", str(tmp_path / "file"), *gate, env=env
    )
    assert from_file.returncode == status, from_file.stderr


def test_hosts_not_audited_fail_the_gate(tmp_path: Path, servers: Loopback) -> None:
    inv = tmp_path / "inv.ini"
    # One host is audited and reaches the URL; the other cannot be connected to at all.
    inv.write_text(
        "box1 ansible_connection=local\n"
        f"gone ansible_host=127.0.0.1 ansible_port={servers.closed_port}\n"
    )
    url = f"http://127.0.0.1:{servers.http_port}/"
    proc = audit(
        "-i", str(inv), "--url", url, "-o", str(tmp_path / "out"), "--fail-under", "60",
        "--no-history", "--connect-timeout", "2", "--retries", "0", env=_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"gate 60 %: FAILED — {url} 50 % (1 of 2 hosts)" in proc.stderr.splitlines()
