"""PowerShell 7 (7.4 and later) as the lab's Windows hosts can answer: the probe's records.

`auditor_lab.ps51` makes the probe's HTTP requests from inside the host's namespace and
raises what Windows PowerShell 5.1 would (a WebException with its `Status`). The network
events underneath are the same on PowerShell 7; what differs is the exception the probe
catches there: an `HttpRequestException` with an inner `SocketException` or
`AuthenticationException`, PowerShell's own `HttpResponseException` for a status code, a
`TaskCanceledException` when `-TimeoutSec` expires. This module turns each 5.1 failure into
that PowerShell 7 shape and builds the record probe.ps1 prints from it (evidence only: the
auditor's classifier decides); the run loop and the probe's follow-up look-ups are shared.

Sources (marks as in the Invoke-WebRequest error reference notes; the probe records
`$_.Exception.Message`, the outer text, not the ErrorDetails PowerShell 7 displays):
- Name not resolvable: `No such host is known. (HOST:443)`, inner SocketException
  `No such host is known.` (11001, SocketError HostNotFound); verified .NET text,
  gwdevhub/Daybreak#1042; display verified in ChrisTitusTech/winutil#179. Reference §3.1.
- Connection refused: `No connection could be made because the target machine actively
  refused it. (HOST:443)`; the inner text verified in winutil#645 and PowerShell#15322, the
  ` (HOST:443)` suffix in bloxstraplabs/bloxstrap#1795. Reference §3.2. Through a proxy the
  endpoint named is the proxy's (reconstructed: no capture shows it).
- `-TimeoutSec` expired (7.4+): TaskCanceledException `The request was canceled due to the
  configured HttpClient.Timeout of N seconds elapsing.` (.NET text verified,
  Aerion/uptobox-dl#8; reference §3.3). Its inner TimeoutException's message is NOT given by
  the reference, so the record's `inner` stays empty (a real host would fill it).
- Untrusted certificate: outer `The SSL connection could not be established, see inner
  exception.` (verified, PowerShell/PowerShellGallery#237), inner `The remote certificate is
  invalid because of errors in the certificate chain: UntrustedRoot` (verified, same issue
  and PowerShell#15581); a name mismatch gives `The remote certificate is invalid according
  to the validation procedure: RemoteCertificateNameMismatch` (verified,
  HotCakeX/Harden-Windows-Security#190). Reference §3.4. Other TLS failures (protocol
  mismatch, handshake cut, other chain errors) keep the outer text; their inner text was not
  established (reference §3.5), so `inner` stays empty.
- Origin status >= 400: HttpResponseException `Response status code does not indicate
  success: {code} ({server's reason phrase}).` (resource ResponseStatusCodeFailure; format
  verified for 404 in PowerShell#20965). Reference §3.6.
- Proxy refused the CONNECT (7.2+): HttpRequestException `The proxy tunnel request to proxy
  'http://PROXY:PORT/' failed with status code '403'.`, no inner exception (.NET text
  verified, microsoft/artifacts-credprovider#495). Reference §3.6.
- `HttpRequestError` values (7.4+, .NET 8): NameResolutionError, ConnectionError,
  SecureConnectionError, ProxyTunnelError (reference §3, §5; learn.microsoft.com
  System.Net.Http.HttpRequestError).

Not from the reference, and said so where used: `PSEdition` Core, the 7.4 version string,
HttpResponseException's `HttpRequestError` (Unknown), ConvertTo-Json's escaping on 7, and the
absence of 5.1's "Preparing modules for first use." progress record. Conditions whose
PowerShell 7 shape no source gives (a proxy name that does not resolve, unreachable
host/network, connection reset or closed mid-response, a protocol violation, a 3xx answer
under `-MaximumRedirection 0`) are not emulated: the record says so, with an exception type
of the lab's own, and the auditor reports an `error`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from auditor_lab.ps51 import (
    Flavour,
    Machine,
    Network,
    _Guard,
    _WebError,
    gather_more,
    http_get,
    target_record,
)

VERSION = "7.4.6"
"""`$PSVersionTable.PSVersion` of the emulated host: a release of the 7.4 line, the first
with `HttpRequestError` (.NET 8) and the `ConnectionTimeoutReached` timeout shape."""
EDITION = "Core"
"""`$PSVersionTable.PSEdition` on PowerShell 6 and later (5.1 says Desktop). Not in the
reference; it is the value the probe's facts record carries."""

HTTP_REQUEST_EXCEPTION = "System.Net.Http.HttpRequestException"
HTTP_RESPONSE_EXCEPTION = "Microsoft.PowerShell.Commands.HttpResponseException"
TASK_CANCELED_EXCEPTION = "System.Threading.Tasks.TaskCanceledException"
NOT_EMULATED = "AuditorLab.NotEmulatedException"

NO_SUCH_HOST = "No such host is known."
REFUSED = "No connection could be made because the target machine actively refused it."
SSL_FAILED = "The SSL connection could not be established, see inner exception."
UNTRUSTED_ROOT = (
    "The remote certificate is invalid because of errors in the certificate chain: UntrustedRoot"
)
NAME_MISMATCH = (
    "The remote certificate is invalid according to the validation procedure: "
    "RemoteCertificateNameMismatch"
)
TIMED_OUT = (
    "The request was canceled due to the configured HttpClient.Timeout of {} seconds elapsing."
)
STATUS_FAILURE = "Response status code does not indicate success: {} ({})."
PROXY_TUNNEL = "The proxy tunnel request to proxy '{}' failed with status code '{}'."

