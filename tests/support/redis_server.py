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

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
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
    with os.fdopen(fd, "w") as out:
        out.write(
            f'bind 127.0.0.1\nport {port}\nrequirepass {password}\nsave ""\n'
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
        yield RedisServer(port, password, password_file, proc.pid, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
