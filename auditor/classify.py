"""Evidence in, verdict out: the one place a probe's result becomes an `Outcome`.

Probe scripts only gather evidence (what the HTTP client said: an exit code or an exception,
the HTTP status, the proxy it went through, the issuer it saw, how long it took); their
parsers turn what a host printed into an `Evidence`; `classify` alone decides the verdict and
its one-line detail, for every platform. The lab's emulated Windows hosts fake evidence only,
so a lab run tests these rules and not a copy of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from auditor.models import Target
from auditor.outcomes import Outcome

POWERSHELL_TOOL = "Invoke-WebRequest"

# curl exit codes (see curl's libcurl-errors) that mean the TLS handshake or the certificate
# failed. probe.sh looks the issuer up for exactly these (a test holds the two lists equal).
CURL_TLS_CODES = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91})

# .NET exception types for which the request's time budget ran out (PowerShell 7:
# TaskCanceledException derives from OperationCanceledException).
CANCELLED_TYPES = frozenset(
    {
        "System.OperationCanceledException",
        "System.Threading.Tasks.TaskCanceledException",
        "System.TimeoutException",
    }
)
# WebException.Status (5.1) / HttpRequestException.HttpRequestError (7.4+) values.
_DNS_REASONS = re.compile(r"(Proxy)?NameResolution(Failure|Error)")
_TLS_REASONS = frozenset({"TrustFailure", "SecureChannelFailure", "SecureConnectionError"})
# SocketException.SocketErrorCode values found anywhere in the exception chain.
_DNS_SOCKET = frozenset({"HostNotFound", "NoData", "TryAgain"})
_REFUSED_SOCKET = frozenset({"ConnectionRefused", "HostUnreachable", "NetworkUnreachable"})
# PowerShell 7.2+ names a refused CONNECT's status only in its message:
# "The proxy tunnel request to proxy 'http://p:3128/' failed with status code '403'."
_TUNNEL_STATUS = re.compile(r"'(\d{3})'")
_TUNNEL_REFUSED_TAIL = re.compile(r"'40[37]'\.?$")


class Tunnel(StrEnum):
    """The PowerShell probe's own CONNECT to the proxy, asked only to tell a proxied HTTPS
    403 from the origin's (older PowerShell hands the proxy's refusal on as the origin's)."""

    NOT_ASKED = ""
    GRANTED = "granted"
    DENIED = "denied"
    # The proxy could not be reached or did not answer in time: no proof the 403 is the
    # origin's.
    NO_ANSWER = "no_answer"


@dataclass(frozen=True)
class Evidence:
    """What one HTTP client on one host said about one URL; nothing here is a verdict.

    POSIX clients fill `exit_code` (curl's, or wget's / python's mapped by the probe),
    `connect_status` (the proxy's answer to CONNECT) and `message` (the tool's own error
    line). PowerShell fills `exception_type` (full .NET name), `reason` (WebException.Status
    or HttpRequestError), `socket_error` (a SocketErrorCode in the chain), `tls_layer` (an
    exception in the chain came from the TLS layer), `message` and `inner` (the exception's
    and its innermost cause's messages) and `tunnel`. `deadline` says the probe gave up on the
    URL at its per-host deadline before the client answered.
    """

    tool: str = ""
    exit_code: int | None = None
    http_status: int | None = None
    connect_status: int | None = None
    message: str = ""
    exception_type: str = ""
    reason: str = ""
    socket_error: str = ""
    inner: str = ""
    tls_layer: bool = False
    tunnel: Tunnel = Tunnel.NOT_ASKED
    deadline: bool = False
    issuer: str = ""
    proxy: str = ""
    elapsed: float | None = None
    connect_time: float | None = None
    """Seconds until the TCP connection (to the proxy, when one is used) was made; 0 when
    it never was (curl's time_connect)."""


def classify(evidence: Evidence, target: Target) -> tuple[Outcome, str]:
    """The verdict for `target` and a one-line detail, from what the host's client said."""
    if evidence.tool == POWERSHELL_TOOL:
        return _powershell(evidence, target)
    return _posix(evidence, target)


