"""The SSH transport (asyncssh): one connection per host, the probe on stdin of one session.

Errors are mapped onto host-level outcomes by exception type, in one place (`_classify`),
never by parsing message text.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import asyncssh

from auditor.errors import HostLevelError, InputError
from auditor.models import Connection, Host, Platform
from auditor.outcomes import HostOutcome
from auditor.secret import Secret, inventory_secret
from auditor.transports.base import MAX_OUTPUT_BYTES, ProbeJob, RawOutput, Transport
from auditor.transports.endpoint import Endpoint, JumpSpec, resolve_endpoint
from auditor.transports.sshconfig import SSHConfigReader, default_config_path

PASSPHRASE_ENV = "AUDITOR_SSH_KEY_PASSPHRASE"  # noqa: S105 - a variable name, not a secret


class HostKeyPolicy(StrEnum):
    STRICT = "strict"
    ACCEPT_NEW = "accept-new"
    NONE = "none"


@dataclass(frozen=True)
class SSHOptions:
    """Run-wide SSH settings; inventory variables override them per host."""

    user: str | None = None
    keys: tuple[Path, ...] = ()
    known_hosts: Path | None = None
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    jump_host: str | None = None
    ssh_config: Path | None = None
    password: Secret | None = field(default=None, repr=False)
    passphrase: Secret | None = field(default=None, repr=False)
    connect_timeout: float = 10.0


def ssh_options_from(opts: Mapping[str, Any]) -> SSHOptions:
    """Build SSHOptions from the CLI's parsed options."""
    policy = HostKeyPolicy.STRICT
    if opts.get("no_host_key_check"):
        policy = HostKeyPolicy.NONE
    elif opts.get("accept_new_host_keys"):
        policy = HostKeyPolicy.ACCEPT_NEW
    passwords = opts.get("passwords") or {}
    passphrase = os.environ.get(PASSPHRASE_ENV)
    return SSHOptions(
        user=opts.get("user"),
        keys=tuple(Path(k) for k in opts.get("ssh_keys") or ()),
        known_hosts=opts.get("known_hosts"),
        host_key_policy=policy,
        jump_host=opts.get("jump_host"),
        ssh_config=opts.get("ssh_config"),
        password=passwords.get("ssh"),
        passphrase=Secret(passphrase) if passphrase else None,
        connect_timeout=float(opts.get("connect_timeout", 10.0)),
    )


class _HostKeyCheck(asyncssh.SSHClient):
    """Decides about a host key that is not in known_hosts, and remembers why it refused."""

    def __init__(self, transport: SSHTransport) -> None:
        self._transport = transport
        self.refused: HostOutcome | None = None
        self.accepted_key: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        known = self._transport.known_keys_for(host, addr, port)
        if known:
            self.refused = HostOutcome.HOST_KEY_CHANGED
            return False
        if self._transport.options.host_key_policy is HostKeyPolicy.ACCEPT_NEW:
            self.accepted_key = key
            return True
        self.refused = HostOutcome.HOST_KEY_UNKNOWN
        return False


