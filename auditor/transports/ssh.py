"""The SSH transport (asyncssh): one connection per host, the probe on stdin of one session.

Errors are mapped onto host-level outcomes by exception type, in one place (`_classify`),
never by parsing message text.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import asyncssh

from auditor.errors import HostLevelError, InputError
from auditor.material import KEY_LIMIT, KNOWN_HOSTS_LIMIT, MaterialError, read_material
from auditor.models import MAX_OUTPUT_BYTES, Connection, Host, Platform, ProbeJob, RawOutput
from auditor.outcomes import HostOutcome
from auditor.secret import SSH_PASSWORD_VARS, Secret, inventory_secret
from auditor.transports.base import SettingsSource, Transport
from auditor.transports.endpoint import Endpoint, JumpSpec, resolve_endpoint
from auditor.transports.options import PASSPHRASE_ENV, HostKeyPolicy, SSHSettings
from auditor.transports.sshconfig import SSHConfigReader, default_config_path

KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")

# What OpenSSH writes for a host in known_hosts is a pattern list: `*`, `?`, `!`, `,`,
# whitespace, `[`/`]` and `#`/`|`/`@` all mean something there. A name recorded on trust on
# first use must be a literal name or address, or the key would be trusted for other hosts.
_LITERAL_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]*")


def known_hosts_name(address: str, port: int) -> str:
    """The literal entry OpenSSH writes in known_hosts for `address` and `port` (`host`, or
    `[host]:port` off port 22), lowercased as ssh compares names; raises ValueError for an
    address that is neither a plain host name nor an IP address."""
    host = address.lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _LITERAL_NAME.fullmatch(host):
            raise ValueError(
                f"{address!r} is not a plain host name or address (known_hosts would read "
                "it as a pattern), so its key is not recorded"
            ) from None
    return host if port == 22 else f"[{host}]:{port}"


# One known_hosts line: an optional @marker, the host patterns, then the key.
_KNOWN_LINE = re.compile(r"^(\s*(?:@\S+\s+)?)(\S+)(.*)$")


def _lowercase_names(text: str) -> str:
    """known_hosts with its plain host patterns lowercased: OpenSSH compares host names
    without regard to case, and lookups here use lowercased names. Hashed entries (`|1|`)
    are hashes of lowercased names already."""
    lines = []
    for line in text.splitlines():
        found = _KNOWN_LINE.match(line)
        if found is None or line.lstrip().startswith("#") or found.group(2).startswith("|"):
            lines.append(line)
        else:
            lines.append(found.group(1) + found.group(2).lower() + found.group(3))
    return "\n".join(lines) + "\n"


def _known_keys(
    known: asyncssh.SSHKnownHosts | None, host: str, addr: str, port: int
) -> list[asyncssh.SSHKey]:
    if known is None:
        return []
    keys: list[asyncssh.SSHKey] = list(known.match(host.lower(), addr, port)[0])
    return keys


class _HostKeyCheck(asyncssh.SSHClient):
    """Decides about a host key that is not in known_hosts, remembers why it refused, and
    hands out the password only to a host whose key was trusted before this connection."""

    def __init__(
        self,
        known: asyncssh.SSHKnownHosts | None,
        options: SSHSettings,
        password: Secret | None,
    ) -> None:
        self._known = known
        self._policy = options.host_key_policy
        self._password = password
        self._password_on_new_keys = options.password_on_new_keys
        self.refused: HostOutcome | None = None
        self.refused_detail = ""
        self.accepted_key: asyncssh.SSHKey | None = None
        self.password_withheld = False

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        if _known_keys(self._known, host, addr, port):
            self.refused = HostOutcome.HOST_KEY_CHANGED
            return False
        if self._policy is HostKeyPolicy.ACCEPT_NEW:
            try:
                known_hosts_name(host, port)
            except ValueError as exc:
                self.refused = HostOutcome.HOST_KEY_UNKNOWN
                self.refused_detail = str(exc)
                return False
            self.accepted_key = key
            return True
        self.refused = HostOutcome.HOST_KEY_UNKNOWN
        return False

    def password(self) -> str | None:
        """asyncssh asks for the password (once) after the host key was checked."""
        if self._password is None:
            return None
        if self.accepted_key is not None and not self._password_on_new_keys:
            # The key was first seen just now: this may be an impostor, and a password sent
            # to it is a password lost. Key authentication gives an impostor nothing.
            self.password_withheld = True
            return None
        return self._password.reveal()


_KeySet = tuple[tuple[Path, ...], bool, bool]


def _key_set(endpoint: Endpoint) -> _KeySet:
    return (endpoint.key_files, endpoint.keys_required, endpoint.default_keys)


class _NoKeyFiles(list[asyncssh.SSHKey]):
    """No key files, yet given: asyncssh reads ~/.ssh/id_* when the key list is empty (false,
    or equal to `()`) and turns the agent off when it is None, while ssh's `IdentityFile none`
    (or only missing IdentityFile files) means neither: no key files, the agent still asked.
    A true, empty list is the one value asyncssh reads that way
    (`SSHClientConnectionOptions.prepare`); the lab test proves it against a real sshd."""

    def __bool__(self) -> bool:
        return True


NO_KEY_FILES = _NoKeyFiles()

# A site runner prepares a transport for every host it is sent, and parsing a fleet's
# known_hosts costs more than the rest of a probe's client work. The file is still read and
# checked on every prepare (trust material fails closed, and a changed file is seen); only
# the parse of the very same text is reused. A parsed SSHKnownHosts is only read from.
_PARSED_KNOWN: tuple[str, asyncssh.SSHKnownHosts] | None = None


@dataclass(frozen=True)
class _Prepared:
    """Everything the run needs, loaded and checked before the first connection."""

    known: asyncssh.SSHKnownHosts | None
    """None only when host keys are not checked (--no-host-key-check)."""
    endpoints: Mapping[str, Endpoint | HostLevelError]
    """By host name; an error that is that host's alone (e.g. a ProxyCommand) is kept as
    the host's result."""
    jumps: Mapping[JumpSpec, Endpoint]
    keys: Mapping[_KeySet, tuple[asyncssh.SSHKey, ...] | _NoKeyFiles | None]
    """Loaded once per distinct key set; None means asyncssh's defaults (agent, ~/.ssh),
    NO_KEY_FILES the agent alone."""
    passwords: Mapping[str, Secret | None]
    """The inventory's password per host name (None: the run's own, if any)."""
    base: asyncssh.SSHClientConnectionOptions


