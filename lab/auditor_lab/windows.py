"""Windows hosts in the lab: a WS-Management endpoint in each host's network namespace.

No Windows can run here, so a Windows lab host is a network namespace like any other (its
own address, hosts file, resolver file, CA bundle and nft rules) running the lab's
WS-Management endpoint (`python -m auditor_lab.wsman`) instead of sshd. The endpoint is
started *inside* the namespace, through `ip netns exec`, so the HTTP requests it makes on the
probe's behalf see exactly what a process on that host sees: the namespace's /etc/hosts and
resolv.conf for DNS, its /etc/ssl bundle (the lab CA added) as the "Windows root store", its
nft rules, and its proxy (the config's stand-in for the WinINET proxy).

Secrets: the lab user's password is read from DIR/winrm_password (0600, written by
`lab up`) and copied into the endpoint's own config file (0600, DIR/hosts/NAME/wsman.json),
which the endpoint reads; it is never on a command line or in an environment variable. The
endpoint's NTLM user file goes to a private temporary folder under the host's own lab folder,
which `lab down` removes with the rest.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from auditor_lab import netns
from auditor_lab.fleet import WINRM_PASSWORD_FILE, HostContext, register_service
from auditor_lab.spec import LAB_WINRM_USER, HostKind, HostSpec

SERVICE = "wsman"
CONFIG_FILE = "wsman.json"
ACTIONS_FILE = "wsman-actions.jsonl"
"""One JSON line per SOAP request the endpoint served: action, user and how the request was
authenticated and protected ("ntlm+sealed", "basic+tls"); tests read it."""
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""The bundle as seen inside the namespace: the lab's copy of /etc/ssl with the lab CA."""

_OS = "Microsoft Windows Server 2019 Standard"


def machine_name(host: HostSpec) -> str:
    """What `[Environment]::MachineName` reports: the NetBIOS name, upper case."""
    return host.name.upper()


def endpoint_config(host: HostSpec, host_dir: Path, password: str) -> dict[str, Any]:
    """The endpoint's JSON config for `host` (it holds the password: write it 0600)."""
    if host.kind is not HostKind.WINDOWS:
        raise ValueError(f"{host.name} is not a Windows lab host")
    # A host that must refuse the lab's password knows the user with a password of its own.
    known = password if host.authorized else secrets.token_urlsafe(18)
    doc: dict[str, Any] = {
        "listen": host.address,
        "port": host.port,
        "auth": [host.winrm_auth],
        "users": {LAB_WINRM_USER: known},
        "behaviour": host.wsman_behaviour,
        "powershell": host.powershell,
        "audit_log": str(host_dir / ACTIONS_FILE),
        "machine": {"hostname": machine_name(host), "os": _OS, **_agent(host)},
        "network": {
            # Names resolve through the namespace's own hosts file and resolver: real DNS
            # conditions, and no query ever leaves the namespace (resolv.conf points at its
            # own loopback).
            "system_dns": True,
            "ca_bundle": CA_BUNDLE,
            "proxy": host.proxy or None,
            "no_proxy": [],
        },
    }
    if host.winrm_https:
        doc["tls"] = {"cert": str(host_dir / "winrm.pem"), "key": str(host_dir / "winrm.key")}
    return doc


def _agent(host: HostSpec) -> dict[str, Any]:
    """The emulated host's Qualys agent (`auditor_lab.winagent`), when it has one."""
    if not host.agent_version:
        return {}
    values = [["ProxyUrl", host.agent_conf]] if host.agent_conf else []
    agent: dict[str, Any] = {"version": host.agent_version, "values": values}
    if host.agent_winhttp:
        agent["winhttp"] = host.agent_winhttp
    return {"agent": agent}


def _write_private_json(path: Path, doc: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=1)
    os.chmod(path, 0o600)


def start_wsman(ctx: HostContext) -> subprocess.Popen[bytes]:
    """Write the host's endpoint config and start the endpoint inside its namespace."""
    password = (ctx.directory / WINRM_PASSWORD_FILE).read_text(encoding="ascii").strip()
    config = ctx.host_dir / CONFIG_FILE
    _write_private_json(config, endpoint_config(ctx.host, ctx.host_dir, password))
    private_tmp = ctx.host_dir / "tmp"
    private_tmp.mkdir(mode=0o700, exist_ok=True)
    # Run this very package, wherever the caller imported it from, with this interpreter
    # (its site-packages hold pyspnego and cryptography).
    package_root = netns.package_roots()
    return netns.start_in_namespace(
        ctx.host.namespace,
        ctx.host.name,
        [sys.executable, "-m", "auditor_lab.wsman", "--config", str(config)],
        ctx.host_dir / f"{SERVICE}.log",
        env={
            "PYTHONPATH": package_root,
            "PYTHONDONTWRITEBYTECODE": "1",
            "TMPDIR": str(private_tmp),
        },
    )


register_service(SERVICE, start_wsman)