class SSHTransport(Transport):
    name = "ssh"

    def __init__(self, options: SSHOptions) -> None:
        self.options = options
        self._known: asyncssh.SSHKnownHosts | None = None
        self._known_loaded = False
        self._keys: dict[tuple[tuple[Path, ...], bool], list[asyncssh.SSHKey] | None] = {}
        self._jumps: dict[JumpSpec, asyncio.Task[asyncssh.SSHClientConnection]] = {}
        self._record_lock = asyncio.Lock()
        self._base: asyncssh.SSHClientConnectionOptions | None = None
        self._config = SSHConfigReader(options.ssh_config or default_config_path())

    # -- host keys -------------------------------------------------------------------------

    def _known_hosts_path(self) -> Path:
        return self.options.known_hosts or Path.home() / ".ssh" / "known_hosts"

    def known_hosts(self) -> asyncssh.SSHKnownHosts | None:
        """The known_hosts file, read once per run."""
        if not self._known_loaded:
            self._known_loaded = True
            path = self._known_hosts_path()
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = ""
            except OSError as exc:
                raise InputError(f"cannot read known_hosts: {exc.strerror}", str(path)) from None
            try:
                self._known = asyncssh.import_known_hosts(text)
            except (ValueError, asyncssh.KeyImportError) as exc:
                raise InputError(f"bad known_hosts file: {exc}", str(path)) from None
        return self._known

    def known_keys_for(self, host: str, addr: str, port: int) -> list[asyncssh.SSHKey]:
        known = self.known_hosts()
        if known is None:
            return []
        keys: list[asyncssh.SSHKey] = list(known.match(host, addr, port)[0])
        return keys

    async def _record_key(self, address: str, port: int, key: asyncssh.SSHKey) -> None:
        """Trust on first use: append the new key to known_hosts."""
        name = address if port == 22 else f"[{address}]:{port}"
        line = f"{name} {key.export_public_key('openssh').decode().strip()}\n"
        path = self._known_hosts_path()
        async with self._record_lock:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)

    # -- credentials -----------------------------------------------------------------------

    def endpoint(self, host: Host, *, follow_jump: bool = True) -> Endpoint:
        """Resolve address, port, user, keys and jump host for `host`."""
        return resolve_endpoint(host, self.options, self._config, follow_jump=follow_jump)

    def _client_keys(self, endpoint: Endpoint) -> list[asyncssh.SSHKey] | None:
        """The endpoint's keys, loaded once per run for each distinct set of key files
        (read from disk per host, they would be per-host work on a fleet of thousands)."""
        cache_key = (endpoint.key_files, endpoint.keys_required)
        if cache_key not in self._keys:
            self._keys[cache_key] = self._load_keys(endpoint.key_files, endpoint.keys_required)
        return self._keys[cache_key]

    def _load_keys(self, paths: tuple[Path, ...], required: bool) -> list[asyncssh.SSHKey] | None:
        if not required:
            paths = tuple(p for p in paths if p.exists())
        if not paths:
            return None  # asyncssh's defaults: the agent and ~/.ssh/id_*
        passphrase = self.options.passphrase.reveal() if self.options.passphrase else None
        loaded = []
        for path in paths:
            try:
                loaded.append(asyncssh.read_private_key(path, passphrase))
            except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                raise InputError(f"cannot load SSH key: {reason}", str(path)) from None
        return loaded

    def _base_options(self) -> asyncssh.SSHClientConnectionOptions:
        """Options shared by every connection, processed once (that work is per-connection
        CPU otherwise)."""
        if self._base is None:
            policy = self.options.host_key_policy
            kwargs: dict[str, Any] = {
                "known_hosts": None if policy is HostKeyPolicy.NONE else self.known_hosts(),
                "connect_timeout": self.options.connect_timeout,
                "login_timeout": self.options.connect_timeout,
                "keepalive_interval": 15,
                "keepalive_count_max": 2,
                # The config is resolved per host by `endpoint`; asyncssh applying it again
                # to an address that is already resolved would match the wrong Host blocks.
                "config": None,
            }
            if self.options.password is not None:
                kwargs["password"] = self.options.password.reveal()
            if self.options.user:
                kwargs["username"] = self.options.user
            self._base = asyncssh.SSHClientConnectionOptions(**kwargs)
        return self._base

    async def _jump(self, spec: JumpSpec, timeout: float) -> asyncssh.SSHClientConnection:
        """One shared connection per jump host, opened on first use."""
        task = self._jumps.get(spec)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.ensure_future(self._open_jump(spec))
            self._jumps[spec] = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise HostLevelError(
                HostOutcome.UNREACHABLE,
                f"jump host {spec.host}: no connection within {timeout:g} s",
            ) from None
        except HostLevelError as exc:
            raise HostLevelError(exc.outcome, f"jump host {spec.host}: {exc.detail}") from None

    async def _open_jump(self, spec: JumpSpec) -> asyncssh.SSHClientConnection:
        jump_host = Host(
            name=spec.host,
            address=spec.host,
            connection=Connection.SSH,
            platform=Platform.LINUX,
            port=spec.port,
            user=spec.user,
        )
        endpoint = self.endpoint(jump_host, follow_jump=False)
        conn, _ = await self._connect(jump_host, endpoint, None, self.options.connect_timeout)
        return conn

    # -- connecting ------------------------------------------------------------------------

    async def _connect(
        self,
        host: Host,
        endpoint: Endpoint,
        tunnel: asyncssh.SSHClientConnection | None,
        timeout: float,
    ) -> tuple[asyncssh.SSHClientConnection, _HostKeyCheck]:
        address, port = endpoint.address, endpoint.port
        checker = _HostKeyCheck(self)
        kwargs: dict[str, Any] = {"options": self._base_options()}
        if endpoint.user:
            kwargs["username"] = endpoint.user
        keys = self._client_keys(endpoint)
        if keys is not None:
            kwargs["client_keys"] = keys
        try:
            password = inventory_secret(
                host.name, host.vars, "ansible_password", "ansible_ssh_pass"
            )
        except InputError as exc:
            raise HostLevelError(HostOutcome.ERROR, exc.message) from None
        if password is not None:
            kwargs["password"] = password.reveal()
        try:
            if tunnel is not None:
                conn = await asyncssh.connect(
                    address,
                    port,
                    tunnel=tunnel,
                    client_factory=lambda: checker,
                    **kwargs,
                )
            else:
                sock = await _tcp_connect(address, port, min(timeout, self.options.connect_timeout))
                try:
                    conn = await asyncssh.connect(
                        address, port, sock=sock, client_factory=lambda: checker, **kwargs
                    )
                except BaseException:
                    sock.close()
                    raise
        except HostLevelError:
            raise
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise _classify(exc, checker, address, port) from None
        if checker.accepted_key is not None:
            await self._record_key(address, port, checker.accepted_key)
        return conn, checker

    async def run(self, host: Host, job: ProbeJob, timeout: float) -> RawOutput:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        endpoint = self.endpoint(host)
        tunnel = await self._jump(endpoint.jump, timeout) if endpoint.jump is not None else None
        remaining = deadline - loop.time()
        try:
            async with asyncio.timeout(remaining):
                conn, _ = await self._connect(host, endpoint, tunnel, remaining)
        except TimeoutError:
            raise HostLevelError(
                HostOutcome.SESSION_TIMEOUT,
                f"connected to {endpoint.address} but SSH did not complete within {timeout:g} s",
            ) from None
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                return await _run_probe(conn, job)
        except TimeoutError:
            raise HostLevelError(
                HostOutcome.SESSION_TIMEOUT,
                f"the probe did not finish within the {timeout:g} s deadline",
            ) from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError) as exc:
            raise HostLevelError(
                HostOutcome.ERROR, f"SSH connection lost while the probe ran: {_reason(exc)}"
            ) from None
        except asyncssh.ChannelOpenError as exc:
            raise HostLevelError(
                HostOutcome.ERROR, f"the host refused a session channel: {_reason(exc)}"
            ) from None
        finally:
            conn.close()

    async def close(self) -> None:
        for task in self._jumps.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
            else:
                task.cancel()
        self._jumps.clear()


