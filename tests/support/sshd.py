"""A real OpenSSH sshd on 127.0.0.1 for one test, with a config of the test's choosing.

Each server gets its own host key, client key, known_hosts and pid; it is stopped by PID (and
its session processes with it) when the context ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class LoopbackSSHD:
    port: int
    key: Path
    known_hosts: Path
    pid: int
    directory: Path

    def inventory_line(self, name: str, **extra: str) -> str:
        fields = {
            "ansible_host": "127.0.0.1",
            "ansible_port": str(self.port),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            **extra,
        }
        return name + " " + " ".join(f"{k}={v}" for k, v in fields.items())

    def kill_tree(self) -> None:
        """End the listener and every session process under it, by PID."""
        for pid in reversed(_descendants(self.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    out = [pid]
    for child in _children(pid):
        out.extend(_descendants(child))
    return out


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found.extend(
                    int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sshd_available() -> bool:
    return os.geteuid() == 0 and Path(SSHD).exists() and shutil.which("ssh-keygen") is not None


@contextlib.contextmanager
def loopback_sshd(
    directory: Path, extra_config: str = "", env: dict[str, str] | None = None
) -> Iterator[LoopbackSSHD]:
    """`env` is the session environment (sshd keeps only the first SetEnv line it reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True
        )
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    home = directory / "home"
    home.mkdir(exist_ok=True)
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\n"
        f"HostKey {directory / 'host_key'}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nPrintMotd no\nUseDNS no\n"
        + "SetEnv "
        + " ".join(f"{k}={v}" for k, v in {"HOME": str(home), **(env or {})}.items())
        + "\n"
        + extra_config
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    known = directory / "known_hosts"
    known.write_text(
        f"[127.0.0.1]:{port} {(directory / 'host_key.pub').read_text().split(' ', 2)[0]} "
        f"{(directory / 'host_key.pub').read_text().split(' ', 2)[1]}\n"
    )
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("sshd did not start")
        time.sleep(0.05)
    server = LoopbackSSHD(port, directory / "client_key", known, proc.pid, directory)
    try:
        yield server
    finally:
        server.kill_tree()
        proc.wait(timeout=10)
