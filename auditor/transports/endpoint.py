"""Where and as whom to connect to one SSH host: the inventory, the command line and the ssh
config each have their say, in that order (as with `ansible` and `ssh`).

The inventory's user and port and the command line's (or the inventory's) jump host are what
Ansible would give `ssh` as `-l`, `-p` and `-J`, so they are handed to the config reader as
such: they take part in `Match` and in `%` tokens, and they win over the config. `Host` and
`Match` see `ansible_host`, the address Ansible passes to `ssh`.

Only the first hop of a ProxyJump chain is used: the auditor connects to the target through
that one hop (every hop is still checked for syntax).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from auditor.errors import HostLevelError, InputError
from auditor.models import Host
from auditor.outcomes import HostOutcome
from auditor.transports.sshconfig import DEFAULT_PORT, JumpSpec, SSHConfigReader, parse_hop

__all__ = [
    "Endpoint",
    "EndpointDefaults",
    "JumpSpec",
    "jump_from_common_args",
    "jump_setting",
    "parse_jump",
    "resolve_endpoint",
]


class EndpointDefaults(Protocol):
    """The run-wide settings an endpoint falls back on (the SSH transport's options)."""

    @property
    def user(self) -> str | None: ...

    @property
    def keys(self) -> tuple[Path, ...]: ...

    @property
    def jump_host(self) -> str | None: ...


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect for one host, after the inventory, the command line and
    the ssh config have each had their say (in that order, as with `ansible` and `ssh`)."""

    address: str
    port: int
    user: str | None
    key_files: tuple[Path, ...]
    keys_required: bool
    """False for IdentityFile lines of the ssh config: like `ssh`, skip the missing ones."""
    jump: JumpSpec | None
    default_keys: bool = True
    """False when the ssh config says `IdentityFile none`: no key files at all, not even the
    client's default ones (the agent is still asked)."""


def parse_jump(spec: str, setting: str = "ProxyJump", *, strict: bool = True) -> JumpSpec:
    """The first hop of `[user@]host[:port][,...]`; every hop must be well-formed, as
    OpenSSH requires (`strict`, for values from outside the ssh config, as ssh treats its
    command line: no shell metacharacters in names). A malformed value is an `InputError`
    naming `setting`."""
    hops = spec.split("#", 1)[0].strip().split(",")
    parsed = [parse_hop(hop.strip(), strict=strict) for hop in hops]
    first = parsed[0]
    if first is None or any(hop is None for hop in parsed):
        raise InputError(f"bad jump host {spec!r} (expected [user@]host[:port])", setting)
    return first


def jump_from_common_args(args: str) -> str | None:
    """The ProxyJump hop in `ansible_ssh_common_args` (`-J x` or `-o ProxyJump=x`)."""
    try:
        words = shlex.split(args)
    except ValueError:
        raise InputError(f"cannot parse ansible_ssh_common_args {args!r}") from None
    for i, word in enumerate(words):
        if word == "-J" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("-J") and len(word) > 2:
            return word[2:]
        option = None
        if word == "-o" and i + 1 < len(words):
            option = words[i + 1]
        elif word.startswith("-o") and len(word) > 2:
            option = word[2:]
        if option:
            key, _, value = option.replace("=", " ", 1).partition(" ")
            if key.lower() == "proxyjump":
                return value.strip()
            if key.lower() == "proxycommand":
                raise InputError(
                    "ProxyCommand in ansible_ssh_common_args is not supported; use ProxyJump"
                )
    return None


def jump_setting(host: Host, defaults: EndpointDefaults) -> tuple[str, str] | None:
    """The jump host the inventory or the command line gives `host`, with the name of the
    setting it came from; None when neither gives one."""
    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        args = host.vars.get(var)
        if args:
            hop = jump_from_common_args(str(args))
            if hop:
                return hop, f"{var} of host {host.name}"
    if defaults.jump_host:
        return defaults.jump_host, "--jump-host"
    return None


def resolve_endpoint(
    host: Host,
    defaults: EndpointDefaults,
    config: SSHConfigReader,
    *,
    follow_jump: bool = True,
) -> Endpoint:
    """Resolve address, port, user, keys and jump host for `host`.

    Raises `InputError` for a malformed setting and `HostLevelError` (outcome `error`) when
    `ssh` itself would refuse this host: a ProxyCommand, which the auditor does not run, a
    ProxyJump loop, a name that cannot be canonicalised, a bad `%` token.
    """
    user = host.user or defaults.user
    given = jump_setting(host, defaults) if follow_jump else None
    hop: str | None = None
    if given is not None:
        hop, setting = given
        if hop.lower() != "none":
            parse_jump(hop, setting)
    resolved = config.lookup(host.address, user, host.port, hop)
    if resolved.error is not None:
        raise HostLevelError(HostOutcome.ERROR, f"ssh config for {host.address}: {resolved.error}")
    var = host.vars.get("ansible_ssh_private_key_file") or host.vars.get("ansible_private_key_file")
    keys: tuple[Path, ...] = (Path(str(var)).expanduser(),) if var else defaults.keys
    required = bool(keys)
    if not keys:
        keys = resolved.identity_files
    jump: JumpSpec | None = None
    if follow_jump:
        if resolved.proxy_jump is not None:
            jump = parse_jump(resolved.proxy_jump, "ProxyJump in the ssh config", strict=False)
        elif resolved.proxy_command is not None:
            raise HostLevelError(
                HostOutcome.ERROR,
                f"the ssh config gives {host.address} a ProxyCommand, which the auditor "
                "does not run; use ProxyJump",
            )
    return Endpoint(
        address=resolved.hostname or host.address,
        port=resolved.port or host.port or DEFAULT_PORT,
        user=user or resolved.user,
        key_files=keys,
        keys_required=required,
        jump=jump,
        default_keys=required or resolved.default_identities,
    )