def failed_at_proxy(evidence: Evidence, outcome: Outcome) -> bool:
    """True when the request failed at the proxy itself (its name, its port, TLS to it, or
    its refusal), not at the URL beyond it."""
    if not evidence.proxy or outcome is Outcome.REACHABLE:
        return False
    if outcome is Outcome.PROXY_DENIED:
        return True
    if evidence.tool == POWERSHELL_TOOL:
        # Invoke-WebRequest connects to the proxy, never to the URL: a refused socket or an
        # unresolved proxy name is the proxy's.
        return evidence.reason.startswith("Proxy") or evidence.socket_error in _REFUSED_SOCKET
    code = evidence.exit_code
    if evidence.tool == "wget":
        code = _wget_as_curl(code, evidence.http_status, evidence.message, evidence.elapsed)[0]
    return _posix_at_proxy(evidence, code)


def _posix_at_proxy(ev: Evidence, exit_code: int | None) -> bool:
    """Through a proxy, curl connects only to the proxy: a name it could not resolve (5), a
    connection refused (7), a connect that never completed (28 with no time_connect), or a
    TLS failure before any CONNECT answer on an https:// proxy are the proxy's."""
    if not ev.proxy:
        return False
    if exit_code in (5, 7):
        return True
    if exit_code == 28:
        return ev.tool == "curl" and ev.connect_time == 0 and not ev.connect_status
    if exit_code in CURL_TLS_CODES:
        return ev.proxy.lower().startswith("https:") and not ev.connect_status
    return False


def tunnel_status(evidence: Evidence, outcome: Outcome) -> int | None:
    """The HTTP status a refused CONNECT carried when only PowerShell 7's message names it."""
    if outcome is not Outcome.PROXY_DENIED or evidence.http_status:
        return evidence.http_status
    found = _TUNNEL_STATUS.search(evidence.message)
    return int(found.group(1)) if found else None


# --- POSIX: curl, and wget / python3 read as curl -------------------------------------------


def _posix(ev: Evidence, target: Target) -> tuple[Outcome, str]:
    exit_code, err = ev.exit_code, ev.message
    http, connect, proxy, tool = ev.http_status, ev.connect_status, ev.proxy, ev.tool
    if tool == "wget":
        exit_code, err = _wget_as_curl(exit_code, http, err, ev.elapsed)
    lowered = err.lower()
    via = f" via proxy {proxy}" if proxy else ""
    if exit_code == 0 or (exit_code is None and http):
        # Through a proxy, a 407 is the proxy's, even where the target accepts any 4xx.
        if http is not None and http in target.expected_status and not (http == 407 and proxy):
            return Outcome.REACHABLE, f"HTTP {http}{via}"
        if http == 407:
            return (
                Outcome.PROXY_DENIED,
                f"proxy {proxy or '(unknown)'} answered 407 Proxy Authentication Required",
            )
        expected = _expected_text(target.expected_status)
        return Outcome.HTTP_ERROR, f"HTTP {http} (expected {expected}){via}"
    if exit_code is not None and exit_code != 56 and _posix_at_proxy(ev, exit_code):
        outcome = {
            5: Outcome.DNS_FAILURE,
            7: Outcome.TIMEOUT if "timed out" in lowered else Outcome.REFUSED,
            28: Outcome.TIMEOUT,
        }.get(exit_code, Outcome.TLS_FAILURE)
        return outcome, f"proxy {proxy} not usable: {err or outcome.value}"
    if exit_code in (5, 6):
        return Outcome.DNS_FAILURE, err or (
            "could not resolve the proxy's name"
            if exit_code == 5
            else f"could not resolve host {target.hostname}"
        )
    if exit_code == 56 and (
        connect in (403, 407) or "connect tunnel failed" in lowered or "proxy connect" in lowered
    ):
        code = f" {connect}" if connect else ""
        return Outcome.PROXY_DENIED, f"proxy {proxy or '(unknown)'} refused CONNECT{code}: {err}"
    if "connection reset" in lowered and exit_code in (35, 56):
        return (
            Outcome.REFUSED,
            f"connection reset during the TLS handshake (a firewall or "
            f"proxy filtering by name is likely): {err}",
        )
    if exit_code == 7:
        if "timed out" in lowered:
            return Outcome.TIMEOUT, err
        return Outcome.REFUSED, err or "connection refused"
    if exit_code == 28:
        return Outcome.TIMEOUT, err or "timed out"
    if exit_code in CURL_TLS_CODES:
        shown = f" (issuer: {ev.issuer})" if ev.issuer else ""
        return Outcome.TLS_FAILURE, f"{err or 'TLS failure'}{shown}"
    return Outcome.ERROR, f"{tool or 'probe'} exit {exit_code}: {err or 'no message'}"


