"""Lab hosts with the Qualys Cloud Agent "installed": each such host's sshd (and so every
probe session) sees its own package database entry and its own agent configuration file,
and no other host or process of the machine sees either.

- /etc/default/qualys-cloud-agent: `ip netns exec` mounts every entry of /etc/netns/NAME/
  over /etc, so the host gets /etc/netns/NAME/default, a copy of the machine's /etc/default
  with the agent's file added.
- /var/lib/dpkg/status: `ip netns exec` gives sshd a mount namespace of its own; a bind mount
  made there, before sshd starts, replaces the status file with the host's copy (the
  machine's entries plus a `qualys-cloud-agent` one) for that sshd and its sessions only.
- /var/lib/dpkg/info: dpkg keeps a file list there for every package it unpacked, and the
  probe asks dpkg-query only where one exists; a read-only overlay adds the agent's list to
  the machine's folder, again in sshd's own mount namespace.

- /etc/qualys/cloud-agent/cert/ca-bundle.crt (the agent's proxy CA bundle, for a host with
  `agent_ca`): /etc/netns/NAME/qualys, mounted over /etc/qualys the same way. `ip netns exec`
  can only mount over a path that exists, so the lab makes /etc/qualys when the machine has
  none, holding only a mark that says so, by which `down` finds and removes it again (even
  without the lab's state file).

Nothing runs as the agent: the probe's "running" check answers false on these hosts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from auditor_lab import netns
from auditor_lab.spec import HostSpec

DPKG_STATUS = Path("/var/lib/dpkg/status")
DPKG_INFO = Path("/var/lib/dpkg/info")
ETC_DEFAULT = Path("/etc/default")
ETC_QUALYS = Path("/etc/qualys")
AGENT_FILE = "qualys-cloud-agent"
CA_BUNDLE = Path("cloud-agent/cert/ca-bundle.crt")
"""Under /etc/qualys: where the agent reads its proxy CA certificates (the vendor's guide)."""
ETC_QUALYS_MARK = ETC_QUALYS / ".made-by-auditor-lab"


def has_agent(host: HostSpec) -> bool:
    return bool(host.agent_version or host.agent_conf)


def dpkg_entry(version: str) -> str:
    """A status-file stanza that dpkg-query reads as an installed package."""
    return (
        f"Package: {AGENT_FILE}\n"
        "Status: install ok installed\n"
        "Priority: optional\n"
        "Section: admin\n"
        "Maintainer: Auditor Lab <lab@lab.test>\n"
        "Architecture: amd64\n"
        f"Version: {version}\n"
        "Description: lab stand-in for the Qualys Cloud Agent package\n\n"
    )


def make_etc_qualys(hosts: list[HostSpec]) -> None:
    """The mount point of the hosts' agent CA bundles, when one needs it and the machine has
    no /etc/qualys: made with a mark, nothing else."""
    if any(h.agent_ca for h in hosts) and not ETC_QUALYS.exists():
        ETC_QUALYS.mkdir(mode=0o755)
        ETC_QUALYS_MARK.write_text("made by auditor-lab up; auditor-lab down removes it\n")


def remove_etc_qualys() -> list[str]:
    """Remove the /etc/qualys the lab made (found by its mark): only if nothing else was put
    there since (a real agent installed meanwhile keeps it)."""
    if not ETC_QUALYS_MARK.is_file():
        return []
    ETC_QUALYS_MARK.unlink()
    try:
        ETC_QUALYS.rmdir()
    except OSError:
        return []
    return [str(ETC_QUALYS)]


def write_agent_files(host: HostSpec, host_dir: Path, ca_pem: Path) -> None:
    """The host's /etc/netns default folder, its dpkg status copy (in `host_dir`) and, for a
    host with `agent_ca`, its agent CA bundle holding the certificate in `ca_pem`."""
    if not has_agent(host):
        return
    if host.agent_ca:
        bundle = netns.ETC_NETNS / host.namespace / ETC_QUALYS.name / CA_BUNDLE
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_bytes(ca_pem.read_bytes())
    default = netns.ETC_NETNS / host.namespace / "default"
    if ETC_DEFAULT.is_dir():
        shutil.copytree(ETC_DEFAULT, default, symlinks=True, dirs_exist_ok=True)
    default.mkdir(parents=True, exist_ok=True)
    if host.agent_conf:
        conf = default / AGENT_FILE
        conf.write_text(host.agent_conf)
        # It may hold proxy credentials: root only, as the agent's own file is.
        conf.chmod(0o600)
    base = (
        DPKG_STATUS.read_text(encoding="utf-8", errors="replace") if DPKG_STATUS.is_file() else ""
    )
    entry = dpkg_entry(host.agent_version) if host.agent_version else ""
    (host_dir / "dpkg-status").write_text(base.rstrip("\n") + "\n\n" + entry)
    if host.agent_version:
        info = host_dir / "dpkg-info"
        info.mkdir(exist_ok=True)
        (info / f"{AGENT_FILE}.list").write_text("/usr/local/qualys/cloud-agent\n")


def sshd_argv(host: HostSpec, host_dir: Path, sshd_argv: list[str]) -> list[str]:
    """`sshd_argv`, wrapped so the host's dpkg status file is mounted first (in sshd's own
    mount namespace) when the host has the agent."""
    if not has_agent(host) or not DPKG_STATUS.is_file():
        return sshd_argv
    if not host.agent_version or not DPKG_INFO.is_dir():
        script = 'mount --bind "$0" /var/lib/dpkg/status && exec "$@"'
        return ["sh", "-c", script, str(host_dir / "dpkg-status"), *sshd_argv]
    script = (
        'mount --bind "$0" /var/lib/dpkg/status && mount -t overlay overlay '
        '-o "lowerdir=$1:/var/lib/dpkg/info" /var/lib/dpkg/info && shift && exec "$@"'
    )
    return [
        "sh",
        "-c",
        script,
        str(host_dir / "dpkg-status"),
        str(host_dir / "dpkg-info"),
        *sshd_argv,
    ]
