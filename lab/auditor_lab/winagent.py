"""The Qualys Cloud Agent on an emulated Windows host: the `agent` record probe.ps1 prints,
and the proxy its requests then go through.

An emulated host's agent is plain data (`Machine.agent`): installed or not, its version and
where that was read (an uninstall entry or the QualysAgent service), the service's status,
the registry values under HKLM\\SOFTWARE\\Qualys whose names speak of a proxy (name, value;
the names QualysProxy.exe really writes are not public, so the lab's are stand-ins), and
the WinHTTP proxy. This module does what probe.ps1 does with them, line for line: the first
proxy-named value shaped host:port (no PAC, WPAD or credential value), else the WinHTTP
proxy for https:// URLs (an `https=` entry, else one without a scheme), used only when the
auditor asked for the agent's path and the agent is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PROXY_NAME = re.compile(r"proxy|pac|wpad", re.IGNORECASE)
_NOT_A_PROXY = re.compile(r"pac|wpad|user|pass|cred|auth", re.IGNORECASE)
_PROXY_VALUE = re.compile(r"^\s*(https?://)?[^\s;/]+:\d+")


def winhttp_blob(proxy: str) -> bytes:
    """A WinHttpSettings value naming `proxy` ("" for direct), as `netsh winhttp` stores it."""
    flags = 3 if proxy else 1
    data = proxy.encode("ascii")
    return (
        (0x18).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
        + flags.to_bytes(4, "little")
        + len(data).to_bytes(4, "little")
        + data
        + (0).to_bytes(4, "little")
    )


def agent_record(agent: Mapping[str, Any] | None, agent_path: bool) -> tuple[dict[str, Any], str]:
    """(the agent record, in probe.ps1's key order; the proxy the requests use or "")."""
    agent = agent or {}
    installed = "yes" if agent.get("version") else "no"
    values = [
        {"key": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Qualys", "name": str(n), "value": str(v)}
        for n, v in agent.get("values", [])
        if _PROXY_NAME.search(str(n))
    ][:20]
    winhttp = str(agent.get("winhttp", ""))
    proxy = ""
    for item in values:
        if not _NOT_A_PROXY.search(item["name"]) and _PROXY_VALUE.match(item["value"]):
            proxy = item["value"].split(";")[0].strip()
            break
    blob = winhttp_blob(winhttp) if winhttp else b""
    if not proxy and winhttp:
        # probe.ps1: split on ';' or spaces; an https= entry first, else one without a scheme.
        entries = [e for e in re.split(r"[;\s]+", winhttp) if e]
        pick = [e for e in entries if re.match(r"(?i)^https=.", e)]
        pick += [e for e in entries if not re.match(r"^\w+=", e)]
        proxy = re.sub(r"(?i)^https=", "", pick[0]) if pick else ""
    if proxy and not re.match(r"^https?://", proxy):
        proxy = "http://" + proxy
    use = proxy if agent_path and installed == "yes" else ""
    record = {
        "kind": "agent",
        "installed": installed,
        "version": str(agent.get("version", "")),
        "source": "uninstall" if installed == "yes" else "",
        "service": str(agent.get("service", "Running")) if installed == "yes" else "",
        "values": values,
        "winhttp": blob.hex(),
        "path": "agent_proxy" if use else "session",
    }
    return record, use
