"""Every platform's probe behind the one `Probe` interface, chosen in one registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import auditor.scheduler
from auditor.models import Platform, RawOutput, Target
from auditor.probes import Probe, ProbeSettings
from auditor.probes.posix import COMMAND, PosixProbe, sent_source
from auditor.probes.powershell import PowerShellProbe
from auditor.probes.registry import PROBES, probe_for
from auditor.scheduler import Probes

NONCE = "0123456789abcdef"
TARGETS = (Target(url="https://cask.qg3.apps.qualys.com/status", name="cdn"),)


def test_every_platform_has_exactly_one_probe() -> None:
    assert set(PROBES) == set(Platform)
    assert isinstance(probe_for(Platform.LINUX), PosixProbe)
    assert isinstance(probe_for(Platform.WINDOWS), PowerShellProbe)
    assert all(isinstance(p, Probe) for p in PROBES.values())


@pytest.mark.parametrize("platform", list(Platform))
def test_the_scheduler_builds_and_parses_through_the_registry(platform: Platform) -> None:
    settings = ProbeSettings(nonce=NONCE)
    probes = Probes(TARGETS, settings)
    job = probes.job(platform)
    assert job == probe_for(platform).build_job(TARGETS, settings)
    assert probes.job(platform) is job  # built once per run
    silent = RawOutput(stdout=b"", stderr=b"", exit_status=0)
    with pytest.raises(Exception) as through_scheduler:
        probes.parse(platform, silent)
    with pytest.raises(Exception) as direct:
        probe_for(platform).parse(silent, TARGETS, NONCE)
    assert str(through_scheduler.value) == str(direct.value)


def test_the_scheduler_names_no_platforms_probe_module() -> None:
    tree = ast.parse(Path(auditor.scheduler.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"auditor.probes.posix", "auditor.probes.powershell"}
    assert "auditor.probes.registry" in imported


def test_a_jobs_script_is_the_whole_probe_program_on_every_platform() -> None:
    """`ProbeJob.script` means one thing: the probe's source with its data, as the host's
    interpreter runs it; `command` only says how a piped script reaches its interpreter."""
    settings = ProbeSettings(nonce=NONCE)
    posix = probe_for(Platform.LINUX).build_job(TARGETS, settings)
    assert posix.script.startswith(sent_source()) and TARGETS[0].url in posix.script
    assert (posix.command, posix.stdin) == (COMMAND, posix.script.encode())
    windows = probe_for(Platform.WINDOWS).build_job(TARGETS, settings)
    assert "FromBase64String" in windows.script and windows.script.startswith("$Progress")
    assert (windows.command, windows.stdin) == ("", b"")
