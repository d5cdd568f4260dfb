"""Helpers for the lab's own tests: a real OpenSSH client, and a check that nothing of a lab
is left on the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from auditor_lab import HostSpec, LabInfo
from auditor_lab.netns import Proc, alive

NoLabLeft = Callable[[Sequence[Proc]], None]


class LabSsh:
    """The real OpenSSH client, pointed at lab hosts by name."""

    def command(self, lab: LabInfo, name: str, *options: str) -> list[str]:
        """`ssh` to a lab host with the lab's key and known_hosts, and nothing from ~/.ssh."""
        return _ssh_command(lab, lab.host(name), *options)

    def __call__(
        self, lab: LabInfo, name: str, command: str, *options: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command(lab, name, *options), command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )


def _ssh_command(lab: LabInfo, host: HostSpec, *options: str) -> list[str]:
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(lab.key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        *options,
        f"root@{host.address}",
    ]


@pytest.fixture(scope="session")
def ssh_run() -> LabSsh:
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client (ssh) is not installed")
    return LabSsh()


def _tool_lines(*args: str) -> list[str]:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.fixture
def no_lab_left() -> NoLabLeft:
    """Asserts, with the real tools, that no lab namespace, link, nft table, /etc/netns entry,
    /dev/shm scratch folder or lab listener exists, and that none of `procs` still runs."""

    def check(procs: Sequence[Proc] = ()) -> None:
        assert [n for n in _tool_lines("ip", "netns", "list") if n.startswith("audlab")] == []
        assert [n for n in _tool_lines("ip", "-o", "link") if "audlab" in n] == []
        assert [n for n in _tool_lines("nft", "list", "tables") if "audlab" in n] == []
        assert sorted(Path("/etc").glob("netns/audlab*")) == []
        assert sorted(Path("/dev/shm").glob("audlab*")) == []
        assert [n for n in _tool_lines("ss", "-Hltn") if " 10.213." in n] == []
        assert [p for p in procs if alive(p)] == []
        assert not Path("/run/netns").exists() or not any(
            n.startswith("audlab") for n in os.listdir("/run/netns")
        )

    return check
