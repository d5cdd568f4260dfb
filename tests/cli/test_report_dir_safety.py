"""The report directory, attacked with real files, real symbolic links and a real second owner.

The auditor runs as root: a directory another user owns or can write to, or a link planted
where a report goes, must never make it write anywhere but a file it just created.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.audit import default_out_dir
from tests.support.cli import BIN, audit
from tests.support.loopback import Loopback, loopback_servers

NOBODY = 65534
"""A uid that is not ours: the "other local user" who owns or prepares a directory."""

REPORT_FILES = ("results.jsonl", "report.html", "report.csv", "report.json", "junit.xml")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


@pytest.fixture(autouse=True)
def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: files are given to another owner")


def _env(lb: Loopback) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["CURL_CA_BUNDLE"] = str(lb.ca_bundle)
    return env


def _run(tmp: Path, lb: Loopback, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    inv = tmp / "inv.ini"
    inv.write_text("box ansible_connection=local\n")
    url = f"https://localhost:{lb.https_port}/status"
    return audit("-i", str(inv), "--url", url, "-o", str(out), "-q", *args, env=_env(lb))


def _one_line_exit_2(proc: subprocess.CompletedProcess[str], expect: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], proc.stderr


def test_force_replaces_planted_links_and_never_writes_their_targets(
    tmp_path: Path, servers: Loopback
) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    victims = {}
    for name in REPORT_FILES:
        victim = tmp_path / f"victim-{name}"
        victim.write_text(f"precious {name}\n")
        victim.chmod(0o644)
        (out / name).symlink_to(victim)
        victims[name] = victim
    proc = _run(tmp_path, servers, out, "--force")
    assert proc.returncode == 0, proc.stderr
    for name, victim in victims.items():
        assert victim.read_text() == f"precious {name}\n", name
        entry = out / name
        assert not entry.is_symlink() and entry.is_file(), name
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600, name
    first = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert first["type"] == "run"


def test_force_replaces_a_foreign_owned_world_writable_results_file(
    tmp_path: Path, servers: Loopback
) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    planted = out / "results.jsonl"
    planted.write_text("planted\n")
    os.chown(planted, NOBODY, NOBODY)
    planted.chmod(0o666)
    proc = _run(tmp_path, servers, out, "--force")
    assert proc.returncode == 0, proc.stderr
    st = planted.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o600)
    assert "planted" not in planted.read_text()


@pytest.mark.parametrize("force", [False, True])
def test_a_directory_owned_by_another_user_is_refused(
    tmp_path: Path, servers: Loopback, force: bool
) -> None:
    out = tmp_path / "theirs"
    out.mkdir(mode=0o700)
    os.chown(out, NOBODY, NOBODY)  # empty, and its owner could plant a link at any moment
    proc = _run(tmp_path, servers, out, *(("--force",) if force else ()))
    _one_line_exit_2(proc, "owned by uid 65534")
    assert os.listdir(out) == []


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777, 0o720], ids=oct)
@pytest.mark.parametrize("force", [False, True])
def test_a_directory_group_or_others_can_write_is_refused(
    tmp_path: Path, servers: Loopback, mode: int, force: bool
) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(mode)
    proc = _run(tmp_path, servers, out, *(("--force",) if force else ()))
    _one_line_exit_2(proc, "writable by group or others")
    assert os.listdir(out) == []


def test_a_report_directory_that_is_a_symlink_is_refused(tmp_path: Path, servers: Loopback) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    proc = _run(tmp_path, servers, link, "--force")
    _one_line_exit_2(proc, "symbolic link")
    assert os.listdir(real) == []


def test_a_new_report_directory_is_made_owner_only(tmp_path: Path, servers: Loopback) -> None:
    out = tmp_path / "fresh"
    old = os.umask(0)
    try:
        proc = _run(tmp_path, servers, out)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    st = out.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o700)
    assert sorted(os.listdir(out)) == sorted(REPORT_FILES)


def test_default_report_directory_names_differ_within_one_second() -> None:
    pattern = re.compile(r"audit-report-\d{8}T\d{6}Z-[0-9a-f]{8}")
    for _ in range(100):
        first, second = default_out_dir(), default_out_dir()
        if first.name[:29] == second.name[:29]:  # the same UTC second
            break
    assert first.name[:29] == second.name[:29]
    assert first != second
    assert pattern.fullmatch(first.name) and pattern.fullmatch(second.name)


def test_the_default_report_directory_is_unpredictable_and_made_by_the_run(
    tmp_path: Path, servers: Loopback
) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("box ansible_connection=local\n")
    url = f"https://localhost:{servers.https_port}/status"
    work = tmp_path / "cwd"
    work.mkdir()
    for _ in range(2):
        proc = subprocess.run(
            [str(BIN / "audit"), "-i", str(inv), "--url", url, "-q"],
            cwd=work,
            env=_env(servers),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
    made = sorted(os.listdir(work))
    assert len(made) == 2, made
    for name in made:
        assert re.fullmatch(r"audit-report-\d{8}T\d{6}Z-[0-9a-f]{8}", name), name
        st = (work / name).stat()
        assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077 == 0


def test_report_command_never_writes_through_planted_links(
    tmp_path: Path, servers: Loopback
) -> None:
    first = tmp_path / "first"
    proc = _run(tmp_path, servers, first)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "again"
    out.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (out / "report.html").symlink_to(victim)
    proc = subprocess.run(
        [str(BIN / "auditor"), "report", str(first / "results.jsonl"), "-o", str(out), "--force"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "precious\n"
    assert not (out / "report.html").is_symlink()
    # and a foreign-owned target directory is refused by `auditor report` too
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    proc = subprocess.run(
        [str(BIN / "auditor"), "report", str(first / "results.jsonl"), "-o", str(theirs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _one_line_exit_2(proc, "owned by uid 65534")
    assert os.listdir(theirs) == []
