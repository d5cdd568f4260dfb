"""The text files the lab writes, as pure functions of the design table (easy to test and
to regenerate `inventories/lab.ini` from)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

from auditor_lab.spec import (
    CATALOG_NAMES,
    CDN_ADDRESS,
    INTERCEPT_ADDRESS,
    INTERNAL_SSH_PORT,
    LAB_WINRM_USER,
    PROBE_URL,
    SSH_PORT,
    WSMAN_PORT,
    HostKind,
    HostSpec,
    Resolution,
)

LAB_MARKER = "auditor-lab"
"""In state.json and lab.json: `lab down` removes files only from a folder that has it."""

SITE_NOTES: dict[str, str] = {
    "site_a": "firewall and name-resolution conditions (and the jump host)",
    "site_b": "proxy, TLS-interception and HTTP conditions",
    "site_c": "hosts the auditor cannot audit (host-level outcomes)",
    "scale": "plain reachable hosts added with extra_hosts",
    "win_egress": "Windows hosts (WinRM): firewall, name-resolution, proxy and TLS conditions",
    "win_winrm": "Windows hosts the auditor cannot audit (WinRM-level outcomes)",
}


def _kind_vars(kind: HostKind, key: str) -> dict[str, str]:
    if kind is HostKind.LINUX:
        return {
            "ansible_user": "root",
            "ansible_connection": "ssh",
            "ansible_ssh_private_key_file": key,
        }
    # No password here: the auditor reads it from AUDITOR_WINRM_PASSWORD (DIR/winrm_password).
    return {
        "ansible_connection": "winrm",
        "ansible_user": LAB_WINRM_USER,
        "ansible_winrm_transport": "ntlm",
        "ansible_port": str(WSMAN_PORT),
        "ansible_winrm_scheme": "http",
    }


def _ini_value(value: str) -> str:
    return f'"{value}"' if any(ch.isspace() for ch in value) else value


def _host_line(host: HostSpec, ca_trust_path: str) -> str:
    """`NAME ansible_host=ADDR`, plus the host's own connection variables where they differ
    from its group's (the Basic-over-HTTPS Windows host, and `pwsh` on PowerShell 7 hosts)."""
    line = f"{host.name} ansible_host={host.address}"
    if host.kind is HostKind.WINDOWS and host.winrm_https:
        line += (
            f" ansible_port={host.port} ansible_winrm_transport={host.winrm_auth}"
            f" ansible_winrm_scheme=https ansible_winrm_ca_trust_path={_ini_value(ca_trust_path)}"
        )
    if host.kind is HostKind.WINDOWS and host.powershell == "7":
        line += " auditor_powershell=pwsh"  # probe with PowerShell 7, installed there
    return line


def inventory(
    hosts: Sequence[HostSpec],
    key: str,
    header: Sequence[str] = (),
    ca_trust_path: str | None = None,
) -> str:
    """An Ansible INI inventory: one group per site, `[linux:children]` and
    `[windows:children]` over the sites of each kind with the connection settings in
    `[linux:vars]` and `[windows:vars]`, and `ansible_host` on every host line.

    `ca_trust_path` is the lab CA the HTTPS WinRM host's certificate is checked against
    (default: pki/lab-ca.pem beside the key)."""
    ca = ca_trust_path or str(PurePath(key).parent / "pki" / "lab-ca.pem")
    sites: dict[str, list[HostSpec]] = {}
    for host in hosts:
        sites.setdefault(host.site, []).append(host)
    out = [f"# {line}" if line else "#" for line in header]
    kinds: dict[HostKind, list[str]] = {}
    for site, members in sites.items():
        site_kinds = {h.kind for h in members}
        if len(site_kinds) != 1:
            raise ValueError(f"site {site} mixes host kinds; give each kind its own site")
        kinds.setdefault(members[0].kind, []).append(site)
        out += ["", f"# {SITE_NOTES.get(site, site)}", f"[{site}]"]
        for host in members:
            if host.site != "scale":
                out.append(f"# {host.name}: {host.condition} -> expect {host.outcome}")
            out.append(_host_line(host, ca))
        out += ["", f"[{site}:vars]", f"lab_site={site}"]
    for kind, kind_sites in kinds.items():
        out += ["", f"[{kind}:children]", *kind_sites]
        variables = _kind_vars(kind, key)
        if variables:
            out += ["", f"[{kind}:vars]", *(f"{k}={v}" for k, v in variables.items())]
    return "\n".join(out).lstrip("\n") + "\n"


