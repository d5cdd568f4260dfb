"""`lab up` and `lab down` themselves: scale, crashes, failures, repeated calls.

These build labs of their own, so they are marked `lab_exclusive` and run before the shared
lab (tests/conftest.py). Figures are printed (see them with `pytest -s`) and recorded as
junit properties."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import agent, fleet, lab_down, lab_status, lab_up, netns
from auditor_lab.errors import LabError
from auditor_lab.netns import Proc
from auditor_lab.spec import agent_hosts, design_hosts, windows_agent_hosts, windows_hosts

pytestmark = [pytest.mark.lab_exclusive, pytest.mark.usefixtures("lab_slot")]

NoLabLeft = Any  # the `no_lab_left` fixture (tests/lab/conftest.py)
SshRun = Any


def _recorded(directory: Path) -> list[Proc]:
    state = json.loads((directory / "state.json").read_text())
    return [Proc(p["pid"], p["start"], p["role"]) for p in state["processes"]]


def test_scale_lab_of_200_extra_hosts_comes_up_and_goes_away_fast(
    tmp_path: Path,
    no_lab_left: NoLabLeft,
    ssh_run: SshRun,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    lab = lab_up(tmp_path / "lab", extra_hosts=200)
    up = time.monotonic() - started
    procs = _recorded(lab.directory)
    try:
        design = design_hosts() + agent_hosts() + windows_hosts() + windows_agent_hosts()
        assert len(lab.hosts) == len(design) + 200  # Linux and Windows design hosts, scale
        assert lab.host("scale-0200").address == "10.213.2.200"
        assert lab_status(lab.directory).healthy
        result = ssh_run(lab, "scale-0200", "hostname")
        assert result.stdout.strip() == "scale-0200", result.stderr
        # services, and sshd or a WS-Management endpoint on all but sshdown and win-down
        assert len(procs) == 1 + sum(h.service != "none" for h in lab.hosts)
        assert len(procs) == 1 + len(lab.hosts) - 2
    finally:
        started = time.monotonic()
        removed = lab_down(tmp_path / "lab")
        down = time.monotonic() - started
    no_lab_left(procs)
    assert not (tmp_path / "lab").exists()
    assert sum(r.startswith("namespace ") for r in removed) == len(design) + 200
    print(f"\nlab up, {len(lab.hosts)} hosts: {up:.2f}s {lab.timings}; lab down: {down:.2f}s")
    record_property("lab_up_213_seconds", round(up, 2))
    record_property("lab_down_213_seconds", round(down, 2))
    assert up < 60 and down < 30


def test_down_cleans_up_after_up_is_killed_midway(tmp_path: Path, no_lab_left: NoLabLeft) -> None:
    directory = tmp_path / "lab"
    code = "import sys, pathlib\nfrom auditor_lab import lab_up\n"
    code += "lab_up(pathlib.Path(sys.argv[1]), extra_hosts=60)\n"
    up = subprocess.Popen([sys.executable, "-c", code, str(directory)], start_new_session=True)
    deadline = time.monotonic() + 30
    state: dict[str, Any] = {}
    try:
        while time.monotonic() < deadline and up.poll() is None:
            try:
                state = json.loads((directory / "state.json").read_text())
            except (OSError, ValueError):
                state = {}
            if len(state.get("processes", ())) >= 10:
                break
            time.sleep(0.005)
    finally:
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
    assert state.get("processes"), "up never got as far as starting processes"
    assert not state["complete"]  # killed midway, not after a finished up
    procs = _recorded(directory)
    removed = lab_down(directory)
    assert any(r.startswith("namespace audlab-") for r in removed)
    assert any(r.startswith("process ") for r in removed)
    no_lab_left(procs)
    assert not directory.exists()
    assert lab_down(directory) == []  # idempotent
    assert lab_down() == []


def test_down_finds_everything_without_the_state_file(
    tmp_path: Path, no_lab_left: NoLabLeft
) -> None:
    lab = lab_up(tmp_path / "lab")
    procs = _recorded(lab.directory)
    (lab.directory / "state.json").unlink()
    fleet.POINTER.unlink()
    removed = lab_down()  # no directory, no pointer: the prefix sweep alone
    assert {f"namespace {h.namespace}" for h in lab.hosts} <= set(removed)
    no_lab_left(procs)  # sshd found in its namespace, the services by their lab listeners
    lab_down(lab.directory)  # the files: lab.json still marks the folder as the lab's
    assert not lab.directory.exists()
    # The agent CA bundle's mount point, made by up, found by its mark.
    assert not agent.ETC_QUALYS_MARK.exists()


def test_up_replaces_a_lab_that_is_already_up(tmp_path: Path, no_lab_left: NoLabLeft) -> None:
    first = lab_up(tmp_path / "one")
    first_procs = _recorded(first.directory)
    second = lab_up(tmp_path / "two")
    try:
        assert not first.directory.exists()
        assert not any(netns.alive(p) for p in first_procs)
        assert lab_status(second.directory).healthy
    finally:
        second_procs = _recorded(second.directory)
        lab_down(second.directory)
    no_lab_left(second_procs)


def test_a_failing_step_fails_up_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_lab_left: NoLabLeft
) -> None:
    def broken_nft(namespace: str, ruleset: str) -> None:
        raise LabError(f"nft failed in {namespace}")

    monkeypatch.setattr(netns, "load_nft", broken_nft)
    with pytest.raises(LabError, match="nft failed in audlab-"):
        lab_up(tmp_path / "lab")
    no_lab_left(())
    assert not (tmp_path / "lab").exists()


def test_up_refuses_a_folder_holding_files_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("mine\n")
    with pytest.raises(LabError, match="choose an empty or new directory"):
        lab_up(tmp_path)
    assert (tmp_path / "hosts").read_text() == "mine\n"
    lab_down(tmp_path)
    assert (tmp_path / "hosts").read_text() == "mine\n"


def test_up_explains_what_the_machine_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netns, "tool", lambda name: None if name == "nft" else f"/bin/{name}")
    with pytest.raises(LabError) as failure:
        lab_up(Path("/nonexistent/lab"))
    assert "needs root" in str(failure.value)
    assert "missing tools: nft" in str(failure.value)
    assert not Path("/nonexistent").exists()
