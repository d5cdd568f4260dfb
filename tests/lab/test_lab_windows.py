"""The lab's Windows hosts themselves: a WS-Management endpoint per network namespace, the
inventory that describes them, and where the WinRM password may (and may not) be.

The audits of these hosts are in tests/transports/test_winrm_lab.py."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import LabInfo, lab_down, lab_status, lab_up, render
from auditor_lab.netns import NETNS_DIR, Proc, alive
from auditor_lab.spec import (
    DENY_PROXY_URL,
    LAB_WINRM_USER,
    WSMAN_HTTPS_PORT,
    WSMAN_PORT,
    HostKind,
    HostSpec,
    design_hosts,
    fleet,
    windows_hosts,
)
from auditor_lab.windows import CONFIG_FILE, endpoint_config, machine_name
from cryptography import x509
from cryptography.x509.oid import NameOID
from winrm.exceptions import WinRMTransportError
from winrm.protocol import Protocol

from auditor.inventory import load_inventory
from auditor.models import Connection, Platform
from auditor.secret import Secret
from auditor.transports.winrm import WinRMTransport

NoLabLeft = Any  # the `no_lab_left` fixture (tests/lab/conftest.py)
WINDOWS = {spec.name: spec for spec in windows_hosts()}


def _windows(lab: LabInfo) -> list[HostSpec]:
    return [h for h in lab.hosts if h.kind is HostKind.WINDOWS]


def _password(lab: LabInfo) -> str:
    assert lab.winrm_password is not None
    return lab.winrm_password.read_text().strip()


def _state_procs(directory: Path) -> dict[str, Proc]:
    state = json.loads((directory / "state.json").read_text())
    return {p["role"]: Proc(p["pid"], p["start"], p["role"]) for p in state["processes"]}


# --- the design (pure: no root, no lab) --------------------------------------------------


def test_windows_design_covers_every_condition_with_its_own_namespace() -> None:
    outcomes = {h.name: str(h.outcome) for h in windows_hosts()}
    assert outcomes == {
        "win-direct": "reachable",
        "win-https": "reachable",
        "win-reject": "refused",
        "win-blackhole": "timeout",
        "win-nodns": "dns_failure",
        "win-proxydeny": "proxy_denied",
        "win-intercept": "tls_failure",
        "win-noauth": "auth_failed",
        "win-down": "unreachable",
        "win-hang": "session_timeout",
        "win-quota": "error",
        "win7-direct": "reachable",
        "win7-reject": "refused",
        "win7-blackhole": "timeout",
        "win7-nodns": "dns_failure",
        "win7-proxydeny": "proxy_denied",
        "win7-intercept": "tls_failure",
        "win7-http503": "http_error",
    }
    assert all(h.namespace.startswith("audlab-win") for h in windows_hosts())
    # The PowerShell 7 hosts are the win7-* ones, each on an address of its own.
    assert {h.name for h in windows_hosts() if h.powershell == "7"} == {
        n for n in WINDOWS if n.startswith("win7-")
    }
    assert {h.powershell for h in windows_hosts()} == {"5.1", "7"}
    assert all(h.detail for h in windows_hosts())
    ports = {h.name: h.port for h in windows_hosts()}
    assert ports.pop("win-https") == WSMAN_HTTPS_PORT
    assert set(ports.values()) == {WSMAN_PORT}
    # Linux and Windows hosts share the fleet without clashing.
    names = [h.name for h in fleet(10)]
    addresses = [h.address for h in fleet(10)]
    assert len(set(names)) == len(names) and len(set(addresses)) == len(addresses)
    assert {h.name for h in design_hosts()}.isdisjoint(WINDOWS)


def test_inventory_gives_windows_hosts_winrm_settings_and_no_password() -> None:
    text = render.inventory(fleet(), "/srv/lab/id_ed25519")
    assert (
        "[windows:children]\nwin_egress\nwin_winrm\n\n[windows:vars]\n"
        "ansible_connection=winrm\nansible_user=labadmin\nansible_winrm_transport=ntlm\n"
        "ansible_port=5985\nansible_winrm_scheme=http\n"
    ) in text
    https = WINDOWS["win-https"]
    assert (
        f"\nwin-https ansible_host={https.address} ansible_port=5986 "
        "ansible_winrm_transport=basic ansible_winrm_scheme=https "
        "ansible_winrm_ca_trust_path=/srv/lab/pki/lab-ca.pem\n"
    ) in text
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert [line for line in settings if "pass" in line.lower()] == []


def test_endpoint_configs_make_each_hosts_condition(tmp_path: Path) -> None:
    configs = {
        name: endpoint_config(spec, tmp_path / name, "lab-password")
        for name, spec in WINDOWS.items()
        if spec.service == "wsman"
    }
    assert set(WINDOWS) - set(configs) == {"win-down"}  # nothing listens there
    for name, doc in configs.items():
        assert (doc["listen"], doc["port"]) == (WINDOWS[name].address, WINDOWS[name].port)
        assert doc["network"]["system_dns"] is True  # the namespace's own resolver
        assert doc["machine"]["hostname"] == machine_name(WINDOWS[name]) == name.upper()
    assert configs["win-direct"]["users"] == {LAB_WINRM_USER: "lab-password"}
    assert configs["win-direct"]["auth"] == ["ntlm"] and "tls" not in configs["win-direct"]
    assert configs["win-https"]["auth"] == ["basic"]
    assert configs["win-https"]["tls"]["cert"] == str(tmp_path / "win-https" / "winrm.pem")
    other = configs["win-noauth"]["users"][LAB_WINRM_USER]
    assert other and other != "lab-password"
    assert configs["win-proxydeny"]["network"]["proxy"] == f"{DENY_PROXY_URL}/"
    assert configs["win-direct"]["network"]["proxy"] is None
    assert (configs["win-hang"]["behaviour"], configs["win-quota"]["behaviour"]) == (
        "hang",
        "quota",
    )
    assert {n: doc["powershell"] for n, doc in configs.items()} == {
        n: ("7" if n.startswith("win7-") else "5.1") for n in configs
    }


# --- the shared lab ------------------------------------------------------------------------


def test_each_windows_host_runs_its_endpoint_inside_its_own_namespace(lab: LabInfo) -> None:
    procs = _state_procs(lab.directory)
    status = {h.name: h for h in lab_status(lab.directory).hosts}
    secret = _password(lab).encode()
    for host in _windows(lab):
        assert status[host.name].healthy, status[host.name]
        if host.service == "none":
            assert (NETNS_DIR / host.namespace).exists()
            assert not status[host.name].port_open
            assert f"wsman:{host.name}" not in procs
            continue
        proc = procs[f"wsman:{host.name}"]
        assert alive(proc)
        assert (
            os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat(NETNS_DIR / host.namespace).st_ino
        )
        argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        config = lab.directory / "hosts" / host.name / CONFIG_FILE
        module = [b"-m", b"auditor_lab.wsman", b"--config", str(config).encode()]
        assert argv == [sys.executable.encode(), *module]
        assert secret not in Path(f"/proc/{proc.pid}/environ").read_bytes()
        # Its own UTS namespace, named for the host.
        uts = subprocess.run(
            ["nsenter", "--uts", "-t", str(proc.pid), "hostname"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert uts.stdout.strip() == host.name


def test_the_inventory_reads_back_as_winrm_hosts_for_the_auditor_and_for_ansible(
    lab: LabInfo, tmp_path: Path
) -> None:
    inventory = load_inventory(lab.inventory)
    by_name = {h.name: h for h in inventory.hosts}
    transport = WinRMTransport(password=Secret(_password(lab)))
    for spec in _windows(lab):
        host = by_name[spec.name]
        assert (host.connection, host.platform) == (Connection.WINRM, Platform.WINDOWS)
        assert "windows" in host.groups
        endpoint = transport.endpoint(host)
        assert endpoint.url == spec.winrm_url
        assert endpoint.auth == spec.winrm_auth
        assert endpoint.user == LAB_WINRM_USER
        assert endpoint.validate_cert
        assert endpoint.ca_bundle == (str(lab.ca_cert) if spec.winrm_https else None)
    tool = Path(sys.executable).with_name("ansible-inventory")
    if not tool.exists():
        pytest.skip("ansible-inventory (ansible-core) is not installed")
    out = subprocess.run(
        [str(tool), "-i", str(lab.inventory), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path)},
        timeout=60,
    ).stdout
    inv = json.loads(out)
    assert sorted(inv["windows"]["children"]) == ["win_egress", "win_winrm"]
    hostvars = inv["_meta"]["hostvars"]
    for spec in _windows(lab):
        hv = hostvars[spec.name]
        assert hv["ansible_connection"] == "winrm"
        assert hv["ansible_user"] == LAB_WINRM_USER
        assert hv["ansible_winrm_transport"] == spec.winrm_auth
        assert str(hv["ansible_port"]) == str(spec.port)
        assert hv["ansible_winrm_scheme"] == ("https" if spec.winrm_https else "http")
        assert not [k for k in hv if "pass" in k]


def test_the_password_is_only_in_its_own_file_and_the_endpoint_configs(lab: LabInfo) -> None:
    assert lab.winrm_password == lab.directory / "winrm_password"
    secret = _password(lab)
    assert len(secret) >= 20
    assert stat.S_IMODE(lab.winrm_password.stat().st_mode) == 0o600
    allowed = {lab.winrm_password}
    for host in _windows(lab):
        config = lab.directory / "hosts" / host.name / CONFIG_FILE
        if host.service == "none":
            assert not config.exists()
            continue
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        users = json.loads(config.read_text())["users"]
        # The auth_failed host knows the user by another password, not the lab's.
        assert (users[LAB_WINRM_USER] == secret) is host.authorized, host.name
        allowed.add(config)
        private = lab.directory / "hosts" / host.name / "tmp"
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    leaks = []
    roots = [lab.directory, *(Path("/etc/netns") / h.namespace for h in lab.hosts)]
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            # The endpoints' private NTLM user files live in their 0700 tmp folders.
            dirnames[:] = [d for d in dirnames if d not in ("tmp", "etc-ssl", "nocurl-bin")]
            for filename in filenames:
                path = Path(dirpath) / filename
                if path in allowed or not path.is_file():
                    continue
                if secret.encode() in path.read_bytes():
                    leaks.append(path)
    assert leaks == []
    desc = json.loads(lab.lab_json.read_text())
    assert desc["winrm_password"] == str(lab.winrm_password)
    assert desc["winrm_user"] == LAB_WINRM_USER


def test_the_https_endpoint_presents_a_lab_ca_certificate_for_its_address(
    lab: LabInfo,
) -> None:
    host = lab.host("win-https")
    context = ssl.create_default_context(cafile=str(lab.ca_cert))
    with (
        socket.create_connection((host.address, host.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host.address) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert issuer == "Auditor Lab Root CA"


def _protocol(host: HostSpec, password: str, **options: Any) -> Protocol:
    return Protocol(
        host.winrm_url,
        transport="ntlm",
        username=LAB_WINRM_USER,
        password=password,
        operation_timeout_sec=2,
        read_timeout_sec=5,
        proxy=None,
        ca_trust_path=None,
        **options,
    )


def test_the_ntlm_endpoints_demand_the_lab_password_and_message_encryption(
    lab: LabInfo,
) -> None:
    host = lab.host("win-direct")
    protocol = _protocol(host, _password(lab))
    shell = protocol.open_shell()
    protocol.close_shell(shell)
    with pytest.raises(WinRMTransportError) as refused:
        _protocol(host, _password(lab), message_encryption="never").open_shell()
    assert refused.value.code == 400  # like WinRM with AllowUnencrypted=false
    with pytest.raises(Exception, match="credentials were rejected"):
        _protocol(host, "not-" + _password(lab)).open_shell()


def test_firewall_conditions_are_loaded_in_the_windows_namespaces(lab: LabInfo) -> None:
    for name, verdict in (("win-reject", "reject with tcp reset"), ("win-blackhole", "drop")):
        ruleset = subprocess.run(
            ["ip", "netns", "exec", lab.host(name).namespace, "nft", "list", "ruleset"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"ip daddr 10.213.0.1 tcp dport 443 {verdict}" in ruleset, ruleset


# --- a lab of its own: up and down ---------------------------------------------------------


@pytest.mark.lab_exclusive
@pytest.mark.usefixtures("lab_slot")
def test_lab_up_starts_windows_hosts_fast_and_down_removes_them_and_their_secrets(
    tmp_path: Path,
    no_lab_left: NoLabLeft,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    lab = lab_up(tmp_path / "lab")
    up = time.monotonic() - started
    procs = list(_state_procs(lab.directory).values())
    try:
        wsman = [p for p in procs if p.role.startswith("wsman:")]
        assert len(wsman) == sum(1 for h in _windows(lab) if h.service == "wsman")
        assert lab_status(lab.directory).healthy
    finally:
        removed = lab_down(tmp_path / "lab")
    no_lab_left(procs)
    assert not (tmp_path / "lab").exists()
    assert str(tmp_path / "lab" / "winrm_password") in removed
    marker = str(tmp_path / "lab").encode()
    cmdlines = [_read(f"/proc/{pid}/cmdline") for pid in os.listdir("/proc") if pid.isdigit()]
    assert [c for c in cmdlines if b"auditor_lab.wsman" in c and marker in c] == []
    print(f"\nlab up with {len(_windows(lab))} Windows hosts: {up:.2f}s {lab.timings}")
    record_property("lab_up_with_windows_seconds", round(up, 2))
    assert up < 20


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""
