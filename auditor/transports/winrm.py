"""WinRM transport: one pywinrm shell per host, driven from a bounded thread pool.

pywinrm is blocking, so each host's session runs in a worker of a `ThreadPoolExecutor`
sized by the caller (the `--forks` budget) and is awaited with `loop.run_in_executor`.
Every HTTP exchange is bounded by what is left of the host's deadline, and the Receive
loop is ours (pywinrm's own `get_command_output` retries forever), so a hung shell or a
hung HTTP response cannot hold a worker past the deadline.

The command line. A WinRM `Command` is run through `cmd.exe /c` unless the option
WINRS_SKIP_CMD_SHELL is TRUE (MS-WSMV 3.1.4.11, 2.2.4.7: "the syntax of the command is
specific to cmd.exe"), and cmd.exe refuses lines over 8191 characters ("The command line
is too long.", seen with pywinrm's `run_ps` in diyan/pywinrm#184 and, at ~3040 script
characters, WinRb/WinRM#41; the limit is KB830473). The probe's encoded command is ~10-12k
characters, so this transport sets WINRS_SKIP_CMD_SHELL=TRUE: the service then starts
powershell.exe itself and CreateProcess's 32767-character limit applies (The Old New Thing,
"What is the command line length limit?", 2003-12-10).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import requests
import winrm.transport
from winrm.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from auditor.errors import HostLevelError, InputError
from auditor.models import MAX_OUTPUT_BYTES, Host, ProbeJob, RawOutput
from auditor.outcomes import HostOutcome
from auditor.secret import WINRM_PASSWORD_VARS, Secret, inventory_secret
from auditor.transports.base import SettingsSource, Transport
from auditor.transports.options import WinRMSettings

log = logging.getLogger(__name__)

POWERSHELL = "powershell.exe"
POWERSHELLS = {"powershell": POWERSHELL, "pwsh": "pwsh.exe"}
"""Which PowerShell runs the probe (`auditor_powershell` / `--winrm-powershell`): Windows
PowerShell 5.1, on every supported Windows, or PowerShell 7 where it is installed."""
POWERSHELL_ARGS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
CMD_EXE_MAX_CHARS = 8191
CREATEPROCESS_MAX_CHARS = 32767

TRANSPORTS = ("ntlm", "basic", "kerberos", "credssp", "certificate")
_AuthName = Literal["ntlm", "basic", "kerberos", "credssp", "certificate"]
_EXTRAS = {"kerberos": "fleet-auditor[kerberos]", "credssp": "fleet-auditor[credssp]"}
_NO_PASSWORD = ("certificate", "kerberos")
# Auth that hands the server the password (Basic) or an NTLM response an impostor can crack
# or relay: never to a server whose certificate is not checked, unless the command line says.
_UNSAFE_UNVALIDATED = ("basic", "ntlm")
CERT_VALIDATION_WARNING = (
    "WINRM CERTIFICATE VALIDATION WAS DISABLED (ansible_winrm_server_cert_validation=ignore, "
    "allowed by --winrm-allow-insecure): the password went to an unverified server and "
    "results could come from an impostor"
)
_LOGON_DENIED = "0x8009030c"
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAX_DETAIL = 400
# Time kept back from the host's deadline to Signal and Delete the shell.
_CLEANUP_RESERVE = 2.0
_CODEPAGE_UTF8 = 65001
# Win32 codes a WinRM fault carries when CreateProcess cannot find the program.
_NOT_FOUND_CODES = (2, 3)


# Every host of a run gets the same job: encode it once, not once per host.
@functools.lru_cache(maxsize=4)
def encode_command(script: str, program: str = POWERSHELL) -> tuple[str, tuple[str, ...]]:
    """The program and arguments that run `script` (PowerShell source) on Windows."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return program, (*POWERSHELL_ARGS, "-EncodedCommand", encoded)


def command_line(script: str, program: str = POWERSHELL) -> str:
    """The whole command line as Windows sees it, for measuring against its limits."""
    program, args = encode_command(script, program)
    return " ".join((program, *args))


