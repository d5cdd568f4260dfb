"""Small HTTP(S) servers and a denying proxy on 127.0.0.1, for tests of the local transport.

Everything binds to loopback with an OS-chosen port and is shut down by the fixture that
started it.
"""

from __future__ import annotations

import datetime as dt
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        ]
    )


def make_ca(
    directory: Path, cn: str, org: str
) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(_name(cn, org))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{cn.replace(' ', '_')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_leaf(
    directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: list[str]
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0], "Loopback Test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    stem = directory / f"leaf-{ca_cert.serial_number}"
    cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 503 if self.path.startswith("/fail") else 200
        body = b"ok\n" if status == 200 else b"unavailable\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


class _DenyProxy(BaseHTTPRequestHandler):
    def do_CONNECT(self) -> None:
        body = b"denied by policy\n"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_CONNECT

    def log_message(self, *args: object) -> None:
        pass


class _Silent(socketserver.BaseRequestHandler):
    """Accepts and never answers: a black hole after the TCP handshake."""

    def handle(self) -> None:
        self.server.stop_event.wait(30)  # type: ignore[attr-defined]


@dataclass
class Loopback:
    http_port: int
    https_port: int
    untrusted_port: int
    silent_port: int
    proxy_port: int
    closed_port: int
    ca_bundle: Path


@contextmanager
def loopback_servers(directory: Path) -> Iterator[Loopback]:
    ca_path, ca_key, ca_cert = make_ca(directory, "Loopback Test CA", "Auditor Tests")
    _, bad_key, bad_cert = make_ca(directory, "Contoso SSL Inspection CA", "Contoso Ltd")
    good_crt, good_key = make_leaf(directory, ca_key, ca_cert, ["localhost", "127.0.0.1"])
    bad_crt, bad_leaf_key = make_leaf(directory, bad_key, bad_cert, ["localhost", "127.0.0.1"])

    servers: list[socketserver.BaseServer] = []
    stop = threading.Event()

    def serve(server: socketserver.BaseServer) -> int:
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return int(server.server_address[1])  # type: ignore[index]

    def tls(crt: Path, key: Path) -> ThreadingHTTPServer:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        return srv

    silent = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Silent)
    silent.daemon_threads = True
    silent.stop_event = stop  # type: ignore[attr-defined]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    try:
        yield Loopback(
            http_port=serve(ThreadingHTTPServer(("127.0.0.1", 0), _Handler)),
            https_port=serve(tls(good_crt, good_key)),
            untrusted_port=serve(tls(bad_crt, bad_leaf_key)),
            silent_port=serve(silent),
            proxy_port=serve(ThreadingHTTPServer(("127.0.0.1", 0), _DenyProxy)),
            closed_port=closed,
            ca_bundle=ca_path,
        )
    finally:
        stop.set()
        for server in servers:
            server.shutdown()
            server.server_close()


@contextmanager
def _serving(server: socketserver.BaseServer) -> Iterator[int]:
    """Serve `server` on a thread; yield its port; shut it down afterwards."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])  # type: ignore[index]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def tls_server(crt: Path, key: Path) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 presenting `crt`; yields its port."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with _serving(srv) as port:
        yield port


@dataclass
class AuthProxy:
    """A CONNECT proxy that wants Basic credentials. A request with the right ones is held
    until `release` is set (`holding` is set meanwhile), then tunnelled to `upstream`."""

    port: int
    holding: threading.Event
    release: threading.Event
    authorized: list[str]


@contextmanager
def auth_proxy(user: str, password: str, upstream: int) -> Iterator[AuthProxy]:
    import base64

    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    holding, release = threading.Event(), threading.Event()
    authorized: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:
            if self.headers.get("Proxy-Authorization") != expected:
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="loopback"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            authorized.append(self.path)
            holding.set()
            release.wait(30)
            with socket.create_connection(("127.0.0.1", upstream), timeout=10) as up:
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                _relay(self.connection, up)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    try:
        with _serving(srv) as port:
            yield AuthProxy(port, holding, release, authorized)
    finally:
        release.set()


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select(timeout=10):
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        sel.close()


@dataclass
class Crowd:
    """An HTTP server that counts the connections open at once (`peak`)."""

    port: int
    peak: list[int]


@contextmanager
def crowd_server(release_at: int, hold: float) -> Iterator[Crowd]:
    """Each request is held until `release_at` requests are open together, or for `hold`
    seconds: a client that keeps fewer open waits out the hold, one that opens more at once
    is seen doing so (`peak`)."""
    lock = threading.Condition()
    state = {"open": 0, "wave": 0}
    peak = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                state["open"] += 1
                peak[0] = max(peak[0], state["open"])
                # Every request open when the crowd is complete goes, even those that see
                # the count fall again before they wake.
                wave = state["wave"]
                if state["open"] >= release_at:
                    state["wave"] += 1
                lock.notify_all()
                lock.wait_for(lambda: state["wave"] > wave, timeout=hold)
                # Counted out before the answer leaves: a client cannot see its answer (and
                # open its next request) while this one still counts as open.
                state["open"] -= 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with _serving(srv) as port:
        yield Crowd(port, peak)


@contextmanager
def raw_http_server(response: bytes) -> Iterator[int]:
    """Answers every request with `response`, byte for byte, then closes."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            self.wfile.write(response)

    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with _serving(srv) as port:
        yield port
