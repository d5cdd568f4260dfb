"""OpenSSH's own client as the oracle for ssh config resolution.

`ssh -G -F CONFIG [-l USER] [-p PORT] [-J JUMP] HOST` prints the configuration ssh would use,
connecting nowhere. It prints IdentityFile lines as written; ssh expands their tokens only
when it loads the keys, so `expanded_identity_files` runs the real client with a local
`ProxyCommand=true` (a process that exits at once: no connection is ever made) and reads the
paths it reports with `-v`.

Both ssh and the auditor run in a fresh network namespace with no interface up when the
machine allows it (root and `unshare`), so that a CanonicalizeHostname look-up fails at once
instead of asking a name server: the two see the same, empty, network.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import BIN

DEFAULT_IDENTITY_FILES = (
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
)
"""What `ssh -G` lists when no IdentityFile applies (OpenSSH 9.x)."""

_IDENTITY = re.compile(r"^debug1: identity file (.*) type -?\d+$")


@functools.cache
def can_isolate() -> bool:
    """Whether commands can run in a new, empty network namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


DNS_NAMESPACE = Path(__file__).with_name("dns_namespace.py")


def isolated(argv: Sequence[str], records: Mapping[str, str] | None = None) -> list[str]:
    """`argv` in a new network namespace (no interface up) when possible; with `records`,
    with a name server of its own that knows those names (`dns_namespace`)."""
    if records:
        assert can_isolate(), "a private name server needs root and unshare"
        given = [f"--record={name}={address}" for name, address in records.items()]
        return ["unshare", "-n", "-m", sys.executable, str(DNS_NAMESPACE), *given, "--", *argv]
    return ["unshare", "-n", *argv] if can_isolate() else list(argv)


@dataclass(frozen=True)
class SshG:
    """What `ssh -G` said: its exit status, its error text and its options (lowercase
    keyword -> values, in order)."""

    returncode: int
    stderr: str
    options: dict[str, list[str]]

    def one(self, keyword: str) -> str | None:
        values = self.options.get(keyword)
        return values[0] if values else None


def _client_args(config: Path, user: str | None, port: int | None, jump: str | None) -> list[str]:
    args = ["-F", str(config)]
    if user is not None:
        args += ["-l", user]
    if port is not None:
        args += ["-p", str(port)]
    if jump is not None:
        args += ["-J", jump]
    return args


def ssh_g(
    config: Path,
    host: str,
    *,
    user: str | None = None,
    port: int | None = None,
    jump: str | None = None,
    records: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> SshG:
    proc = subprocess.run(
        isolated(["ssh", "-G", *_client_args(config, user, port, jump), "--", host], records),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=None if env is None else dict(env),
    )
    options: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        keyword, _, value = line.partition(" ")
        options.setdefault(keyword, []).append(value)
    return SshG(proc.returncode, proc.stderr, options)


def expanded_identity_files(
    config: Path,
    host: str,
    *,
    user: str | None = None,
    port: int | None = None,
    records: Mapping[str, str] | None = None,
) -> list[str]:
    """The key files ssh itself tries for `host`, with every token expanded by ssh.

    Only for hosts without a ProxyJump: the command-line ProxyCommand that stops ssh early
    takes its place. With `records` (a config that canonicalises names),
    `CanonicalizeHostname=always` keeps canonicalisation on despite that ProxyCommand."""
    always = ["-o", "CanonicalizeHostname=always"] if records else []
    proc = subprocess.run(
        isolated(
            [
                "ssh",
                "-v",
                *_client_args(config, user, port, None),
                *always,
                "-o",
                "ProxyCommand=true",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "--",
                host,
                "true",
            ],
            records,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    files: list[str] = []
    for line in proc.stderr.splitlines():
        found = _IDENTITY.match(line)
        if found is None:
            continue
        path = found.group(1)
        # ssh also looks for a certificate beside each key: not a key file of its own.
        if files and path == files[-1] + "-cert":
            continue
        files.append(path)
    assert "identity file" in proc.stderr, proc.stderr
    return files


def auditor(
    *args: str, env: dict[str, str] | None = None, records: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed `auditor` command, isolated like `ssh_g`."""
    return subprocess.run(
        isolated([str(BIN / "auditor"), *args], records),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def ssh_jump_text(user: str | None, host: str, port: int | None) -> str:
    """A hop as `ssh -G` prints it in `proxyjump`."""
    numeric = ":" in host or all(ch in "0123456789." for ch in host)
    text = f"[{host}]" if numeric else host
    if user:
        text = f"{user}@{text}"
    return f"{text}:{port}" if port else text


@dataclass(frozen=True)
class Lookup:
    """One host of the case's inventory: `ansible_host`, user, port and `-J` jump host."""

    address: str
    user: str | None = None
    port: int | None = None
    jump: str | None = None
    expect_error: bool = False
    """The case expects ssh (and so the auditor) to refuse this host."""


def compare_with_ssh_g(
    config: Path,
    lookup: Lookup,
    ours: dict[str, Any],
    *,
    expand_keys: bool,
    records: Mapping[str, str] | None = None,
) -> None:
    """Assert that the auditor's resolution of one host is what `ssh -G` prints."""
    theirs = ssh_g(
        config,
        lookup.address,
        user=lookup.user,
        port=lookup.port,
        jump=lookup.jump,
        records=records,
    )
    where = f"{lookup}: ssh -G said {theirs.options} {theirs.stderr!r}; auditor said {ours}"
    if theirs.returncode != 0:
        assert lookup.expect_error, where
        assert ours["error"], where
        return
    assert not lookup.expect_error, where
    if theirs.one("proxycommand") is not None:
        # ssh would run a ProxyCommand; the auditor runs none, so the host is an error.
        assert ours["error"] is not None and "ProxyCommand" in ours["error"], where
        return
    assert ours["error"] is None, where
    assert ours["transport"] == "ssh", where
    assert ours["address"] == theirs.one("hostname"), where
    assert ours["port"] == int(theirs.one("port") or 0), where
    assert ours["user"] == theirs.one("user"), where
    listed = theirs.options.get("identityfile", [])
    if tuple(listed) == DEFAULT_IDENTITY_FILES:
        expected: list[str] = []
    elif not [f for f in listed if f.lower() != "none"]:
        expected = []
    elif expand_keys:
        expected = expanded_identity_files(
            config, lookup.address, user=lookup.user, port=lookup.port, records=records
        )
    else:
        expected = [f for f in listed if f.lower() != "none"]
        assert not any(c in f for f in expected for c in "%$~"), "use expand_keys"
    assert ours["identity_files"] == expected, where
    jump = theirs.one("proxyjump")
    if jump is None:
        assert ours["jump"] is None, where
    else:
        assert ours["jump"] is not None, where
        # The auditor connects through the first hop of a chain.
        assert ssh_jump_text(**ours["jump"]) == jump.split(",")[0], where