@dataclass(frozen=True, repr=False)
class WinRMEndpoint:
    """One host's resolved connection settings (repr omits the secret)."""

    host: str
    url: str
    auth: str
    user: str | None
    password: Secret | None
    validate_cert: bool
    ca_bundle: str | None
    cert_pem: str | None
    cert_key_pem: str | None
    message_encryption: str
    # The host name in the Kerberos SPN (HTTP/<name>) when the URL holds an address.
    kerberos_hostname: str | None = None
    program: str = POWERSHELL

    def __repr__(self) -> str:
        return f"WinRMEndpoint(host={self.host!r}, url={self.url!r}, auth={self.auth!r})"


def _var(hostvars: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = hostvars.get(name)
        if value is not None and value != "":
            return value
    return None


def _pick_transport(host: Host, value: Any, default: str) -> str:
    # Ansible accepts a list (or comma-separated string) and uses the first it can: a name
    # whose extra packages are missing is skipped, and named only if nothing else is left.
    if value is None:
        return default
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    names = [str(item).strip().lower() for item in items if str(item).strip()]
    known = [name for name in names if name in TRANSPORTS]
    if not known:
        raise InputError(
            f"host {host.name}: ansible_winrm_transport={value!r} names no supported "
            f"transport ({', '.join(TRANSPORTS)})"
        )
    usable = [name for name in known if not _extra_missing(name)]
    return usable[0] if usable else known[0]


def _extra_missing(auth: str) -> bool:
    if auth == "kerberos":
        return not winrm.transport.HAVE_KERBEROS
    if auth == "credssp":
        return not winrm.transport.HAVE_CREDSSP
    return False


def needs_password(host: Host, options: WinRMSettings) -> bool:
    """Whether `host` authenticates with a password (not a client certificate or a Kerberos
    ticket). A transport setting that cannot be resolved counts as needing one."""
    try:
        auth = _pick_transport(host, _var(host.vars, "ansible_winrm_transport"), options.transport)
    except InputError:
        return True
    return auth not in _NO_PASSWORD


def resolve_endpoint(host: Host, options: WinRMSettings, password: Secret | None) -> WinRMEndpoint:
    """Merge a host's Ansible variables over `options`; raises `InputError` naming the host."""
    hv = host.vars
    auth = _pick_transport(host, _var(hv, "ansible_winrm_transport"), options.transport)
    if auth not in TRANSPORTS:
        raise InputError(f"host {host.name}: WinRM transport {auth!r} is not supported")
    if _extra_missing(auth):
        raise InputError(
            f"host {host.name}: WinRM transport {auth!r} needs extra packages: "
            f"pip install '{_EXTRAS[auth]}'"
        )
    raw_scheme = _var(hv, "ansible_winrm_scheme") or options.scheme
    port = host.port or options.port
    if port is None:
        port = 5985 if str(raw_scheme).lower() == "http" else 5986
    scheme = str(raw_scheme or ("http" if port == 5985 else "https")).lower()
    if scheme not in ("http", "https"):
        raise InputError(f"host {host.name}: ansible_winrm_scheme={raw_scheme!r} is not http(s)")
    path = str(_var(hv, "ansible_winrm_path") or options.path)
    if not path.startswith("/") or any(ch in path for ch in " ?#\r\n"):
        raise InputError(f"host {host.name}: ansible_winrm_path={path!r} is not a URL path")
    validation = str(_var(hv, "ansible_winrm_server_cert_validation") or "validate").lower()
    if validation not in ("validate", "ignore"):
        raise InputError(
            f"host {host.name}: ansible_winrm_server_cert_validation={validation!r} "
            "must be validate or ignore"
        )
    encryption = str(_var(hv, "ansible_winrm_message_encryption") or options.message_encryption)
    if encryption not in ("auto", "always", "never"):
        raise InputError(
            f"host {host.name}: ansible_winrm_message_encryption={encryption!r} "
            "must be auto, always or never"
        )
    if auth == "basic" and scheme == "http" and not options.allow_basic_http:
        raise InputError(
            f"host {host.name}: Basic auth over plain HTTP would send the password in clear "
            "text; use https (port 5986) or allow it explicitly"
        )
    if validation == "ignore" and auth in _UNSAFE_UNVALIDATED and not options.allow_insecure:
        raise InputError(
            f"host {host.name}: ansible_winrm_server_cert_validation=ignore with {auth} auth "
            f"would give the password{' (as an NTLM response)' if auth == 'ntlm' else ''} to "
            "whoever answers; only the command line can allow that (--winrm-allow-insecure)"
        )
    cert_pem = _var(hv, "ansible_winrm_cert_pem") or options.cert_pem
    cert_key_pem = _var(hv, "ansible_winrm_cert_key_pem") or options.cert_key_pem
    user = host.user or options.user
    try:
        inventory_password = inventory_secret(*WINRM_PASSWORD_VARS, hostvars=hv)
    except InputError as exc:
        raise InputError(f"host {host.name}: {exc.message}") from None
    secret = inventory_password if inventory_password is not None else password
    if auth in _NO_PASSWORD:
        # The identity is the client certificate or the ticket in the Kerberos credential
        # cache; a password given anyway is not sent anywhere.
        secret = None
    if auth == "certificate":
        if scheme != "https" or not cert_pem or not cert_key_pem:
            raise InputError(
                f"host {host.name}: certificate auth needs https and both "
                "ansible_winrm_cert_pem and ansible_winrm_cert_key_pem"
            )
    elif auth != "kerberos":
        if not user:
            raise InputError(f"host {host.name}: no WinRM user (set ansible_user)")
        if secret is None:
            raise InputError(
                f"host {host.name}: no WinRM password (set AUDITOR_WINRM_PASSWORD or "
                "ansible_password)"
            )
    address = host.address
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return WinRMEndpoint(
        host=host.name,
        url=f"{scheme}://{address}:{port}{path}",
        auth=auth,
        user=None if auth == "certificate" else user,
        password=secret,
        validate_cert=validation == "validate",
        ca_bundle=_var(hv, "ansible_winrm_ca_trust_path") or options.ca_bundle,
        cert_pem=None if cert_pem is None else str(cert_pem),
        cert_key_pem=None if cert_key_pem is None else str(cert_key_pem),
        message_encryption=encryption,
        kerberos_hostname=_kerberos_hostname(host, auth),
        program=_program(host, options),
    )


def check_files(host: Host, ep: WinRMEndpoint) -> None:
    """The endpoint's certificate, key and CA files exist and are regular files of sane
    size (a FIFO or a device would hang or exhaust the TLS library that reads them); a CA
    path may also be a directory of certificates. Raises InputError naming the setting."""
    from auditor.material import KEY_LIMIT, MaterialError, read_material

    checks = (
        ("ansible_winrm_cert_pem", ep.cert_pem, False),
        ("ansible_winrm_cert_key_pem", ep.cert_key_pem, False),
        ("ansible_winrm_ca_trust_path", ep.ca_bundle, True),
    )
    for setting, value, may_be_dir in checks:
        if value is None:
            continue
        if setting == "ansible_winrm_ca_trust_path" and host.vars.get(setting) in (None, ""):
            setting = "--winrm-ca-bundle"
        path = Path(value).expanduser()
        if may_be_dir and path.is_dir():
            continue
        try:
            read_material(path, KEY_LIMIT)
        except MaterialError as exc:
            raise InputError(f"host {host.name}: {setting} {value}: {exc.reason}") from None


def _program(host: Host, options: WinRMSettings) -> str:
    value = _var(host.vars, "auditor_powershell") or options.powershell
    program = POWERSHELLS.get(str(value).strip().lower())
    if program is None:
        raise InputError(
            f"host {host.name}: auditor_powershell={value!r} is neither 'powershell' "
            "(Windows PowerShell 5.1) nor 'pwsh' (PowerShell 7)"
        )
    return program


def _kerberos_hostname(host: Host, auth: str) -> str | None:
    value = _var(host.vars, "ansible_winrm_kerberos_hostname_override")
    if value is None or auth != "kerberos":
        return None
    name = str(value).strip()
    if not name or not all(part and _DNS_LABEL.fullmatch(part) for part in name.split(".")):
        raise InputError(
            f"host {host.name}: ansible_winrm_kerberos_hostname_override={value!r} "
            "is not a host name"
        )
    return name


# --- turning failures into host-level outcomes -----------------------------------------

_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*")


def _clean(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _OBJECT_REPR.sub("", text)
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind requests' and urllib3's wrappers."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        nxt = getattr(current, "reason", None)
        if not isinstance(nxt, BaseException) and current.args:
            first = current.args[0]
            nxt = first if isinstance(first, BaseException) else None
        if not isinstance(nxt, BaseException):
            nxt = current.__cause__ or current.__context__
        if not isinstance(nxt, BaseException):
            break
        current = nxt
    return current


def _chain_has(exc: BaseException, names: tuple[str, ...]) -> bool:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__name__ in names:
            return True
        for nxt in (getattr(current, "reason", None), current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False


# TLS alerts a server sends about the client's certificate (RFC 8446 6.2). Our own check of
# the server's certificate fails locally (CERTIFICATE_VERIFY_FAILED), never with an alert.
_CLIENT_CERT_ALERT = re.compile(
    r"ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|CERTIFICATE_REQUIRED|"
    r"UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|ACCESS_DENIED)"
)


# The (message, code) pairs in a pykerberos GSSError as requests-kerberos words it.
_GSS_MESSAGE = re.compile(r"""\((['"])(.*?)\1, -?\d+\)""")


class _DeadlinePassed(Exception):
    """Our own deadline for the host passed between two WinRM exchanges."""


def _host_error(
    exc: BaseException, ep: WinRMEndpoint, phase: str, timeout: float
) -> HostLevelError:
    secrets = [ep.password.reveal()] if ep.password else []

    def err(outcome: HostOutcome, text: str) -> HostLevelError:
        return HostLevelError(outcome, _clean(text, secrets))

    where = f"{ep.url} ({phase})"
    if isinstance(exc, _DeadlinePassed):
        return err(
            HostOutcome.SESSION_TIMEOUT,
            f"WinRM session on {where} did not finish within {round(timeout, 1):g} s",
        )
    if isinstance(exc, AuthenticationError | PermissionError):
        if ep.auth == "certificate":
            who = (
                f"client certificate {ep.cert_pem} not accepted: not mapped to an account "
                "there, or certificate auth is off"
            )
        else:
            who = f"user {ep.user or '-'}"
        return err(
            HostOutcome.AUTH_FAILED, f"{exc} (HTTP 401 from {ep.url}, {who}, auth {ep.auth})"
        )
    kind = type(exc).__name__
    if kind in ("KerberosExchangeError", "MutualAuthenticationError"):
        host = ep.kerberos_hostname or urlsplit(ep.url).hostname or ""
        spn = f"HTTP/{host.strip('[]')}"
        if kind == "MutualAuthenticationError":
            return err(
                HostOutcome.AUTH_FAILED,
                f"Kerberos authentication to {ep.url} (SPN {spn}) failed: the endpoint did not "
                "prove that it holds the SPN's key",
            )
        messages = [m for _, m in _GSS_MESSAGE.findall(str(exc)) if not m.startswith("Unspecified")]
        reasons = "; ".join(messages) or str(exc)
        return err(
            HostOutcome.AUTH_FAILED,
            f"Kerberos authentication to {ep.url} (SPN {spn}) failed before any request: "
            f"no service ticket (run kinit; check the SPN and the realm): {reasons}",
        )
    if type(exc).__module__.startswith("requests_credssp"):
        # requests-credssp has no name for the NTSTATUS the acceptor sends back.
        hint = " (SEC_E_LOGON_DENIED: wrong user or password)" if _LOGON_DENIED in str(exc) else ""
        return err(
            HostOutcome.AUTH_FAILED,
            f"credssp authentication with {ep.url} failed for user {ep.user or '-'}: {exc}{hint}",
        )
    if type(exc).__module__.startswith("spnego"):
        return err(HostOutcome.AUTH_FAILED, f"{ep.auth} authentication with {ep.url} failed: {exc}")
    if isinstance(exc, requests.exceptions.SSLError):
        reason = _root_cause(exc)
        if ep.auth == "certificate" and _CLIENT_CERT_ALERT.search(str(reason)):
            return err(
                HostOutcome.AUTH_FAILED,
                f"{ep.url} refused the client certificate {ep.cert_pem} in the TLS handshake "
                f"(is its issuer trusted there?): {reason}",
            )
        return err(HostOutcome.ERROR, f"TLS to WinRM endpoint {ep.url} failed: {reason}")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return err(HostOutcome.UNREACHABLE, f"connecting to {ep.url} timed out")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return err(
            HostOutcome.SESSION_TIMEOUT,
            f"WinRM endpoint {where} accepted the connection but did not answer in time",
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = _root_cause(exc)
        if _chain_has(exc, ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")):
            return err(HostOutcome.UNREACHABLE, f"cannot connect to {ep.url}: {reason}")
        return err(HostOutcome.ERROR, f"connection to WinRM endpoint {where} failed: {reason}")
    if isinstance(exc, WSManFaultError):
        code = f", WS-Man code {exc.wsman_fault_code}" if exc.wsman_fault_code is not None else ""
        text = f"WS-Management fault from {where} (HTTP {exc.code}{code}): {exc.reason}"
        if phase == "command" and exc.wsman_fault_code in _NOT_FOUND_CODES:
            return err(HostOutcome.PROBE_UNAVAILABLE, f"{ep.program} could not be started: {text}")
        return err(HostOutcome.ERROR, text)
    if isinstance(exc, WinRMTransportError):
        body = exc.response_text[:200] if isinstance(exc.response_text, str) else ""
        return err(HostOutcome.ERROR, f"WinRM endpoint {where} answered HTTP {exc.code}: {body}")
    if isinstance(exc, WinRMError):
        return err(HostOutcome.ERROR, f"WinRM error from {where}: {exc}")
    return err(HostOutcome.ERROR, f"WinRM session on {where} failed: {type(exc).__name__}: {exc}")


# --- the blocking session -------------------------------------------------------------


class _Session:
    """One host's shell, run on a worker thread; every exchange fits in the deadline."""

    def __init__(
        self, ep: WinRMEndpoint, options: WinRMSettings, deadline: float, timeout: float
    ) -> None:
        self.ep = ep
        self.options = options
        self.deadline = deadline
        self.timeout = timeout
        self.work_deadline = deadline - min(
            _CLEANUP_RESERVE, max(0.0, (deadline - time.monotonic()) * 0.2)
        )
        self.op_timeout = max(
            1, min(options.operation_timeout, int(self.work_deadline - time.monotonic()) // 2)
        )
        self.protocol = self._new_protocol()

    def _new_protocol(self) -> Protocol:
        ep = self.ep
        return Protocol(
            endpoint=ep.url,
            transport=cast(_AuthName, ep.auth),
            username=ep.user,
            password=ep.password.reveal() if ep.password else None,
            server_cert_validation="validate" if ep.validate_cert else "ignore",
            ca_trust_path=ep.ca_bundle,  # type: ignore[arg-type]  # None: no env lookups
            cert_pem=ep.cert_pem,
            cert_key_pem=ep.cert_key_pem,
            operation_timeout_sec=self.op_timeout,
            read_timeout_sec=self.op_timeout + 5,
            message_encryption=cast(Literal["auto", "always", "never"], ep.message_encryption),
            kerberos_hostname_override=ep.kerberos_hostname,
            proxy=None,  # never pick up the auditor's own http(s)_proxy for management traffic
        )

    def _arm(self, until: float) -> None:
        """Bound the next HTTP exchange (connect, then each read) by `until`."""
        remaining = until - time.monotonic()
        if remaining <= 0:
            raise _DeadlinePassed()
        read = min(float(self.op_timeout) + 5.0, remaining)
        connect = min(self.options.connect_timeout, remaining)
        # pywinrm hands this straight to requests' `timeout=`, which takes (connect, read).
        self.protocol.transport.read_timeout_sec = (connect, read)  # type: ignore[assignment]

    def run(self, program: str, args: Sequence[str], stdin: bytes) -> RawOutput:
        shell_id: str | None = None
        command_id: str | None = None
        phase = "connect"
        try:
            self._arm(self.work_deadline)
            phase = "create shell"
            shell_id = self.protocol.open_shell(noprofile=True, codepage=_CODEPAGE_UTF8)
            self._arm(self.work_deadline)
            phase = "command"
            command_id = self.protocol.run_command(shell_id, program, args, skip_cmd_shell=True)
            if stdin:
                self._arm(self.work_deadline)
                self.protocol.send_command_input(shell_id, command_id, stdin, end=True)
            phase = "receive"
            return self._receive(shell_id, command_id)
        except Exception as exc:  # every failure becomes a host outcome
            if phase == "receive" and isinstance(exc, requests.exceptions.ReadTimeout):
                # The last poll was cut short by our own deadline, not by a silent server.
                exc = _DeadlinePassed()
            raise _host_error(exc, self.ep, phase, self.timeout) from None
        finally:
            self._cleanup(shell_id, command_id)

    def _receive(self, shell_id: str, command_id: str) -> RawOutput:
        out: list[bytes] = []
        err: list[bytes] = []
        size = 0
        while True:
            self._arm(self.work_deadline)
            try:
                stdout, stderr, code, done = self.protocol.get_command_output_raw(
                    shell_id, command_id
                )
            except WinRMOperationTimeoutError:
                continue  # the service's "no output yet": poll again while time is left
            out.append(stdout)
            err.append(stderr)
            size += len(stdout) + len(stderr)
            if size > MAX_OUTPUT_BYTES:
                return _bounded(out, err, None, truncated=True)
            if done:
                return _bounded(out, err, code, truncated=False)

    def _cleanup(self, shell_id: str | None, command_id: str | None) -> None:
        """Best effort: terminate the command and delete the shell within the deadline.

        After a timeout the session's connection is gone, and with NTLM message encryption a
        new connection needs a new security context: so a failed step is retried once on a
        freshly authenticated session.
        """
        if shell_id is None:
            self._close_session()
            return
        pending = ["signal", "delete"] if command_id is not None else ["delete"]
        for attempt in range(2):
            if attempt:
                self._close_session()
                try:
                    self.protocol = self._new_protocol()
                except Exception:  # nothing more can be done for this shell
                    break
            pending = [step for step in pending if not self._step(step, shell_id, command_id)]
            if not pending:
                break
        self._close_session()

    def _step(self, step: str, shell_id: str, command_id: str | None) -> bool:
        try:
            self._arm(self.deadline)
            if step == "signal" and command_id is not None:
                self.protocol.cleanup_command(shell_id, command_id)
            else:
                self.protocol.close_shell(shell_id, close_session=False)
            return True
        except Exception as exc:  # cleanup must never mask the result
            log.debug("winrm %s on %s: %s", step, self.ep.host, type(exc).__name__)
            return False

    def _close_session(self) -> None:
        try:
            self.protocol.transport.close_session()
        except Exception:  # noqa: S110 - closing a dead session may fail; nothing to do
            pass


def _bounded(out: list[bytes], err: list[bytes], code: int | None, truncated: bool) -> RawOutput:
    stdout = b"".join(out)
    stderr = b"".join(err)
    if len(stdout) + len(stderr) > MAX_OUTPUT_BYTES:
        truncated = True
        stdout = stdout[:MAX_OUTPUT_BYTES]
        stderr = stderr[: max(0, MAX_OUTPUT_BYTES - len(stdout))]
    return RawOutput(stdout=stdout, stderr=stderr, exit_status=code, truncated=truncated)


class WinRMTransport(Transport):
    """Runs a PowerShell probe job on Windows hosts over WinRM (pywinrm).

    `password` is the one the CLI read from AUDITOR_WINRM_PASSWORD or a prompt; a host's
    `ansible_password` overrides it. `max_workers` is the number of hosts in flight at once.
    """

    name = "winrm"

    def __init__(
        self,
        options: WinRMSettings | None = None,
        password: Secret | str | None = None,
        max_workers: int = 8,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.options = options or WinRMSettings()
        self._password = Secret(password) if isinstance(password, str) else password
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="winrm")
        self._warnings: Mapping[str, tuple[str, ...]] = MappingProxyType({})
        self._slots = asyncio.Semaphore(max_workers)

    def __repr__(self) -> str:
        return f"WinRMTransport(options={self.options!r})"

    def endpoint(self, host: Host) -> WinRMEndpoint:
        """The resolved settings for `host`; raises `InputError` naming the host.

        `prepare` calls this for every host before the run so that a bad inventory fails
        fast; `run` calls it again and reports a failure as that host's error.
        """
        return resolve_endpoint(host, self.options, self._password)

    def prepare(self, hosts: Sequence[Host], source: SettingsSource) -> None:
        """Resolve every host's endpoint and check its certificate files, before any
        connection; collect the per-host warnings (certificate validation off)."""
        warnings: dict[str, tuple[str, ...]] = {}
        for host in hosts:
            try:
                ep = self.endpoint(host)
                check_files(host, ep)
            except InputError as exc:
                raise InputError(
                    exc.message, source.inventory or None, source.lines.get(host.name)
                ) from None
            if not ep.validate_cert and ep.url.startswith("https:"):
                warnings[host.name] = (CERT_VALIDATION_WARNING,)
        self._warnings = MappingProxyType(warnings)

    def host_warnings(self, host: Host) -> tuple[str, ...]:
        return self._warnings.get(host.name, ())

    async def run_job(self, host: Host, job: ProbeJob, timeout: float) -> RawOutput:
        try:
            ep = self.endpoint(host)
            check_files(host, ep)
        except InputError as exc:
            raise HostLevelError(HostOutcome.ERROR, str(exc)) from None
        program, args = encode_command(job.script, ep.program)
        length = len(command_line(job.script, ep.program))
        if length > CREATEPROCESS_MAX_CHARS:
            raise HostLevelError(
                HostOutcome.ERROR,
                f"probe command is {length} characters, over Windows' "
                f"{CREATEPROCESS_MAX_CHARS}-character limit: audit fewer targets per run",
            )
        # The clock starts when a worker is free: waiting for a slot is not the host's fault.
        async with self._slots:
            deadline = time.monotonic() + timeout
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                self._pool, self._blocking, ep, program, args, job, deadline, timeout
            )
            try:
                # The worker keeps its own deadline; this is only a backstop.
                return await asyncio.wait_for(asyncio.shield(future), timeout + 1.0)
            except TimeoutError:
                raise HostLevelError(
                    HostOutcome.SESSION_TIMEOUT,
                    f"WinRM session on {ep.url} did not finish within {round(timeout, 1):g} s",
                ) from None

    def _blocking(
        self,
        ep: WinRMEndpoint,
        program: str,
        args: Sequence[str],
        job: ProbeJob,
        deadline: float,
        timeout: float,
    ) -> RawOutput:
        try:
            session = _Session(ep, self.options, deadline, timeout)
        except Exception as exc:  # e.g. a cert file that vanished
            raise _host_error(exc, ep, "setup", timeout) from None
        return session.run(program, args, job.stdin)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def winrm_transport(settings: WinRMSettings, forks: int) -> WinRMTransport:
    """The run's WinRM transport: `forks` workers, the run's password from `settings`."""
    return WinRMTransport(settings, settings.password, max_workers=forks)