def _expected_text(statuses: tuple[int, ...]) -> str:
    if len(statuses) <= 3:
        return "/".join(map(str, statuses))
    return f"{statuses[0]}-{statuses[-1]}"


def _wget_as_curl(
    exit_code: int | None, http: int | None, err: str, elapsed: float | None
) -> tuple[int | None, str]:
    """GNU wget reports through messages more than exit codes; translate to curl's codes."""
    lowered = err.lower()
    if exit_code == 8 and http:  # the server answered with an error status
        return 0, err
    if exit_code == 0:
        return 0, err
    if (
        "unable to resolve" in lowered
        or "name or service not known" in lowered
        or "temporary failure in name resolution" in lowered
    ):
        return 6, err
    if "connection refused" in lowered or "no route to host" in lowered:
        return 7, err
    if "timed out" in lowered:
        return 28, err
    if "proxy tunneling failed" in lowered:
        return 56, f"CONNECT tunnel failed: {err}"
    if "unable to establish ssl connection" in lowered:
        # Said alike for a handshake that failed and one that stalled; only time tells.
        if elapsed is not None and elapsed >= 1.5:
            return 28, f"TLS handshake stalled ({elapsed:g} s): {err}"
        return 35, err
    if exit_code == 5 or "certificate" in lowered:
        return 60, err
    return exit_code, err


# --- PowerShell: Invoke-WebRequest on 5.1 and 7 ----------------------------------------------


def _powershell_outcome(ev: Evidence, target: Target) -> Outcome:
    """By exception type and typed fields, never by the (localised) message text, except
    for PowerShell 7.2+'s refused CONNECT, whose status exists only in its message."""
    if ev.deadline:
        return Outcome.TIMEOUT
    why, sock, code = ev.reason, ev.socket_error, ev.http_status or 0
    https = target.url.lower().startswith("https:")
    if _DNS_REASONS.fullmatch(why) or sock in _DNS_SOCKET:
        return Outcome.DNS_FAILURE
    if why == "Timeout" or sock == "TimedOut" or ev.exception_type in CANCELLED_TYPES:
        return Outcome.TIMEOUT
    if sock in _REFUSED_SOCKET:
        return Outcome.REFUSED
    if why in _TLS_REASONS or (ev.tls_layer and code == 0):
        return Outcome.TLS_FAILURE
    if code > 0:
        # 407 is always the proxy's. 5.1 (and 7.0/7.1) hand a proxy's refusal of CONNECT on
        # as if the origin had answered: a proxied HTTPS 403 is the origin's only when the
        # proxy granted the probe's own tunnel.
        if code == 407 or (code == 403 and ev.proxy and https and ev.tunnel is not Tunnel.GRANTED):
            return Outcome.PROXY_DENIED
        if code in target.expected_status:
            return Outcome.REACHABLE
        if code == 403 and ev.proxy and not https:
            # Plain HTTP through a proxy has no tunnel to ask about: an unexpected 403 there
            # is more likely the proxy's.
            return Outcome.PROXY_DENIED
        return Outcome.HTTP_ERROR
    if why == "ProxyTunnelError" or (ev.proxy and _TUNNEL_REFUSED_TAIL.search(ev.message)):
        return Outcome.PROXY_DENIED
    return Outcome.ERROR


def _powershell(ev: Evidence, target: Target) -> tuple[Outcome, str]:
    outcome = _powershell_outcome(ev, target)
    msg, inner, status = ev.message, ev.inner, ev.http_status
    expected = "/".join(str(s) for s in target.expected_status)
    if outcome is Outcome.REACHABLE:
        text = f"HTTP {status}"
    elif ev.deadline:
        text = "no answer before the probe's deadline on this host"
    elif outcome is Outcome.HTTP_ERROR and not msg:
        text = f"HTTP {status}, expected {expected}"
    else:
        text = msg or f"probe reported {outcome} without a message"
        if inner and inner not in text:
            # .NET messages are sentences or fragments: "closed: ... channel." + "The remote..."
            text = f"{text} {inner}" if text.endswith((".", "!", "?")) else f"{text}: {inner}"
    if outcome is Outcome.TLS_FAILURE and ev.issuer:
        text = f"{text}; certificate issuer: {ev.issuer}"
    if outcome is Outcome.PROXY_DENIED and ev.proxy and ev.proxy not in text:
        text = f"{text} (proxy {ev.proxy})"
    return outcome, text
