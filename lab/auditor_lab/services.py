"""The lab's services in the root namespace: one asyncio process, started by `lab up`.

    python -m auditor_lab.services CONFIG.json

Listeners (all on lab bridge addresses; anything else in the config is refused):
- ``http``: the "CDN" (HTTPS or plain HTTP). Every path answers 200 with a small body, except
  that a listener with ``honour_503_list`` answers 503 to the source addresses on the
  config's 503 list.
- ``connect-proxy``: a forwarding proxy that tunnels ``CONNECT name:443`` to the one upstream
  in its config (the lab CDN) whatever the name: it never resolves names or dials anything
  else, and answers 403 to every other request.
- ``deny-proxy``: answers every request with 403 Forbidden.

Every request is logged (listener, source address, Host, method, path, status) to the log
file named in the config. The process writes its pid file and then its ready file once every
listener is bound, and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

from auditor_lab.spec import NETWORK

log = logging.getLogger("auditor_lab.services")

_HEAD_TIMEOUT = 15.0
_TUNNEL_LIFETIME = 300.0
_MAX_BODY = 1 << 20
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Listener:
    name: str
    kind: str
    address: str
    port: int
    cert: str = ""
    key: str = ""
    upstream: str = ""
    honour_503_list: bool = False


@dataclass(frozen=True)
class Config:
    log: Path
    pid_file: Path
    ready_file: Path
    http503_sources: frozenset[str]
    listeners: tuple[Listener, ...]


def load_config(path: Path) -> Config:
    """Read and check a services config; raises ValueError for anything outside the lab."""
    raw: dict[str, Any] = json.loads(path.read_text())
    listeners = tuple(Listener(**item) for item in raw["listeners"])
    for item in listeners:
        if item.kind not in _HANDLERS:
            raise ValueError(f"listener {item.name}: unknown kind {item.kind!r}")
        _check_lab_address(item.address, f"listener {item.name}")
        if item.kind == "connect-proxy":
            host, _, _port = item.upstream.rpartition(":")
            _check_lab_address(host, f"listener {item.name} upstream")
    return Config(
        log=Path(raw["log"]),
        pid_file=Path(raw["pid_file"]),
        ready_file=Path(raw["ready_file"]),
        http503_sources=frozenset(raw.get("http503_sources", ())),
        listeners=listeners,
    )


def _check_lab_address(address: str, what: str) -> None:
    if ipaddress.ip_address(address) not in NETWORK:
        raise ValueError(f"{what}: {address} is outside the lab network {NETWORK}")


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request head, or None at EOF, on a timeout or on garbage."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Request(parts[0].upper(), parts[1], parts[2], headers)


def _response(status: int, body: str, *, keep_alive: bool, head_only: bool = False) -> bytes:
    data = body.encode()
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "Server: auditor-lab",
        f"Date: {formatdate(usegmt=True)}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(data)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head if head_only else head + data


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else "?"


def _log_request(listener: Listener, src: str, req: Request, status: int, note: str = "") -> None:
    log.info(
        "%s src=%s host=%s method=%s path=%s status=%d%s",
        listener.name,
        src,
        req.host or "-",
        req.method,
        req.target,
        status,
        f" {note}" if note else "",
    )


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        writer.close()
        await writer.wait_closed()


def _cdn_body(listener: Listener, req: Request) -> str:
    if req.path == "/status":
        return "OK\n"
    if req.path == "/stub_status":
        return "Active connections: 1\nserver accepts handled requests\n 1 1 1\n"
    return f"{listener.name}: {req.method} {req.path}\n"


async def _serve_http(
    config: Config, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    src = _peer(writer)
    while True:
        req = await _read_request(reader)
        if req is None:
            break
        keep_alive = (
            req.version == "HTTP/1.1"
            and req.headers.get("connection", "").lower() != "close"
            and "transfer-encoding" not in req.headers
        )
        length = req.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > _MAX_BODY:
            writer.write(_response(400, "bad request\n", keep_alive=False))
            _log_request(listener, src, req, 400)
            break
        if int(length):
            try:
                await reader.readexactly(int(length))
            except (asyncio.IncompleteReadError, OSError):
                break
        if listener.honour_503_list and src in config.http503_sources:
            status, body = 503, "lab CDN: service unavailable for this client\n"
        else:
            status, body = 200, _cdn_body(listener, req)
        writer.write(_response(status, body, keep_alive=keep_alive, head_only=req.method == "HEAD"))
        _log_request(listener, src, req, status)
        try:
            await writer.drain()
        except OSError:
            break
        if not keep_alive:
            break
    await _close(writer)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if dst.can_write_eof():
                dst.write_eof()


async def _serve_connect_proxy(
    config: Config, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    src = _peer(writer)
    req = await _read_request(reader)
    if req is None:
        await _close(writer)
        return
    _name, _, port = req.target.rpartition(":")
    if req.method != "CONNECT" or port != "443":
        writer.write(
            _response(403, "lab proxy: only CONNECT to port 443 is allowed\n", keep_alive=False)
        )
        _log_request(listener, src, req, 403)
        await _close(writer)
        return
    # Whatever name was asked for, the tunnel goes to the lab CDN: nothing is resolved.
    up_host, _, up_port = listener.upstream.rpartition(":")
    try:
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(up_host, int(up_port)), 5.0
        )
    except (OSError, TimeoutError) as exc:
        writer.write(_response(502, f"lab proxy: upstream failed: {exc}\n", keep_alive=False))
        _log_request(listener, src, req, 502)
        await _close(writer)
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    _log_request(listener, src, req, 200, f"tunnel={listener.upstream}")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer)),
            _TUNNEL_LIFETIME,
        )
    await _close(up_writer)
    await _close(writer)


async def _serve_deny_proxy(
    config: Config, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    src = _peer(writer)
    req = await _read_request(reader)
    if req is not None:
        writer.write(_response(403, "Forbidden by lab proxy policy\n", keep_alive=False))
        _log_request(listener, src, req, 403)
        with contextlib.suppress(OSError):
            await writer.drain()
    await _close(writer)


_Handler = Callable[[Config, Listener, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_HANDLERS: dict[str, _Handler] = {
    "http": _serve_http,
    "connect-proxy": _serve_connect_proxy,
    "deny-proxy": _serve_deny_proxy,
}


def _tls_context(listener: Listener) -> ssl.SSLContext | None:
    if not listener.cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(listener.cert, listener.key)
    return ctx


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Failed TLS handshakes are expected (clients that refuse the intercepting CA): one line.
    exc = context.get("exception")
    log.info("connection error: %s%s", context.get("message", ""), f" ({exc})" if exc else "")


async def serve(config: Config) -> None:
    """Bind every listener, announce readiness, and serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_exception_handler)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = []
    for listener in config.listeners:
        handler = _HANDLERS[listener.kind]

        async def client(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            handler: _Handler = handler,
            listener: Listener = listener,
        ) -> None:
            try:
                await handler(config, listener, reader, writer)
            except Exception:
                log.exception("%s: handler failed", listener.name)
                await _close(writer)

        servers.append(
            await asyncio.start_server(
                client,
                listener.address,
                listener.port,
                ssl=_tls_context(listener),
                ssl_handshake_timeout=10.0 if listener.cert else None,
            )
        )
        log.info("listening: %s %s:%d", listener.name, listener.address, listener.port)
    config.pid_file.write_text(f"{os.getpid()}\n")
    config.ready_file.write_text(f"{time.time()}\n")
    await stop.wait()
    log.info("stopping")
    for server in servers:
        server.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m auditor_lab.services CONFIG.json", file=sys.stderr)
        return 2
    config = load_config(Path(argv[0]))
    handler = logging.FileHandler(config.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
