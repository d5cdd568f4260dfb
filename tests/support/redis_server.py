"""A real redis-server on loopback with a password, for the broker tests: started by the test,
its pid kept, stopped afterwards. The password is in its 0600 config file, never in argv."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

READY_WAIT = 60.0


@dataclass(frozen=True)
class RedisServer:
    port: int
    password: str
    password_file: Path
    pid: int
    log: Path
    ca: Path | None = None
    """With TLS: the CA that signed the server's certificate (for 127.0.0.1)."""

    @property
    def url(self) -> str:
        scheme = "rediss" if self.ca else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"


def _tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=test broker CA",
        "-days",
        "2",
    )
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=broker")
    (directory / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    )
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(directory: Path, tls: bool = False) -> Iterator[RedisServer]:
    server = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
    if server is None:
        import pytest

        pytest.skip("redis-server is not installed (make sysdeps installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    password_file = directory / "broker_password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    port = free_port()
    conf = directory / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    ca = None
    listen = f"port {port}\n"
    if tls:
        ca, cert, key = _tls_material(directory)
        listen = (
            f"port 0\ntls-port {port}\ntls-cert-file {cert}\ntls-key-file {key}\n"
            f"tls-ca-cert-file {ca}\ntls-auth-clients no\n"
        )
    with os.fdopen(fd, "w") as out:
        out.write(
            f'bind 127.0.0.1\n{listen}requirepass {password}\nsave ""\n'
            f"appendonly no\ndir {directory}\ndaemonize no\n"
        )
    log = directory / "redis.log"
    with open(log, "ab") as out_log:
        proc = subprocess.Popen(
            [server, str(conf)], stdout=out_log, stderr=out_log, start_new_session=True
        )
    try:
        deadline = time.monotonic() + READY_WAIT
        while "Ready to accept connections" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {log.read_text()[-500:]}")
            time.sleep(0.05)
        yield RedisServer(port, password, password_file, proc.pid, log, ca)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
