"""The lab's services and files, checked from the root namespace with real sockets, TLS and
ansible-inventory."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from auditor_lab import CATALOG_NAMES, HostKind, LabInfo, lab_status
from auditor_lab.spec import (
    CDN_ADDRESS,
    DENY_PROXY_PORT,
    INSPECT_PROXY_PORT,
    INTERCEPT_ADDRESS,
    PROXY_PORT,
)
from cryptography import x509
from cryptography.x509.oid import NameOID


def _exchange(address: str, port: int, request: bytes) -> bytes:
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def _lab_tls(lab: LabInfo) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(lab.ca_cert))


def test_status_reports_every_host_and_service_as_designed(lab: LabInfo) -> None:
    status = lab_status(lab.directory)
    assert status.up and status.healthy
    assert {h.name for h in status.hosts} == {h.name for h in lab.hosts}
    sshdown = next(h for h in status.hosts if h.name == "sshdown")
    assert sshdown.namespace and not sshdown.process and not sshdown.port_open


def test_cdn_certificate_covers_every_catalog_name(lab: LabInfo) -> None:
    cert = x509.load_pem_x509_certificate((lab.directory / "pki" / "cdn.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == set(CATALOG_NAMES)
    assert "cask.qg3.apps.qualys.com" in CATALOG_NAMES and "cdn.lab.test" in CATALOG_NAMES
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert issuer == "Auditor Lab Root CA"


@pytest.mark.parametrize("path", ["/status", "/stub_status", "/CloudAgent/"])
def test_cdn_answers_200_over_verified_tls(lab: LabInfo, path: str) -> None:
    with (
        socket.create_connection((CDN_ADDRESS, 443), timeout=5) as raw,
        _lab_tls(lab).wrap_socket(raw, server_hostname="qagpublic.qg1.apps.qualys.eu") as tls,
    ):
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: qagpublic.qg1.apps.qualys.eu\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


def test_intercept_endpoint_is_issued_by_an_untrusted_contoso_ca(lab: LabInfo) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection((INTERCEPT_ADDRESS, 443), timeout=5) as raw:
            _lab_tls(lab).wrap_socket(raw, server_hostname="cask.qg3.apps.qualys.com")
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((INTERCEPT_ADDRESS, 443), timeout=5) as raw,
        insecure.wrap_socket(raw, server_hostname="cask.qg3.apps.qualys.com") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    issuer = x509.load_der_x509_certificate(der).issuer.rfc4514_string()
    assert issuer == "O=Contoso Ltd,CN=Contoso SSL Inspection CA"
    bundle = (lab.directory / "etc-ssl" / "certs" / "ca-certificates.crt").read_text()
    assert lab.intercept_ca_cert.read_text() not in bundle
    assert lab.ca_cert.read_text() in bundle


def test_proxy_tunnels_any_name_to_the_lab_cdn_only(lab: LabInfo) -> None:
    with socket.create_connection((CDN_ADDRESS, PROXY_PORT), timeout=5) as raw:
        raw.sendall(b"CONNECT www.example.invalid:443 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += raw.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        # The far end is the lab CDN: its certificate verifies for a catalog name.
        with _lab_tls(lab).wrap_socket(raw, server_hostname="cdn.lab.test") as tls:
            assert tls.getpeercert() is not None
    for request in (
        b"CONNECT cask.qg3.apps.qualys.com:22 HTTP/1.1\r\n\r\n",
        b"GET http://cask.qg3.apps.qualys.com/status HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        assert _exchange(CDN_ADDRESS, PROXY_PORT, request).startswith(b"HTTP/1.1 403")
    assert "tunnel=10.213.0.1:443" in lab.services_log.read_text()


def _tunnel(port: int) -> socket.socket:
    """A CONNECT tunnel for the CDN name through the lab proxy on `port`."""
    raw = socket.create_connection((CDN_ADDRESS, port), timeout=5)
    raw.sendall(b"CONNECT cask.qg3.apps.qualys.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += raw.recv(1)
    assert head.startswith(b"HTTP/1.1 200")
    return raw


def test_the_inspecting_proxy_presents_the_inspection_cas_certificate(lab: LabInfo) -> None:
    """Every tunnel through the TLS-inspecting proxy ends at the intercepting endpoint: the
    vendor name is answered with a certificate the inspection CA issued, which verifies
    against that CA alone and answers 200."""
    with _tunnel(INSPECT_PROXY_PORT) as raw, pytest.raises(ssl.SSLCertVerificationError):
        _lab_tls(lab).wrap_socket(raw, server_hostname="cask.qg3.apps.qualys.com")
    inspection = ssl.create_default_context(cafile=str(lab.intercept_ca_cert))
    with (
        _tunnel(INSPECT_PROXY_PORT) as raw,
        inspection.wrap_socket(raw, server_hostname="cask.qg3.apps.qualys.com") as tls,
    ):
        tls.sendall(b"GET /status HTTP/1.1\r\nHost: cask.qg3.apps.qualys.com\r\n\r\n")
        assert tls.recv(64).startswith(b"HTTP/1.1 200")
    assert "tunnel=10.213.0.2:443" in lab.services_log.read_text()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"CONNECT cask.qg3.apps.qualys.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://cask.qg3.apps.qualys.com/status HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_deny_proxy_forbids_everything(lab: LabInfo, request_bytes: bytes) -> None:
    answer = _exchange(CDN_ADDRESS, DENY_PROXY_PORT, request_bytes)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert answer.endswith(b"Forbidden by lab proxy policy\n")


def test_services_listen_on_lab_addresses_only(lab: LabInfo) -> None:
    pid = (lab.directory / "services.pid").read_text().strip()
    lines = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    mine = [line.split()[3] for line in lines.splitlines() if f"pid={pid}," in line]
    assert sorted(mine) == sorted(
        [
            "10.213.0.1:443",
            "10.213.0.1:80",
            "10.213.0.2:443",
            "10.213.0.1:3128",
            "10.213.0.1:3129",
            "10.213.0.1:3131",
        ]
    )


def test_namespace_files_give_each_host_its_names_resolver_and_trust(lab: LabInfo) -> None:
    for host in lab.hosts:
        etc = Path("/etc/netns") / host.namespace
        hosts_file = (etc / "hosts").read_text()
        assert re.search(rf"^{re.escape(host.address)}\s+{host.name}$", hosts_file, re.M)
        assert "nameserver 127.0.0.1" in (etc / "resolv.conf").read_text()
        assert (etc / "ssl" / "certs" / "ca-certificates.crt").exists()
        condition = re.sub(r"^win7?-", "", host.name)  # Windows hosts repeat the conditions
        expected = {"nodns": None, "intercept": INTERCEPT_ADDRESS}.get(condition, CDN_ADDRESS)
        for name in CATALOG_NAMES:
            mapped = re.search(rf"^(\S+)\s+{re.escape(name)}$", hosts_file, re.M)
            assert (mapped.group(1) if mapped else None) == expected, (host.name, name)


def test_known_hosts_matches_each_sshd_except_rekeyed(lab: LabInfo) -> None:
    recorded = dict(line.split(" ", 1) for line in lab.known_hosts.read_text().splitlines())
    for host in lab.hosts:
        if host.kind is not HostKind.LINUX:
            continue  # Windows hosts speak WinRM (tests/lab/test_lab_windows.py)
        pub = lab.directory / "hosts" / host.name / "ssh_host_ed25519_key.pub"
        actual = " ".join(pub.read_text().split()[:2])
        assert (recorded[host.address] == actual) is (host.name != "rekeyed")


def test_lab_json_describes_every_host(lab: LabInfo) -> None:
    desc = json.loads(lab.lab_json.read_text())
    assert desc["url"] == lab.url == "https://cask.qg3.apps.qualys.com/status"
    assert desc["inventory"] == str(lab.inventory)
    for host in lab.hosts:
        row = desc["hosts"][host.name]
        assert (row["address"], row["outcome"], row["detail"]) == (
            host.address,
            str(host.outcome),
            host.detail,
        )
    assert desc["hosts"]["intercept"]["detail"] == "Contoso SSL Inspection CA"
    assert desc["hosts"]["rekeyed"]["outcome"] == "host_key_changed"


def test_inventory_reads_back_through_ansible_inventory(lab: LabInfo, tmp_path: Path) -> None:
    tool = Path(sys.executable).with_name("ansible-inventory")
    if not tool.exists():
        pytest.skip("ansible-inventory (ansible-core) is not installed")
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    out = subprocess.run(
        [str(tool), "-i", str(lab.inventory), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout
    inv = json.loads(out)
    assert sorted(inv["linux"]["children"]) == ["site_a", "site_agent", "site_b", "site_c"]
    hostvars = inv["_meta"]["hostvars"]
    assert set(hostvars) == {h.name for h in lab.hosts}
    for host in lab.hosts:
        assert hostvars[host.name]["ansible_host"] == host.address
        if host.kind is not HostKind.LINUX:
            continue  # Windows hosts' variables: tests/lab/test_lab_windows.py
        assert hostvars[host.name]["ansible_user"] == "root"
        assert hostvars[host.name]["ansible_connection"] == "ssh"
        assert hostvars[host.name]["ansible_ssh_private_key_file"] == str(lab.key)
        assert host.name in inv[host.site]["hosts"]