# OpenSSL verification results that mean "issuer not trusted" (no path to a trusted root),
# which Windows reports as UntrustedRoot, and the one that means a name mismatch.
_UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21})
_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True)
class Exception7:
    """What probe.ps1 reads off `$_.Exception` on PowerShell 7.4+."""

    type: str
    msg: str
    reason: str = ""
    inner: str = ""
    sock: str = ""
    tls: bool = False
    status: int = 0


def _not_emulated(error: _WebError) -> Exception7:
    return Exception7(
        NOT_EMULATED,
        f"the lab does not emulate PowerShell 7's error for this condition "
        f"(Windows PowerShell 5.1 status {error.status}): no source gives its shape",
    )


def _endpoint(url: str, proxy: str) -> str:
    """HOST:PORT as .NET appends it to connect errors: the host as named, not its address."""
    parts = urlsplit(proxy or url)
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname}:{parts.port or default}"


def exception_for(error: _WebError, url: str, timeout_s: int, proxy: str = "") -> Exception7:
    """The exception PowerShell 7.4+ raises where 5.1 raised `error` (reference §5).

    `proxy` is the proxy the probe reported for the URL (`http://HOST:PORT/`) or empty.
    """
    status = error.status
    if status == "NameResolutionFailure":
        return Exception7(
            HTTP_REQUEST_EXCEPTION,
            f"{NO_SUCH_HOST} ({_endpoint(url, '')})",
            reason="NameResolutionError",
            inner=NO_SUCH_HOST,
            sock="HostNotFound",
        )
    if status == "ConnectFailure" and error.sock == "ConnectionRefused":
        return Exception7(
            HTTP_REQUEST_EXCEPTION,
            f"{REFUSED} ({_endpoint(url, proxy)})",
            reason="ConnectionError",
            inner=REFUSED,
            sock="ConnectionRefused",
        )
    if status == "Timeout":
        # Every expiry of the request's time budget is -TimeoutSec's: HttpClient.Timeout
        # covers the connect, the handshake and the response headers alike.
        return Exception7(TASK_CANCELED_EXCEPTION, TIMED_OUT.format(timeout_s))
    if status == "TrustFailure":
        inner = ""
        if error.verify_code == _HOSTNAME_MISMATCH:
            inner = NAME_MISMATCH
        elif error.verify_code in _UNTRUSTED_CODES:
            inner = UNTRUSTED_ROOT
        return Exception7(
            HTTP_REQUEST_EXCEPTION,
            SSL_FAILED,
            reason="SecureConnectionError",
            inner=inner,
            tls=True,
        )
    if status == "SecureChannelFailure" or (
        error.tls and status in ("SendFailure", "ReceiveFailure")
    ):
        return Exception7(
            HTTP_REQUEST_EXCEPTION, SSL_FAILED, reason="SecureConnectionError", tls=True
        )
    if status == "ProtocolError" and error.tunnel:
        return Exception7(
            HTTP_REQUEST_EXCEPTION,
            PROXY_TUNNEL.format(proxy, error.code),
            reason="ProxyTunnelError",
        )
    if status == "ProtocolError":
        # HttpRequestError is not in the reference for this exception; Unknown is the value
        # .NET gives an HttpRequestException built without one. The status code is what
        # counts here.
        return Exception7(
            HTTP_RESPONSE_EXCEPTION,
            STATUS_FAILURE.format(error.code, error.phrase),
            reason="Unknown",
            status=error.code,
        )
    return _not_emulated(error)


def ps7_json(obj: Mapping[str, Any]) -> str:
    """ConvertTo-Json -Compress on 7 (Json.NET): only control characters, quotes and
    backslashes are escaped. Not in the reference; from ConvertTo-Json's documented
    `-EscapeHandling Default`. The parser reads either form."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def probe_target(
    index: int,
    url: str,
    timeout_s: int,
    connect_ms: int,
    machine: Machine,
    network: Network,
) -> dict[str, Any]:
    """The record probe.ps1's worker returns for one target on PowerShell 7.4+."""
    rec = target_record(index, url, network)
    start = time.monotonic()
    shape: Exception7 | None = None
    try:
        code = http_get(url, timeout_s, machine, network)
        if 300 <= code < 400:
            shape = Exception7(
                NOT_EMULATED,
                f"the lab does not emulate PowerShell 7's answer to HTTP {code} under "
                "-MaximumRedirection 0: no source gives its shape",
            )
        else:
            rec["status"] = code
    except _WebError as exc:
        shape = exception_for(exc, url, timeout_s, rec["proxy"])
    except _Guard as exc:
        shape = Exception7("AuditorLab.GuardException", str(exc))
    if shape is not None:
        rec.update(
            type=shape.type,
            reason=shape.reason,
            msg=shape.msg,
            inner=shape.inner,
            sock=shape.sock,
            status=shape.status,
        )
    rec["ms"] = int((time.monotonic() - start) * 1000)
    rec["tls"] = shape is not None and shape.tls
    gather_more(rec, url, connect_ms, network)
    return rec


POWERSHELL_7 = Flavour("7", EDITION, probe_target, ps7_json)
MACHINE_DEFAULTS: Mapping[str, Any] = {"ps_version": VERSION, "clixml_progress": False}
"""What a PowerShell 7 host says about itself unless its config says otherwise. The 5.1
emulation's first-use progress record (verified for 5.1 only) is not written on 7: no source
shows what 7 writes to stderr there."""

__all__ = [
    "EDITION",
    "MACHINE_DEFAULTS",
    "POWERSHELL_7",
    "VERSION",
    "Exception7",
    "exception_for",
    "probe_target",
    "ps7_json",
]
