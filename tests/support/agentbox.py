"""A Qualys agent "installed" for one probe run on this machine, seen by that probe only.

The probe's shell runs in its own mount namespace where /etc is an overlay (the agent's
configuration files, CA bundle) and the package database's status file is replaced by one
holding a `qualys-cloud-agent` entry, with the file list dpkg keeps for every package it
unpacked added to its info folder: the real dpkg-query, the real files, nothing changed
outside that namespace. Needs root and unshare.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

DPKG_STATUS = Path("/var/lib/dpkg/status")
DPKG_INFO = Path("/var/lib/dpkg/info")


def available() -> bool:
    return (
        os.geteuid() == 0
        and shutil.which("unshare") is not None
        and shutil.which("dpkg-query") is not None
        and DPKG_STATUS.is_file()
    )


def dpkg_entry(version: str, status: str = "install ok installed") -> str:
    return (
        "Package: qualys-cloud-agent\n"
        f"Status: {status}\n"
        "Priority: optional\n"
        "Section: misc\n"
        "Maintainer: Lab <lab@example.invalid>\n"
        "Architecture: amd64\n"
        f"Version: {version}\n"
        "Description: lab stand-in for the agent package\n\n"
    )


def agent_box(
    tmp: Path,
    *,
    version: str | None,
    etc_files: dict[str, str | bytes] | None = None,
) -> str:
    """The command that runs the probe's `/bin/sh -s` with this agent installed (version
    None: no agent entry) and `etc_files` (paths relative to /etc) present."""
    upper, work = tmp / "etc-upper", tmp / "etc-work"
    upper.mkdir(parents=True)
    work.mkdir()
    for rel, content in (etc_files or {}).items():
        path = upper / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)
    status = tmp / "dpkg-status"
    text = DPKG_STATUS.read_text(encoding="utf-8", errors="replace")
    status.write_text(text.rstrip("\n") + "\n\n" + (dpkg_entry(version) if version else ""))
    mounts = [
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc",
        f"mount --bind {status} {DPKG_STATUS}",
    ]
    if version:
        info = tmp / "dpkg-info"
        info.mkdir()
        (info / "qualys-cloud-agent.list").write_text("/usr/local/qualys/cloud-agent\n")
        mounts.append(f"mount -t overlay overlay -o lowerdir={info}:{DPKG_INFO} {DPKG_INFO}")
    inner = " && ".join([*mounts, "exec /bin/sh -s"])
    return f"unshare -m --propagation private /bin/sh -c {shlex.quote(inner)}"
