"""A stand-in for Windows PowerShell 5.1 running the auditor's probe, for the lab.

No Windows host can run here, so the lab's WS-Management endpoint (`auditor_lab.wsman`)
hands each `powershell.exe -EncodedCommand ...` it receives to this module. It decodes the
probe's data, makes the same HTTP requests itself *from wherever it runs* (in the lab: inside
a network namespace, so DNS, nft drop/reject, proxies and the intercepting issuer are real),
and prints exactly the records probe.ps1 prints on Windows PowerShell 5.1 for each failure:
the evidence (exception type, status, messages, proxy, issuer, timings), never a verdict;
the auditor's own classifier decides, as it does for a real Windows host.
The requests and the run loop also serve the PowerShell 7 flavour (`auditor_lab.ps7`), which
changes only the exception shapes, the edition and the JSON the records carry.

Where each Windows text comes from (marks as in the Invoke-WebRequest error reference notes):
- WebException messages: .NET Framework `System.txt` resources (`net_webstatus_*`,
  `net_httpstatuscode_*`, `net_ssl_io_cert_validation`, `net_auth_eof`), as carried by the
  reference's sources (referencesource `System/net/System/Net/WebException.cs`,
  `_NetRes.cs`). Verified whole strings (reference §3): `The remote name could not be
  resolved: 'HOST'` (vstest-action#33), `Unable to connect to the remote server` (rubrik
  #835), `The operation has timed out.` (calico demo.md; FullClr source), `The underlying
  connection was closed: Could not establish trust relationship for the SSL/TLS secure
  channel.` (IDM-Activation-Script#24), `The remote certificate is invalid according to the
  validation procedure.` (OpenManage#4), `The request was aborted: Could not create SSL/TLS
  secure channel.` (windows-secure-auditor#36), `The underlying connection was closed: An
  unexpected error occurred on a send.` (azure-devops-tls12#5), `The remote server returned
  an error: (503) Server Unavailable.` (evergreen-module#352), `(407) Proxy Authentication
  Required.` (azure-powershell#26402), `(403) Forbidden.` (winposh#10).
- SocketException texts with the ` IP:PORT` suffix: `No connection could be made because
  the target machine actively refused it IP:443` (verified, NeteaseReverseLadder#15; suffix
  from referencesource SocketException.cs). The 10065/10051/10054 texts are the standard
  Winsock messages (reconstructed: not in the reference).
- The proxy name failure `The proxy name could not be resolved: 'PROXYHOST'` and a proxy's
  CONNECT status surfacing as a plain ProtocolError are reconstructed (reference §3.1, §3.6).
- Records: the JSON that probe.ps1 builds, serialised like 5.1's ConvertTo-Json -Compress
  (JavaScriptSerializer: `<`, `>`, `&`, `'` escaped as \\u003c...).
- stderr: the CLIXML progress noise `Preparing modules for first use.` that 5.1 writes when a
  module is first loaded under WinRM (verified verbatim: inspec/train#153), and CLIXML error
  records in 5.1's NormalView layout (reference §2 and §4; pywinrm test fixture).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.x509.oid import NameOID

ALLOWED_NETWORKS = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("10.213.0.0/16"),
)
RECORD_MARK = "AUDITOR-PS1"
_MAX_HEAD = 64 * 1024
_MAX_BODY = 1 << 20
_MAX_SCRIPT = 1 << 20

# net_httpstatuscode_* resource values (.NET Framework System.txt); 5.1 prints these, not the
# server's reason phrase, and falls back to the phrase only for codes without a resource.
NET_STATUS_TEXT = {
    300: "Multiple Choices Redirect",
    301: "Moved Permanently Redirect",
    302: "Found Redirect",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy Redirect",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Server Unavailable",
    504: "Gateway Timeout",
    505: "Http Version Not Supported",
}

# "The underlying connection was closed: {0}." / "The request was aborted: {0}." around the
# net_webstatus_* texts, as the reference's verified strings show for each status.
_CLOSED = "The underlying connection was closed: {}."
MSG = {
    "NameResolutionFailure": "The remote name could not be resolved: '{}'",
    "ProxyNameResolutionFailure": "The proxy name could not be resolved: '{}'",
    "ConnectFailure": "Unable to connect to the remote server",
    "Timeout": "The operation has timed out.",
    "TrustFailure": _CLOSED.format(
        "Could not establish trust relationship for the SSL/TLS secure channel"
    ),
    "SecureChannelFailure": "The request was aborted: Could not create SSL/TLS secure channel.",
    "SendFailure": _CLOSED.format("An unexpected error occurred on a send"),
    "ReceiveFailure": _CLOSED.format("An unexpected error occurred on a receive"),
    "ConnectionClosed": _CLOSED.format("The connection was closed unexpectedly"),
    "ServerProtocolViolation": "The server committed a protocol violation. "
    "Section=ResponseStatusLine",
}
CERT_INVALID = "The remote certificate is invalid according to the validation procedure."
AUTH_EOF = "Authentication failed because the remote party has closed the transport stream."
_SOCKET_TEXT = {
    "ConnectionRefused": "No connection could be made because the target machine actively "
    "refused it {}",
    "HostUnreachable": "A socket operation was attempted to an unreachable host {}",
    "NetworkUnreachable": "A socket operation was attempted to an unreachable network {}",
}
CONNECTION_RESET = "An existing connection was forcibly closed by the remote host"

# Verbatim shape from inspec/train#153 (one record; 5.1 writes it as modules load).
CLIXML_PROGRESS = (
    "#< CLIXML\r\n"
    '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject'
    '</T><T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record">'
    "<AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC>"
    "<T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj></Objs>"
)


@dataclass(frozen=True)
class Machine:
    """What the emulated host says about itself."""

    hostname: str = "WIN-LAB01"
    os: str = "Microsoft Windows Server 2019 Standard"
    os_version: str = "10.0.17763"
    ps_version: str = "5.1.17763.6414"
    console_width: int = 120
    clixml_progress: bool = True


@dataclass(frozen=True)
class Network:
    """How the emulated host resolves names, trusts certificates and finds its proxy.

    `hosts` maps a name to an IPv4 address (or to None: the name does not exist). With
    `system_dns` False nothing else resolves, so tests never query real DNS; in the lab
    (True) the namespace's own resolver file answers. `ca_bundle` stands in for the
    Windows root store. `proxy` stands in for the WinINET proxy (from `https_proxy`).
    """

    hosts: Mapping[str, str | None] = field(default_factory=dict)
    system_dns: bool = False
    ca_bundle: str | None = None
    proxy: str | None = None
    no_proxy: tuple[str, ...] = ()

    def proxy_for(self, host: str) -> tuple[str, int] | None:
        if not self.proxy:
            return None
        name = host.lower().rstrip(".")
        for entry in self.no_proxy:
            rule = entry.strip().lower().lstrip(".")
            if rule == "*" or (rule and (name == rule or name.endswith("." + rule))):
                return None
        parts = urlsplit(self.proxy if "://" in self.proxy else f"http://{self.proxy}")
        if not parts.hostname:
            return None
        return parts.hostname, parts.port or 80


class Output:
    """A command's stdout/stderr as it is produced, read by WS-Man Receive."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._out = bytearray()
        self._err = bytearray()
        self.exit_code: int | None = None

    def write(self, stdout: bytes = b"", stderr: bytes = b"") -> None:
        with self._cond:
            self._out += stdout
            self._err += stderr
            self._cond.notify_all()

    def finish(self, code: int) -> None:
        with self._cond:
            if self.exit_code is None:
                self.exit_code = code
            self._cond.notify_all()

    def take(self, wait_s: float) -> tuple[bytes, bytes, int | None]:
        """Wait up to `wait_s` for news; return new bytes and the exit code if done."""
        with self._cond:
            if not self._out and not self._err and self.exit_code is None:
                self._cond.wait(wait_s)
            out, err = bytes(self._out), bytes(self._err)
            self._out.clear()
            self._err.clear()
            return out, err, self.exit_code