async def _tcp_connect(address: str, port: int, timeout: float) -> socket.socket:
    """Connect TCP ourselves, so 'no route / refused / dropped' (unreachable) is told apart
    from 'accepted TCP, then SSH hung' (session_timeout)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HostLevelError(
            HostOutcome.UNREACHABLE, f"cannot resolve {address}: {exc.strerror}"
        ) from None
    except TimeoutError:
        raise HostLevelError(HostOutcome.UNREACHABLE, f"resolving {address} timed out") from None
    last: str = "no address"
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, sockaddr)
            return sock
        except TimeoutError:
            sock.close()
            last = f"TCP connect to {address}:{port} timed out after {timeout:g} s"
        except OSError as exc:
            sock.close()
            last = f"TCP connect to {address}:{port}: {_os_reason(exc)}"
        except BaseException:
            sock.close()
            raise
    raise HostLevelError(HostOutcome.UNREACHABLE, last)


def _os_reason(exc: OSError) -> str:
    # asyncio's sock_connect puts its own text in strerror; the errno says it plainly.
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return " ".join(str(reason).split())[:300]


def _classify(
    exc: BaseException, checker: _HostKeyCheck, address: str, port: int
) -> HostLevelError:
    where = f"{address}:{port}"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        outcome = checker.refused or HostOutcome.HOST_KEY_UNKNOWN
        if outcome is HostOutcome.HOST_KEY_CHANGED:
            return HostLevelError(
                outcome,
                f"host key for {where} differs from the one recorded in known_hosts",
            )
        return HostLevelError(outcome, f"no key for {where} in known_hosts")
    if isinstance(exc, asyncssh.PermissionDenied):
        return HostLevelError(HostOutcome.AUTH_FAILED, f"{where}: {_reason(exc)}")
    if isinstance(exc, TimeoutError):
        return HostLevelError(
            HostOutcome.SESSION_TIMEOUT, f"{where} accepted TCP but SSH did not complete in time"
        )
    if isinstance(exc, asyncssh.ChannelOpenError):
        return HostLevelError(HostOutcome.UNREACHABLE, f"via jump host to {where}: {_reason(exc)}")
    if isinstance(exc, (asyncssh.ConnectionLost, ConnectionError)):
        return HostLevelError(
            HostOutcome.UNREACHABLE, f"{where} closed the connection: {_reason(exc)}"
        )
    if isinstance(exc, asyncssh.DisconnectError):
        return HostLevelError(HostOutcome.ERROR, f"{where} disconnected: {_reason(exc)}")
    if isinstance(exc, OSError):
        return HostLevelError(HostOutcome.UNREACHABLE, f"{where}: {_os_reason(exc)}")
    return HostLevelError(HostOutcome.ERROR, f"{where}: {type(exc).__name__}: {_reason(exc)}")


async def _run_probe(conn: asyncssh.SSHClientConnection, job: ProbeJob) -> RawOutput:
    """Send the job on stdin and read bounded output; a flood drops the connection."""
    proc = await conn.create_process(job.script, encoding=None)
    # Both streams at once: an unread stream would fill the channel window and stall.
    out_task = asyncio.ensure_future(_read_capped(proc.stdout, MAX_OUTPUT_BYTES))
    err_task = asyncio.ensure_future(_read_capped(proc.stderr, 65536))
    try:
        proc.stdin.write(job.stdin)
        proc.stdin.write_eof()
        stdout, truncated = await out_task
        if truncated:
            # Neither drain nor buffer the rest: closing only the channel lets the peer keep
            # sending until it notices, and that data would pile up here.
            conn.abort()
            return RawOutput(stdout=stdout, stderr=b"", exit_status=None, truncated=True)
        stderr, _ = await err_task
        await proc.wait_closed()
        return RawOutput(stdout=stdout, stderr=stderr, exit_status=proc.exit_status)
    finally:
        for task in (out_task, err_task):
            task.cancel()
        with contextlib.suppress(Exception):
            proc.close()


async def _read_capped(stream: asyncssh.SSHReader[bytes], limit: int) -> tuple[bytes, bool]:
    """Read to EOF keeping at most `limit` bytes; past it, stop at once (the caller cuts)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        if len(kept) > limit:
            return bytes(kept[:limit]), True
    return bytes(kept), False
