"""The lab WS-Management endpoint as a test fixture, plus the loopback servers it audits.

Every server binds to 127.0.0.1 with an OS-chosen port; the endpoint runs as a subprocess
whose users and passwords come from a 0600 config file, and is always stopped.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import socketserver
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from auditor_lab import pki
from auditor_lab.wsman import EndpointProcess
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from auditor.models import Connection, Host, Platform

USER = "auditor"
# Distinctive, so a leak anywhere (details, argv, exceptions) is found by a plain search.
PASSWORD = "Pw-7f3c9a1e-never-leak"


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that refuses: 403 for denied.*, 407 for auth.*, else 502."""

    def do_CONNECT(self) -> None:
        host = self.path.split(":", 1)[0]
        if host.startswith("auth."):
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="lab"')
        elif host.startswith("denied."):
            self.send_response(403)
        else:
            self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _DropHandshake(socketserver.BaseRequestHandler):
    """Accepts TCP and closes at once: a TLS handshake cut by a middlebox."""

    def handle(self) -> None:
        self.request.recv(1)


@dataclass(frozen=True)
class Extras:
    proxy_port: int
    drop_port: int


@contextmanager
def extra_servers() -> Iterator[Extras]:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    drop = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _DropHandshake)
    proxy.daemon_threads = True
    drop.daemon_threads = True
    servers: list[socketserver.BaseServer] = [proxy, drop]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Extras(proxy_port=proxy.server_address[1], drop_port=drop.server_address[1])
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def endpoint_tls(directory: Path) -> TlsFiles:
    """A test CA and a certificate for the endpoint at 127.0.0.1 (and localhost)."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = pki.make_authority("WinRM Test CA", "Auditor Tests")
    key, cert = pki.issue_server_cert(authority, ("localhost",), ("127.0.0.1",))
    files = TlsFiles(directory / "ca.pem", directory / "winrm.pem", directory / "winrm.key")
    files.ca.write_bytes(pki.cert_pem(authority.cert))
    files.cert.write_bytes(pki.cert_pem(cert))
    pki.write_private(files.key, pki.key_pem(key))
    return files


def clean_env() -> dict[str, str]:
    """The test's environment without proxies: the endpoint must not inherit one."""
    drop = {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}
    return {k: v for k, v in os.environ.items() if k.lower() not in drop}


@contextmanager
def endpoint(directory: Path, **config: Any) -> Iterator[EndpointProcess]:
    """Start the endpoint with `config` (users default to USER/PASSWORD); always stop it."""
    directory.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"listen": "127.0.0.1", "port": 0, "users": {USER: PASSWORD}}
    doc.update(config)
    path = directory / "wsman.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle)
    process = EndpointProcess(path, env=clean_env())
    process.start()
    try:
        yield process
    finally:
        process.stop()


def windows_host(port: int, **hostvars: Any) -> Host:
    variables: Mapping[str, Any] = {"ansible_connection": "winrm", "ansible_port": port, **hostvars}
    return Host(
        name="win-test",
        address="127.0.0.1",
        connection=Connection.WINRM,
        platform=Platform.WINDOWS,
        port=port,
        user=USER,
        vars=variables,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def audit_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# szOID_NT_PRINCIPAL_NAME: the UPN in a SAN, which WinRM's certificate mapping matches.
_UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


@dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


def client_cert(ca: pki.Authority, upn: str, directory: Path, name: str = "client") -> ClientCert:
    """A client-authentication certificate for `upn` (CN and UPN SAN), issued by `ca`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    encoded = upn.encode()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, upn.split("@")[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.OtherName(_UPN, bytes([0x0C, len(encoded)]) + encoded)]
            ),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    files = ClientCert(directory / f"{name}.pem", directory / f"{name}.key")
    files.cert.write_bytes(pki.cert_pem(cert))
    pki.write_private(files.key, pki.key_pem(key))
    return files


def thumbprint(ca: pki.Authority) -> str:
    """The CA certificate's SHA-1 thumbprint, as `New-Item WSMan:\\...\\ClientCertificate -Issuer`
    takes it."""
    return ca.cert.fingerprint(hashes.SHA1()).hex().upper()