class _WebError(Exception):
    """A System.Net.WebException as 5.1 would raise it, with what the probe reads.

    `phrase`, `tunnel` and `verify_code` are not shown by 5.1; they record what happened on
    the wire (the server's reason phrase, whether a proxy refused the CONNECT, OpenSSL's
    verification code) for flavours whose exceptions do show it (`auditor_lab.ps7`).
    """

    def __init__(
        self,
        status: str,
        msg: str,
        inner: str = "",
        sock: str = "",
        tls: bool = False,
        code: int = 0,
        phrase: str = "",
        tunnel: bool = False,
        verify_code: int = 0,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.inner = inner
        self.sock = sock
        self.tls = tls
        self.code = code
        self.phrase = phrase
        self.tunnel = tunnel
        self.verify_code = verify_code


class _Guard(Exception):
    """The lab refuses to send traffic outside its own address ranges."""


def ps51_json(obj: Mapping[str, Any]) -> str:
    """ConvertTo-Json -Compress as 5.1 writes it (JavaScriptSerializer escapes)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(ch, esc)
    return text


def record_line(
    nonce: str, obj: Mapping[str, Any], to_json: Callable[[Mapping[str, Any]], str] = ps51_json
) -> bytes:
    body = base64.b64encode(to_json(obj).encode("utf-8")).decode("ascii")
    return f"{RECORD_MARK} {nonce} {body}\r\n".encode("ascii")


def _check_allowed(ip: str) -> None:
    addr = ipaddress.ip_address(ip)
    if not any(addr in net for net in ALLOWED_NETWORKS):
        raise _Guard(f"lab emulator refused to contact {ip}: outside 127.0.0.0/8 and 10.213.0.0/16")


def _resolve(name: str, network: Network) -> str | None:
    """IPv4 address for `name`, or None when the name does not resolve."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(name))
    key = name.lower().rstrip(".")
    if key in network.hosts:
        return network.hosts[key] or None
    if not network.system_dns:
        return None
    try:
        infos = socket.getaddrinfo(key, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _WebError("Timeout", MSG["Timeout"])
    return left


def _connect(ip: str, port: int, deadline: float) -> socket.socket:
    _check_allowed(ip)
    endpoint = f"{ip}:{port}"
    try:
        return socket.create_connection((ip, port), timeout=_remaining(deadline))
    except TimeoutError:
        raise _WebError("Timeout", MSG["Timeout"]) from None
    except OSError as exc:
        kind = {
            errno.ECONNREFUSED: "ConnectionRefused",
            errno.EHOSTUNREACH: "HostUnreachable",
            errno.ENETUNREACH: "NetworkUnreachable",
        }.get(exc.errno or 0)
        if kind is None:
            raise _WebError("ConnectFailure", MSG["ConnectFailure"], inner=str(exc)) from None
        inner = _SOCKET_TEXT[kind].format(endpoint)
        raise _WebError("ConnectFailure", MSG["ConnectFailure"], inner=inner, sock=kind) from None


def _recv_head(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_HEAD:
            raise _WebError("ServerProtocolViolation", MSG["ServerProtocolViolation"])
        sock.settimeout(_remaining(deadline))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise _WebError("Timeout", MSG["Timeout"]) from None
        except (ConnectionResetError, ssl.SSLError):
            raise _WebError(
                "ReceiveFailure",
                MSG["ReceiveFailure"],
                inner=CONNECTION_RESET,
                sock="ConnectionReset",
            ) from None
        if not chunk:
            raise _WebError("ConnectionClosed", MSG["ConnectionClosed"])
        data += chunk
    return data


def _status_of(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    match = re.fullmatch(r"HTTP/1\.[01] (\d{3})(?: (.*))?", lines[0])
    if not match:
        raise _WebError("ServerProtocolViolation", MSG["ServerProtocolViolation"])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(match.group(1)), match.group(2) or "", headers


def _protocol_error(code: int, phrase: str, tunnel: bool = False) -> _WebError:
    text = NET_STATUS_TEXT.get(code, phrase)
    return _WebError(
        "ProtocolError",
        f"The remote server returned an error: ({code}) {text}.",
        code=code,
        phrase=phrase,
        tunnel=tunnel,
    )


def _drain_body(
    sock: socket.socket, head: bytes, headers: Mapping[str, str], deadline: float
) -> None:
    # 5.1 reads the whole body before Invoke-WebRequest returns; a stalled body times out.
    have = len(head.split(b"\r\n\r\n", 1)[1])
    length = headers.get("content-length")
    want = int(length) if length and length.isdigit() else _MAX_BODY
    if headers.get("transfer-encoding", "").lower() == "chunked":
        want = _MAX_BODY  # read until the terminating chunk or close, within bounds
    while have < min(want, _MAX_BODY):
        sock.settimeout(_remaining(deadline))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise _WebError("Timeout", MSG["Timeout"]) from None
        except (ConnectionResetError, ssl.SSLError):
            return
        if not chunk or chunk.endswith(b"0\r\n\r\n"):
            return
        have += len(chunk)


def _tls(sock: socket.socket, host: str, network: Network, deadline: float) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=network.ca_bundle)
    # The probe adds Tls12 to ServicePointManager.SecurityProtocol: 5.1 speaks TLS 1.2.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    sock.settimeout(_remaining(deadline))
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise _WebError(
            "TrustFailure",
            MSG["TrustFailure"],
            inner=CERT_INVALID,
            tls=True,
            verify_code=exc.verify_code or 0,
        ) from None
    except TimeoutError:
        raise _WebError("Timeout", MSG["Timeout"]) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError):
        raise _WebError("SendFailure", MSG["SendFailure"], inner=AUTH_EOF, tls=True) from None
    except ssl.SSLError:
        raise _WebError("SecureChannelFailure", MSG["SecureChannelFailure"]) from None


def _open_tunnel(
    proxy: tuple[str, int], host: str, port: int, network: Network, deadline: float
) -> socket.socket:
    proxy_ip = _resolve(proxy[0], network)
    if proxy_ip is None:
        raise _WebError(
            "ProxyNameResolutionFailure", MSG["ProxyNameResolutionFailure"].format(proxy[0])
        )
    sock = _connect(proxy_ip, proxy[1], deadline)
    try:
        target = f"{host}:{port}"
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
        code, phrase, _ = _status_of(_recv_head(sock, deadline))
    except BaseException:
        sock.close()
        raise
    if code != 200:
        sock.close()
        # .NET hands the failed CONNECT's WebException to the request unchanged (§3.6).
        raise _protocol_error(code, phrase, tunnel=True)
    return sock


def _user_agent(machine: Machine) -> str:
    return (
        f"Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/{machine.ps_version}"
    )


def http_get(url: str, timeout_s: float, machine: Machine, network: Network) -> int:
    """GET `url` like HttpWebRequest under Invoke-WebRequest on 5.1; the status, or raise."""
    deadline = time.monotonic() + timeout_s
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    proxy = network.proxy_for(host)
    if proxy and https:
        sock = _open_tunnel(proxy, host, port, network, deadline)
    elif proxy:
        proxy_ip = _resolve(proxy[0], network)
        if proxy_ip is None:
            raise _WebError(
                "ProxyNameResolutionFailure", MSG["ProxyNameResolutionFailure"].format(proxy[0])
            )
        sock = _connect(proxy_ip, proxy[1], deadline)
    else:
        ip = _resolve(host, network)
        if ip is None:
            raise _WebError("NameResolutionFailure", MSG["NameResolutionFailure"].format(host))
        sock = _connect(ip, port, deadline)
    try:
        if https:
            sock = _tls(sock, host, network, deadline)
        target = (
            url
            if proxy and not https
            else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        )
        request = (
            f"GET {target} HTTP/1.1\r\nUser-Agent: {_user_agent(machine)}\r\n"
            f"Host: {parts.netloc.rsplit('@', 1)[-1]}\r\nConnection: Keep-Alive\r\n\r\n"
        )
        sock.settimeout(_remaining(deadline))
        try:
            sock.sendall(request.encode("ascii", errors="replace"))
        except TimeoutError:
            raise _WebError("Timeout", MSG["Timeout"]) from None
        except OSError:
            raise _WebError(
                "SendFailure", MSG["SendFailure"], inner=CONNECTION_RESET, sock="ConnectionReset"
            ) from None
        head = _recv_head(sock, deadline)
        code, phrase, headers = _status_of(head)
        if code >= 400:
            raise _protocol_error(code, phrase)
        _drain_body(sock, head, headers, deadline)
        return code
    finally:
        sock.close()


def dotnet_name(name: x509.Name) -> str:
    """An X.500 name as .NET's X509Certificate.Issuer prints it (last RDN first)."""
    short = {
        NameOID.COMMON_NAME: "CN",
        NameOID.ORGANIZATION_NAME: "O",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
        NameOID.COUNTRY_NAME: "C",
        NameOID.LOCALITY_NAME: "L",
        NameOID.STATE_OR_PROVINCE_NAME: "S",
        NameOID.EMAIL_ADDRESS: "E",
        NameOID.DOMAIN_COMPONENT: "DC",
    }
    parts = []
    for rdn in reversed(list(name.rdns)):
        for attr in rdn:
            key = short.get(attr.oid, f"OID.{attr.oid.dotted_string}")
            value = str(attr.value)
            if any(ch in value for ch in ',+="\n<>#;'):
                value = '"' + value.replace('"', '""') + '"'
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def read_issuer(url: str, proxy_used: bool, connect_ms: int, network: Network) -> str:
    """Connect again accepting any certificate, only to read its issuer (as the probe does)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    deadline = time.monotonic() + connect_ms / 1000.0
    try:
        proxy = network.proxy_for(host) if proxy_used else None
        if proxy:
            sock = _open_tunnel(proxy, host, port, network, deadline)
        else:
            ip = _resolve(host, network)
            if ip is None:
                return ""
            sock = _connect(ip, port, deadline)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
        return dotnet_name(x509.load_der_x509_certificate(der).issuer) if der else ""
    except (_WebError, _Guard, OSError, ValueError):
        return ""


def tunnel_answer(url: str, connect_ms: int, network: Network) -> str:
    """Ask the URL's proxy for a CONNECT tunnel, as the probe does after a proxied HTTPS 403:
    `granted` (the proxy answered 200), `denied` (it answered anything else) or `no_answer`
    (it could not be reached, or did not answer in time)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    proxy = network.proxy_for(host)
    if not proxy:
        return "no_answer"
    deadline = time.monotonic() + connect_ms / 1000.0
    try:
        _open_tunnel(proxy, host, parts.port or 443, network, deadline).close()
    except _WebError as exc:
        # A status other than 200, a broken or closed answer: the probe's header read does
        # not match "HTTP/x 200". A timeout or a failed connect leaves it without an answer.
        answered = exc.status in ("ProtocolError", "ServerProtocolViolation", "ConnectionClosed")
        return "denied" if answered else "no_answer"
    except (_Guard, OSError, ValueError):
        return "no_answer"
    return "granted"


# WebException.Status / HttpRequestError values after which the probe reads the issuer again.
_TLS_REASONS = frozenset({"TrustFailure", "SecureChannelFailure", "SecureConnectionError"})


def gather_more(rec: dict[str, Any], url: str, connect_ms: int, network: Network) -> None:
    """What probe.ps1 looks at after the request, into `rec`: the proxy's own answer to a
    CONNECT after a proxied HTTPS 403, and the certificate's issuer after a TLS error."""
    https = url.lower().startswith("https:")
    if rec["status"] == 403 and rec["proxy"] and https:
        rec["tunnel"] = tunnel_answer(url, connect_ms, network)
    tls_error = rec["reason"] in _TLS_REASONS or (rec["tls"] and rec["status"] == 0)
    if tls_error and https:
        rec["issuer"] = read_issuer(url, bool(rec["proxy"]), connect_ms, network)


def target_record(index: int, url: str, network: Network) -> dict[str, Any]:
    """A target record as probe.ps1's worker starts it: the proxy the URL goes through is
    all that is known yet."""
    rec: dict[str, Any] = {
        "kind": "target",
        "i": index,
        "status": 0,
        "type": "",
        "reason": "",
        "msg": "",
        "inner": "",
        "sock": "",
        "tls": False,
        "tunnel": "",
        "issuer": "",
        "proxy": "",
        "ms": 0,
    }
    proxy = network.proxy_for(urlsplit(url).hostname or "")
    if proxy:
        # [string] of the Uri that GetProxy returns (DefaultWebProxy on 5.1,
        # HttpClient.DefaultProxy on 7): scheme, host, port and a trailing slash.
        rec["proxy"] = f"http://{proxy[0]}:{proxy[1]}/"
    return rec


def probe_target(
    index: int,
    url: str,
    timeout_s: int,
    connect_ms: int,
    machine: Machine,
    network: Network,
) -> dict[str, Any]:
    """The record probe.ps1's worker returns for one target on Windows PowerShell 5.1."""
    rec = target_record(index, url, network)
    start = time.monotonic()
    try:
        rec["status"] = http_get(url, timeout_s, machine, network)
    except _WebError as exc:
        rec.update(
            type="System.Net.WebException",
            reason=exc.status,
            msg=exc.msg,
            inner=exc.inner,
            sock=exc.sock,
            status=exc.code,
            tls=exc.tls,
        )
    except _Guard as exc:
        rec.update(type="AuditorLab.GuardException", msg=str(exc))
    rec["ms"] = int((time.monotonic() - start) * 1000)
    gather_more(rec, url, connect_ms, network)
    return rec


@dataclass(frozen=True)
class Flavour:
    """What the probe prints differently from one PowerShell to the next: the edition in
    `$PSVersionTable`, each target's record (exception shapes) and ConvertTo-Json's output.
    The network underneath (`http_get`) is the same for every flavour."""

    name: str
    edition: str
    probe_target: Callable[[int, str, int, int, Machine, Network], dict[str, Any]]
    to_json: Callable[[Mapping[str, Any]], str]


WINDOWS_POWERSHELL_51 = Flavour("5.1", "Desktop", probe_target, ps51_json)


# --- the command line and the script -----------------------------------------------------

_ENCODED_ARG = re.compile(r"(?i)(?:^|\s)-(?:encodedcommand|enc|ec|e)\s+([A-Za-z0-9+/=]+)")
_PAYLOAD = re.compile(r"FromBase64String\('([A-Za-z0-9+/=]+)'\)")
_DATA = re.compile(r"\$AuditorData\s*=\s*'([A-Za-z0-9+/=]*)'")


def decode_command(command_line: str) -> str | None:
    """The PowerShell source of a `powershell.exe ... -EncodedCommand B64` line (or
    `pwsh.exe ...`), or None."""
    if not re.match(r"(?i)\s*(?:\S*[\\/])?(?:powershell|pwsh)(?:\.exe)?(?:\s|$)", command_line):
        return None
    match = _ENCODED_ARG.search(command_line)
    if not match:
        return None
    try:
        return base64.b64decode(match.group(1), validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError):
        return None


def probe_data(script: str) -> dict[str, Any] | None:
    """The probe's data document, reading through the builder's deflate bootstrap."""
    inner = script
    match = _PAYLOAD.search(script)
    if match and "DeflateStream" in script:
        try:
            packed = base64.b64decode(match.group(1), validate=True)
            inflater = zlib.decompressobj(-15)
            inner = inflater.decompress(packed, _MAX_SCRIPT).decode("utf-8")
        except (binascii.Error, zlib.error, UnicodeDecodeError):
            return None
    data = _DATA.search(inner)
    if not data:
        return None
    try:
        doc = json.loads(base64.b64decode(data.group(1), validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def clixml_error(lines: Sequence[str], width: int) -> bytes:
    """A 5.1 error record on redirected stderr: CLIXML, one <S S="Error"> per screen line.

    Lines longer than the console width are hard-wrapped, as the console host does (§2).
    """
    shown: list[str] = []
    for line in [*lines, " "]:
        while len(line) > width:
            cut = line.rfind(" ", 0, width)
            cut = cut if cut > 0 else width
            shown.append(line[: cut + 1] if line[cut : cut + 1] == " " else line[:cut])
            line = line[cut + 1 :] if line[cut : cut + 1] == " " else line[cut:]
        shown.append(line)
    body = "".join(f'<S S="Error">{escape(s)}_x000D__x000A_</S>' for s in shown)
    return (
        "#< CLIXML\r\n"
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f"{body}</Objs>"
    ).encode()


def constrained_language_error(script: str, width: int) -> bytes:
    """What 5.1 prints when the bootstrap's [Convert]:: call meets Constrained Language Mode."""
    line1 = script.splitlines()[0] if script else ""
    col = max(0, line1.find("[Convert]"))
    shown = line1 if len(line1) <= width - 3 else line1[: width - 7] + " ..."
    return clixml_error(
        [
            "Cannot invoke method. Method invocation is supported only on core types in this "
            "language mode.",
            f"At line:1 char:{col + 1}",
            f"+ {shown}",
            "+ " + " " * min(col, width - 4) + "~" * max(1, min(54, width - 4 - col)),
            "    + CategoryInfo          : InvalidOperation: (:) [], RuntimeException",
            "    + FullyQualifiedErrorId : MethodInvocationNotSupportedInConstrainedLanguage",
        ],
        width,
    )


# --- running a command ---------------------------------------------------------------------

NOT_RECOGNIZED = (
    b"'powershell.exe' is not recognized as an internal or external command,\r\n"
    b"operable program or batch file.\r\n"
)
COMMAND_TOO_LONG = b"The command line is too long.\r\n"


def run_probe(
    doc: Mapping[str, Any],
    machine: Machine,
    network: Network,
    out: Output,
    cancel: threading.Event,
    behaviour: str = "normal",
    flavour: Flavour = WINDOWS_POWERSHELL_51,
) -> None:
    """Print what probe.ps1 prints for `doc`, streaming records as targets finish."""
    nonce = str(doc.get("nonce", ""))

    def emit(obj: Mapping[str, Any]) -> None:
        out.write(record_line(nonce, obj, flavour.to_json))

    if behaviour == "no_iwr":
        # PowerShell 2.0 (no Invoke-WebRequest): the probe's own early record, exit 3.
        out.write(
            f"{RECORD_MARK} {nonce} ".encode()
            + base64.b64encode(b'{"kind":"unavailable","ps":"2.0"}')
            + b"\r\n"
        )
        out.finish(3)
        return
    if machine.clixml_progress:
        out.write(stderr=CLIXML_PROGRESS.encode())
    facts = {
        "kind": "facts",
        "os_version": machine.os_version,
        "ps_edition": flavour.edition,
        "hostname": machine.hostname,
        "os": machine.os,
        "ps_version": machine.ps_version,
    }
    emit(facts)
    targets = [t for t in doc.get("targets", []) if isinstance(t, dict)]
    timeout_s = max(1, int(doc.get("timeout", 10)))
    connect_ms = max(100, int(doc.get("connect_ms", 5000)))
    deadline = time.monotonic() + float(doc.get("deadline", timeout_s + 5))
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(len(targets) or 1, int(doc.get("parallel", 10))))
    )
    pending: dict[Future[dict[str, Any]], int] = {}
    for index, target in enumerate(targets):
        pending[
            pool.submit(
                flavour.probe_target,
                index,
                str(target.get("url", "")),
                timeout_s,
                connect_ms,
                machine,
                network,
            )
        ] = index
    try:
        while pending and not cancel.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done, _ = wait(list(pending), timeout=min(left, 0.25), return_when=FIRST_COMPLETED)
            for fut in done:
                index = pending.pop(fut)
                try:
                    rec = fut.result()
                except Exception as exc:  # the probe reports a failed worker
                    rec = {"kind": "target", "i": index, "msg": f"probe worker failed: {exc}"}
                emit(rec)
        if cancel.is_set():
            return
        for index in sorted(pending.values()):
            emit({"kind": "target", "i": index, "deadline": True})
        emit({"kind": "done", "count": len(targets)})
        out.finish(0)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_command(
    command_line: str,
    skip_cmd_shell: bool,
    machine: Machine,
    network: Network,
    out: Output,
    cancel: threading.Event,
    behaviour: str = "normal",
    flavour: Flavour = WINDOWS_POWERSHELL_51,
) -> None:
    """Run one WinRS command as the emulated host would; ends with `out.finish`."""
    if not skip_cmd_shell and len(command_line) > 8191:
        # cmd.exe's limit (KB830473; pywinrm#184 shows this very message).
        out.write(stderr=COMMAND_TOO_LONG)
        out.finish(1)
        return
    if behaviour == "no_powershell":
        program = command_line.split(" ", 1)[0] or "powershell.exe"
        out.write(stderr=NOT_RECOGNIZED.replace(b"powershell.exe", program.encode()[:200]))
        out.finish(9009)
        return
    if behaviour == "hang":
        cancel.wait()
        return
    script = decode_command(command_line)
    if script is None:
        out.write(
            stderr=b"'"
            + command_line.split(" ", 1)[0].encode(errors="replace")[:200]
            + b"' is not recognized as an internal or external command,\r\n"
            b"operable program or batch file.\r\n"
        )
        out.finish(9009)
        return
    if behaviour == "constrained_language":
        out.write(stderr=constrained_language_error(script, machine.console_width))
        out.finish(1)
        return
    if behaviour == "garbage":
        out.write(b"\x00\xff<Objs>not a record\r\nAUDITOR-PS1 forged nonce\r\n\x1b[31mhello\r\n")
        out.finish(0)
        return
    doc = probe_data(script)
    if doc is None:
        out.write(
            stderr=clixml_error(
                [
                    "The lab emulator only runs the auditor's probe script.",
                    "    + CategoryInfo          : NotImplemented: (:) [], NotSupportedException",
                    "    + FullyQualifiedErrorId : AuditorLabUnsupportedScript",
                ],
                machine.console_width,
            )
        )
        out.finish(1)
        return
    run_probe(doc, machine, network, out, cancel, behaviour, flavour)


def start_command(
    command_line: str,
    skip_cmd_shell: bool,
    machine: Machine,
    network: Network,
    behaviour: str = "normal",
    flavour: Flavour = WINDOWS_POWERSHELL_51,
) -> tuple[Output, threading.Event]:
    """Run a command on a daemon thread; returns its output and a cancel event."""
    out = Output()
    cancel = threading.Event()

    def body() -> None:
        try:
            run_command(
                command_line, skip_cmd_shell, machine, network, out, cancel, behaviour, flavour
            )
        except Exception as exc:  # a lab bug must still end the command
            out.write(
                stderr=clixml_error([f"lab emulator failure: {type(exc).__name__}: {exc}"], 120)
            )
            out.finish(1)

    threading.Thread(target=body, name="ps51", daemon=True).start()
    return out, cancel


__all__ = [
    "ALLOWED_NETWORKS",
    "WINDOWS_POWERSHELL_51",
    "Flavour",
    "Machine",
    "Network",
    "Output",
    "decode_command",
    "dotnet_name",
    "gather_more",
    "http_get",
    "probe_data",
    "probe_target",
    "run_command",
    "start_command",
    "target_record",
    "tunnel_answer",
]