def known_hosts(entries: Sequence[tuple[str, str]]) -> str:
    """known_hosts lines for (address, "ssh-ed25519 AAAA...") pairs."""
    return "".join(f"{address} {key}\n" for address, key in entries)


def lab_json(
    hosts: Sequence[HostSpec], paths: dict[str, str], services: dict[str, str], extra_hosts: int
) -> str:
    """The machine-readable description of the lab: files, services, and per host its
    address and the outcome (plus detail substring and proxy) expected for `PROBE_URL`."""
    doc: dict[str, Any] = {
        "marker": LAB_MARKER,
        "schema": 1,
        "url": PROBE_URL,
        "extra_hosts": extra_hosts,
        **paths,
        "services": services,
        "catalog_names": list(CATALOG_NAMES),
        "hosts": {
            h.name: {
                "address": h.address,
                "port": h.port,
                **({"winrm_url": h.winrm_url} if h.kind is HostKind.WINDOWS else {}),
                "site": h.site,
                "kind": str(h.kind),
                "service": h.service,
                "namespace": h.namespace,
                "outcome": str(h.outcome),
                "level": "target" if h.audited else "host",
                "detail": h.detail,
                "proxy": h.proxy,
                "condition": h.condition,
            }
            for h in hosts
        },
    }
    return json.dumps(doc, indent=2) + "\n"


def etc_hosts(host: HostSpec) -> str:
    """The namespace's /etc/hosts: its own name, and the vendor names where its condition
    sends them (the CDN, the intercepting endpoint, or nowhere)."""
    lines = [
        "127.0.0.1\tlocalhost",
        f"{host.address}\t{host.name}",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    target = {Resolution.CDN: CDN_ADDRESS, Resolution.INTERCEPT: INTERCEPT_ADDRESS}.get(
        host.resolution
    )
    if target:
        lines.append(f"# lab services ({host.resolution})")
        lines += [f"{target}\t{name}" for name in CATALOG_NAMES]
    return "\n".join(lines) + "\n"


# A nameserver on the namespace's own loopback, where nothing listens: a lookup of any name
# the hosts file lacks fails at once, and no query ever leaves the namespace.
RESOLV_CONF = (
    "# auditor lab: no reachable nameserver\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
)


def etc_shadow(password_hash: str) -> str:
    """A shadow file holding root alone, with `password_hash` (crypt(3) form)."""
    return f"root:{password_hash}:20000:0:99999:7:::\n"


def nft_ruleset(host: HostSpec) -> str:
    rules = "".join(f"\t\t{rule}\n" for rule in host.nft_rules)
    return (
        "table inet audlab {\n"
        "\tchain output {\n"
        "\t\ttype filter hook output priority 0; policy accept;\n"
        f"{rules}"
        "\t}\n"
        "}\n"
    )


def _q(value: str | Path) -> str:
    return f'"{value}"'


def sshd_config(
    host: HostSpec,
    host_dir: Path,
    authorized_keys: Path,
    session_env: Sequence[tuple[str, str]],
) -> str:
    """sshd_config for one lab host: key authentication only (passwords too for a
    `password_login` host), its own address, key, pid file and AuthorizedKeysFile, and the
    session environment that makes its condition."""
    env = " ".join(_q(f"{k}={v}") for k, v in session_env)
    lines = [
        f"# auditor lab host {host.name}: {host.condition}",
        f"ListenAddress {host.address}:{SSH_PORT}",
        *([f"ListenAddress 127.0.0.1:{INTERNAL_SSH_PORT}"] if host.tcp_forwarding else []),
        f"HostKey {_q(host_dir / 'ssh_host_ed25519_key')}",
        f"PidFile {_q(host_dir / 'sshd.pid')}",
        f"AuthorizedKeysFile {_q(authorized_keys)}",
        "UsePAM no",
        f"PasswordAuthentication {'yes' if host.password_login else 'no'}",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        f"PermitRootLogin {'yes' if host.password_login else 'prohibit-password'}",
        "StrictModes no",
        f"AllowTcpForwarding {'yes' if host.tcp_forwarding else 'no'}",
        "X11Forwarding no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "LoginGraceTime 30",
        # Audits open many sessions at once; the default (10:30:100) drops some of them.
        "MaxStartups 200:30:400",
        "Subsystem sftp internal-sftp",
    ]
    if env:
        lines.append(f"SetEnv {env}")
    return "\n".join(lines) + "\n"