class SSHTransport(Transport):
    name = "ssh"

    def __init__(self, options: SSHSettings) -> None:
        self.options = options
        self._prepared: _Prepared | None = None
        self._jumps: dict[JumpSpec, asyncio.Task[asyncssh.SSHClientConnection]] = {}
        self._record_lock = asyncio.Lock()
        self._config = SSHConfigReader(options.ssh_config or default_config_path())

    # -- preparing -------------------------------------------------------------------------

    def prepare(self, hosts: Sequence[Host], source: SettingsSource) -> None:
        """Load known_hosts and every key file, and resolve every host's endpoint (and jump
        host), before any connection; a setting that cannot be used raises InputError."""
        known = None
        if self.options.host_key_policy is not HostKeyPolicy.NONE:
            known = self._load_known_hosts()
        endpoints: dict[str, Endpoint | HostLevelError] = {}
        jumps: dict[JumpSpec, Endpoint] = {}
        keys: dict[_KeySet, tuple[asyncssh.SSHKey, ...] | _NoKeyFiles | None] = {}
        passwords: dict[str, Secret | None] = {}
        for host in hosts:
            try:
                endpoint = self.endpoint(host)
            except InputError as exc:
                raise source.error(host, f"{self._jump_setting(host)}: {exc}") from None
            except HostLevelError as exc:
                endpoints[host.name] = exc
                continue
            self._load_key_set(endpoint, self._key_setting(host, endpoint), host, source, keys)
            if endpoint.jump is not None and endpoint.jump not in jumps:
                hop = _jump_host(endpoint.jump)
                try:
                    jump = self.endpoint(hop, follow_jump=False)
                except InputError as exc:
                    raise source.error(host, f"jump host {endpoint.jump.host}: {exc}") from None
                setting = f"jump host {endpoint.jump.host}: {self._key_setting(hop, jump)}"
                self._load_key_set(jump, setting, host, source, keys)
                jumps[endpoint.jump] = jump
            try:
                passwords[host.name] = inventory_secret(*SSH_PASSWORD_VARS, hostvars=host.vars)
            except InputError as exc:
                # A password that cannot be loaded is a setting that cannot be: the run
                # stops here, before any host, as for a key file.
                raise source.error(host, exc.message) from None
            endpoints[host.name] = endpoint
        kwargs: dict[str, Any] = {
            "known_hosts": known,
            "connect_timeout": self.options.connect_timeout,
            "login_timeout": self.options.connect_timeout,
            "keepalive_interval": 15,
            "keepalive_count_max": 2,
            # The config is resolved per host by `endpoint`; asyncssh applying it again to an
            # address that is already resolved would match the wrong Host blocks.
            "config": None,
        }
        if self.options.user:
            kwargs["username"] = self.options.user
        # Assigned once, whole: until here the transport has no state a connection could use.
        self._prepared = _Prepared(
            known=known,
            endpoints=MappingProxyType(endpoints),
            jumps=MappingProxyType(jumps),
            keys=MappingProxyType(keys),
            passwords=MappingProxyType(passwords),
            base=asyncssh.SSHClientConnectionOptions(**kwargs),
        )

    def _known_hosts_path(self) -> Path:
        return self.options.known_hosts or Path.home() / ".ssh" / "known_hosts"

    def _load_known_hosts(self) -> asyncssh.SSHKnownHosts:
        """The known_hosts file, or InputError: trust material that cannot be read stops the
        run, it never means "check nothing". A missing default ~/.ssh/known_hosts is empty,
        as for ssh; a missing --known-hosts is empty only under --accept-new-host-keys
        (which creates it), since a mistyped path would otherwise refuse every host."""
        given = self.options.known_hosts is not None
        setting = "--known-hosts" if given else "known_hosts"
        path = self._known_hosts_path()
        try:
            text = read_material(path, KNOWN_HOSTS_LIMIT).data.decode("utf-8")
        except MaterialError as exc:
            accept_new = self.options.host_key_policy is HostKeyPolicy.ACCEPT_NEW
            if not (exc.missing and (accept_new or not given)):
                raise InputError(
                    f"{setting}: cannot read known_hosts: {exc.reason}", str(path)
                ) from None
            text = ""
        except UnicodeDecodeError:
            raise InputError(f"{setting}: known_hosts is not UTF-8 text", str(path)) from None
        global _PARSED_KNOWN
        parsed = _PARSED_KNOWN
        if parsed is not None and parsed[0] == text:
            return parsed[1]
        try:
            known = asyncssh.import_known_hosts(_lowercase_names(text))
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise InputError(f"{setting}: bad known_hosts file: {exc}", str(path)) from None
        _PARSED_KNOWN = (text, known)
        return known

    def _key_setting(self, host: Host, endpoint: Endpoint) -> str:
        """Which setting named `endpoint`'s key files, for messages."""
        for name in KEY_VARS:
            if host.vars.get(name):
                return name
        if endpoint.keys_required:
            return "--ssh-key"
        return f"IdentityFile of {self._config.path}"

    def _jump_setting(self, host: Host) -> str:
        for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            if host.vars.get(name):
                return name
        if self.options.jump_host:
            return "--jump-host"
        return f"ssh config {self._config.path}" if self._config.path else "ssh settings"

    def _load_key_set(
        self,
        endpoint: Endpoint,
        setting: str,
        host: Host,
        source: SettingsSource,
        cache: dict[_KeySet, tuple[asyncssh.SSHKey, ...] | _NoKeyFiles | None],
    ) -> None:
        """Read and decode `endpoint`'s keys once per distinct key set (per host, it would be
        per-host work on a fleet of thousands). Keys from IdentityFile lines of the ssh config
        may be missing (ssh skips those); every key file that exists must load."""
        cache_key = _key_set(endpoint)
        if cache_key in cache:
            return
        passphrase = self.options.passphrase.reveal() if self.options.passphrase else None
        loaded: list[asyncssh.SSHKey] = []
        for path in endpoint.key_files:
            try:
                data = read_material(path, KEY_LIMIT).data
            except MaterialError as exc:
                if exc.missing and not endpoint.keys_required:
                    continue
                raise source.error(host, f"{setting} {path}: {exc.reason}") from None
            try:
                loaded.append(asyncssh.import_private_key(data, passphrase))
            except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                hint = "" if passphrase else f" (a passphrase is read from {PASSPHRASE_ENV})"
                raise source.error(
                    host, f"{setting} {path}: cannot load the private key: {exc}{hint}"
                ) from None
        if loaded:
            cache[cache_key] = tuple(loaded)
        elif endpoint.default_keys:
            cache[cache_key] = None
        else:
            cache[cache_key] = NO_KEY_FILES

    def _state(self) -> _Prepared:
        if self._prepared is None:
            raise RuntimeError("SSHTransport.prepare() must run before any connection")
        return self._prepared

    # -- host keys -------------------------------------------------------------------------

    async def _record_key(self, address: str, port: int, key: asyncssh.SSHKey) -> None:
        """Trust on first use: append the new key to known_hosts under its literal name."""
        line = f"{known_hosts_name(address, port)} {key.export_public_key('openssh').decode()}"
        line = line.strip() + "\n"
        path = self._known_hosts_path()
        async with self._record_lock:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(path, flags, 0o600)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(0, "known_hosts is not a regular file")
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    # -- credentials -----------------------------------------------------------------------

    def endpoint(self, host: Host, *, follow_jump: bool = True) -> Endpoint:
        """Resolve address, port, user, keys and jump host for `host`."""
        return resolve_endpoint(host, self.options, self._config, follow_jump=follow_jump)

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
        prepared = self._state()
        conn, _ = await self._connect(
            prepared,
            prepared.jumps[spec],
            self.options.password,
            None,
            self.options.connect_timeout,
        )
        return conn

    # -- connecting ------------------------------------------------------------------------

    async def _connect(
        self,
        prepared: _Prepared,
        endpoint: Endpoint,
        password: Secret | None,
        tunnel: asyncssh.SSHClientConnection | None,
        timeout: float,
    ) -> tuple[asyncssh.SSHClientConnection, _HostKeyCheck]:
        # Lowercased as ssh does: known_hosts lookups and records ignore case.
        address, port = endpoint.address.lower(), endpoint.port
        checker = _HostKeyCheck(prepared.known, self.options, password)
        kwargs: dict[str, Any] = {"options": prepared.base}
        if endpoint.user:
            kwargs["username"] = endpoint.user
        keys = prepared.keys.get(_key_set(endpoint))
        if isinstance(keys, _NoKeyFiles):
            kwargs["client_keys"] = _NoKeyFiles()
        elif keys is not None:
            kwargs["client_keys"] = list(keys)
        if password is not None:
            # A callable: asyncssh asks for it only once the host key has been judged.
            kwargs["password"] = checker.password
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
            error = _classify(exc, checker, address, port)
            # Authentication comes after the key exchange proved the host holds the key: the
            # key is recorded as `ssh -o StrictHostKeyChecking=accept-new` records it.
            if checker.accepted_key is not None and isinstance(exc, asyncssh.PermissionDenied):
                await self._record(address, port, checker.accepted_key)
            if checker.password_withheld and error.outcome == HostOutcome.AUTH_FAILED:
                error = HostLevelError(
                    error.outcome,
                    f"{error.detail}; the password was not sent because this host's key was "
                    "first seen (and recorded) in this run: audit it again to use the password, "
                    "or give --password-on-new-keys",
                )
            raise error from None
        if checker.accepted_key is not None:
            try:
                await self._record(address, port, checker.accepted_key)
            except BaseException:
                conn.close()
                raise
        return conn, checker

    async def _record(self, address: str, port: int, key: asyncssh.SSHKey) -> None:
        try:
            await self._record_key(address, port, key)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise HostLevelError(
                HostOutcome.ERROR,
                f"cannot record the new host key of {address}:{port} in "
                f"{self._known_hosts_path()}: {reason}",
            ) from None

    def _endpoint_of(self, prepared: _Prepared, host: Host) -> Endpoint:
        found = prepared.endpoints.get(host.name)
        if found is None:
            raise HostLevelError(HostOutcome.ERROR, "the SSH transport was not prepared for it")
        if isinstance(found, HostLevelError):
            raise HostLevelError(found.outcome, found.detail)
        if self.options.host_key_policy is HostKeyPolicy.ACCEPT_NEW and not _known_keys(
            prepared.known, found.address, "", found.port
        ):
            # Its key would have to be recorded, and cannot be: do not even connect.
            try:
                known_hosts_name(found.address, found.port)
            except ValueError as exc:
                raise HostLevelError(HostOutcome.HOST_KEY_UNKNOWN, str(exc)) from None
        return found

    async def run_job(self, host: Host, job: ProbeJob, timeout: float) -> RawOutput:
        prepared = self._state()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        endpoint = self._endpoint_of(prepared, host)
        tunnel = await self._jump(endpoint.jump, timeout) if endpoint.jump is not None else None
        remaining = deadline - loop.time()
        password = prepared.passwords.get(host.name) or self.options.password
        try:
            async with asyncio.timeout(remaining):
                conn, _ = await self._connect(prepared, endpoint, password, tunnel, remaining)
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


def _jump_host(spec: JumpSpec) -> Host:
    """A jump host as a host of its own (resolved through the ssh config like any other)."""
    return Host(
        name=spec.host,
        address=spec.host,
        connection=Connection.SSH,
        platform=Platform.LINUX,
        port=spec.port,
        user=spec.user,
    )


async def _tcp_connect(address: str, port: int, timeout: float) -> socket.socket:
    """Connect TCP ourselves, so 'no route / refused / dropped' (unreachable) is told apart
    from 'accepted TCP, then SSH hung' (session_timeout)."""
    loop = asyncio.get_running_loop()
    infos: Sequence[_AddrInfo] = _literal_address(address, port)
    try:
        if not infos:
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


_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def _literal_address(address: str, port: int) -> list[_AddrInfo]:
    """The one address an IP literal names, without a resolver call (which asyncio runs in
    a worker thread, once per host); empty for a name, or an address with a scope, which
    only the resolver turns into a socket address."""
    if "%" in address:
        return []
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return []
    if ip.version == 6:
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))
        ]
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


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
        if checker.refused_detail:
            return HostLevelError(outcome, f"{where}: {checker.refused_detail}")
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
    proc = await conn.create_process(job.command, encoding=None)
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
