"""`auditor inventory --resolve`: the connection the auditor would make to each host, after
the inventory, the command line and the ssh config, without contacting anything.

For SSH hosts this is what `ssh -G` prints for the same host with the same `-l`, `-p`, `-J`
and `-F` (the test suite compares the two). The only look-ups made are those `ssh -G` makes
too: the name service, when the ssh config asks for CanonicalizeHostname.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from auditor.errors import HostLevelError
from auditor.models import Connection, Host
from auditor.secret import Secret, secret_from_file
from auditor.settings import Settings
from auditor.transports.endpoint import EndpointDefaults, JumpSpec, resolve_endpoint
from auditor.transports.sshconfig import (
    DEFAULT_PORT,
    SSHConfigReader,
    default_config_path,
    local_user,
)

NO_PORT = 0
"""The port shown for a host audited on this machine (`ansible_connection=local`)."""


@dataclass(frozen=True)
class ResolvedHost:
    """One host's effective connection; `error` says why it cannot be audited as configured."""

    name: str
    transport: Connection
    address: str
    port: int
    user: str | None
    identity_files: tuple[str, ...] = ()
    default_keys: bool = True
    jump: JumpSpec | None = None
    error: str | None = None
    winrm_url: str | None = None
    winrm_auth: str | None = None


def resolve_hosts(hosts: Sequence[Host], settings: Settings) -> tuple[ResolvedHost, ...]:
    """Resolve every host as `audit` would with the same settings.

    Raises `InputError` for a setting that is wrong whichever host it is for (an ssh config
    line, a malformed jump host, a WinRM setting): `audit` stops on those too.
    """
    ssh_options = settings.ssh
    reader: SSHConfigReader | None = None
    out: list[ResolvedHost] = []
    for host in hosts:
        if host.skip:
            out.append(
                ResolvedHost(
                    host.name, host.connection, host.address, NO_PORT, None, error=host.skip
                )
            )
        elif host.connection is Connection.SSH:
            if reader is None:
                reader = SSHConfigReader(ssh_options.ssh_config or default_config_path())
            out.append(_ssh(host, ssh_options, reader))
        elif host.connection is Connection.WINRM:
            out.append(_winrm(host, settings))
        else:
            out.append(ResolvedHost(host.name, host.connection, host.address, NO_PORT, None))
    return tuple(out)


def _ssh(host: Host, options: EndpointDefaults, reader: SSHConfigReader) -> ResolvedHost:
    try:
        endpoint = resolve_endpoint(host, options, reader)
    except HostLevelError as exc:
        return ResolvedHost(
            name=host.name,
            transport=host.connection,
            address=host.address,
            port=host.port or DEFAULT_PORT,
            user=host.user or options.user,
            error=exc.detail,
        )
    return ResolvedHost(
        name=host.name,
        transport=host.connection,
        address=endpoint.address,
        port=endpoint.port,
        # Like ssh (and asyncssh), the local user name when nothing names one.
        user=endpoint.user or local_user(),
        identity_files=tuple(str(path) for path in endpoint.key_files),
        default_keys=endpoint.default_keys and not endpoint.key_files,
        jump=endpoint.jump,
    )


def _winrm(host: Host, settings: Settings) -> ResolvedHost:
    from auditor.transports.winrm import resolve_endpoint as winrm_endpoint

    password = settings.winrm.password
    if password is None and settings.password_file is not None:
        password = secret_from_file(settings.password_file)
    if password is None and settings.ask_pass:
        # `audit --ask-pass` would prompt; the password itself is not needed to resolve.
        password = Secret("(asked at run time)")
    ep = winrm_endpoint(host, settings.winrm, password)
    url = urlsplit(ep.url)
    return ResolvedHost(
        name=host.name,
        transport=host.connection,
        address=host.address,
        port=url.port or NO_PORT,
        user=ep.user,
        winrm_url=ep.url,
        winrm_auth=ep.auth,
    )


def to_json(resolved: Sequence[ResolvedHost]) -> str:
    """`{"hosts": {NAME: {address, port, user, identity_files, jump, transport, error}}}`."""
    hosts: dict[str, dict[str, Any]] = {}
    for item in resolved:
        jump = item.jump
        hosts[item.name] = {
            "address": item.address,
            "port": item.port,
            "user": item.user,
            "identity_files": list(item.identity_files),
            "jump": None
            if jump is None
            else {"user": jump.user, "host": jump.host, "port": jump.port},
            "transport": str(item.transport),
            "error": item.error,
        }
    return json.dumps({"hosts": hosts}, indent=2)


def render_text(resolved: Sequence[ResolvedHost]) -> str:
    """One block per host, for people."""
    blocks = []
    for item in resolved:
        lines = [item.name, f"  transport  {item.transport}"]
        if item.transport is Connection.LOCAL:
            lines.append("  address    this machine (no connection)")
        else:
            lines.append(f"  address    {item.address}")
            lines.append(f"  port       {item.port}")
            lines.append(f"  user       {item.user or '-'}")
        if item.transport is Connection.SSH and item.error is None:
            lines.append(f"  keys       {_keys(item)}")
            lines.append(f"  jump       {_jump(item.jump)}")
        if item.winrm_url is not None:
            lines.append(f"  endpoint   {item.winrm_url} ({item.winrm_auth})")
        if item.error is not None:
            lines.append(f"  error      {item.error}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _keys(item: ResolvedHost) -> str:
    if item.identity_files:
        return ", ".join(item.identity_files)
    if item.default_keys:
        return "the client's defaults (SSH agent, ~/.ssh/id_*)"
    return "none (IdentityFile none): the SSH agent only"


def _jump(jump: JumpSpec | None) -> str:
    if jump is None:
        return "none (direct)"
    host = f"[{jump.host}]" if ":" in jump.host else jump.host
    text = f"{jump.user}@{host}" if jump.user else host
    return f"{text}:{jump.port}" if jump.port else text
