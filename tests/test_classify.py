"""The one classifier: every outcome from evidence, for both platforms' probes."""

from __future__ import annotations

import ast
import re
from importlib import resources

import pytest

from auditor.classify import CURL_TLS_CODES, POWERSHELL_TOOL, Evidence, Tunnel, classify
from auditor.models import Target
from auditor.outcomes import Outcome

HTTPS = Target(url="https://cask.qg3.apps.qualys.com/status", name="cdn")
HTTP = Target(url="http://cask.qg3.apps.qualys.com/status", name="cdn-plain")
PROXY = "http://proxy.corp:3128/"


def test_probe_sh_looks_the_issuer_up_for_exactly_the_classifiers_tls_codes() -> None:
    source = resources.files("auditor.probes").joinpath("probe.sh").read_text(encoding="utf-8")
    body = source[source.index("auditor_curl() {") :]
    case = re.search(r'case "\$_rc" in\s+([0-9|]+)\)', body)
    assert case is not None
    assert {int(c) for c in case.group(1).split("|")} == CURL_TLS_CODES
    assert {54, 64} <= CURL_TLS_CODES


def curl(exit_code: int, http: int | None = None, **kw: object) -> Evidence:
    return Evidence(tool="curl", exit_code=exit_code, http_status=http, **kw)  # type: ignore[arg-type]


POSIX_TABLE: list[tuple[Evidence, Target, Outcome, str]] = [
    (curl(0, 200), HTTPS, Outcome.REACHABLE, "HTTP 200"),
    (curl(0, 200, proxy=PROXY), HTTPS, Outcome.REACHABLE, f"HTTP 200 via proxy {PROXY}"),
    (curl(0, 503), HTTPS, Outcome.HTTP_ERROR, "HTTP 503 (expected 200)"),
    (
        curl(0, 407, proxy=PROXY),
        HTTPS,
        Outcome.PROXY_DENIED,
        f"proxy {PROXY} answered 407 Proxy Authentication Required",
    ),
    (curl(6), HTTPS, Outcome.DNS_FAILURE, "could not resolve host cask.qg3.apps.qualys.com"),
    (curl(5), HTTPS, Outcome.DNS_FAILURE, "could not resolve the proxy's name"),
    (
        curl(56, connect_status=403, message="CONNECT tunnel failed, response 403", proxy=PROXY),
        HTTPS,
        Outcome.PROXY_DENIED,
        f"proxy {PROXY} refused CONNECT 403: CONNECT tunnel failed, response 403",
    ),
    (curl(7, message="Connection refused"), HTTPS, Outcome.REFUSED, "Connection refused"),
    (curl(7, message="Connection timed out"), HTTPS, Outcome.TIMEOUT, "Connection timed out"),
    (curl(28), HTTPS, Outcome.TIMEOUT, "timed out"),
    (
        curl(60, message="SSL certificate problem", issuer="CN=Contoso SSL Inspection CA"),
        HTTPS,
        Outcome.TLS_FAILURE,
        "SSL certificate problem (issuer: CN=Contoso SSL Inspection CA)",
    ),
    (
        curl(54, message="engine failed", issuer="CN=Inspect"),
        HTTPS,
        Outcome.TLS_FAILURE,
        "engine failed (issuer: CN=Inspect)",
    ),
    (curl(64), HTTPS, Outcome.TLS_FAILURE, "TLS failure"),
    (
        curl(52, message="Empty reply from server"),
        HTTPS,
        Outcome.ERROR,
        "curl exit 52: Empty reply from server",
    ),
    (
        Evidence(tool="wget", exit_code=4, message="Connection refused."),
        HTTPS,
        Outcome.REFUSED,
        "Connection refused.",
    ),
    (
        Evidence(tool="python3", exit_code=60, message="CERTIFICATE_VERIFY_FAILED"),
        HTTPS,
        Outcome.TLS_FAILURE,
        "CERTIFICATE_VERIFY_FAILED",
    ),
]


@pytest.mark.parametrize(("evidence", "target", "outcome", "detail"), POSIX_TABLE)
def test_posix_evidence_classifies(
    evidence: Evidence, target: Target, outcome: Outcome, detail: str
) -> None:
    assert classify(evidence, target) == (outcome, detail)


def iwr(**kw: object) -> Evidence:
    return Evidence(tool=POWERSHELL_TOOL, **kw)  # type: ignore[arg-type]


WEB = "System.Net.WebException"
HRE = "System.Net.Http.HttpRequestException"
TRUST = (
    "The underlying connection was closed: Could not establish trust relationship for the "
    "SSL/TLS secure channel."
)
CERT = "The remote certificate is invalid according to the validation procedure."
TUNNEL_403 = f"The proxy tunnel request to proxy '{PROXY}' failed with status code '403'."

POWERSHELL_TABLE: list[tuple[Evidence, Target, Outcome, str]] = [
    (iwr(http_status=200), HTTPS, Outcome.REACHABLE, "HTTP 200"),
    (iwr(http_status=503), HTTPS, Outcome.HTTP_ERROR, "HTTP 503, expected 200"),
    (
        iwr(
            exception_type=WEB,
            reason="ProtocolError",
            http_status=503,
            message="The remote server returned an error: (503) Server Unavailable.",
        ),
        HTTPS,
        Outcome.HTTP_ERROR,
        "The remote server returned an error: (503) Server Unavailable.",
    ),
    (
        iwr(
            exception_type=WEB,
            reason="NameResolutionFailure",
            message="The remote name could not be resolved: 'cask.qg3.apps.qualys.com'",
        ),
        HTTPS,
        Outcome.DNS_FAILURE,
        "The remote name could not be resolved: 'cask.qg3.apps.qualys.com'",
    ),
    (
        iwr(
            exception_type=HRE,
            reason="NameResolutionError",
            socket_error="HostNotFound",
            message="No such host is known. (cask.qg3.apps.qualys.com:443)",
            inner="No such host is known.",
        ),
        HTTPS,
        Outcome.DNS_FAILURE,
        "No such host is known. (cask.qg3.apps.qualys.com:443)",
    ),
    (
        iwr(
            exception_type=WEB,
            reason="ProxyNameResolutionFailure",
            message="The proxy name could not be resolved: 'proxy.corp'",
        ),
        HTTPS,
        Outcome.DNS_FAILURE,
        "The proxy name could not be resolved: 'proxy.corp'",
    ),
    (
        # The OS gave up on the TCP connect before -TimeoutSec fired (SocketError 10060).
        iwr(
            exception_type=WEB,
            reason="ConnectFailure",
            socket_error="TimedOut",
            message="Unable to connect to the remote server",
            inner="A connection attempt failed",
        ),
        HTTPS,
        Outcome.TIMEOUT,
        "Unable to connect to the remote server: A connection attempt failed",
    ),
    (
        # A plain reset outside the handshake is no TLS failure.
        iwr(
            exception_type=WEB,
            reason="ReceiveFailure",
            socket_error="ConnectionReset",
            message="The underlying connection was closed: An unexpected error occurred on a "
            "receive.",
        ),
        HTTPS,
        Outcome.ERROR,
        "The underlying connection was closed: An unexpected error occurred on a receive.",
    ),
    (
        iwr(exception_type=WEB, reason="Timeout", message="The operation has timed out."),
        HTTPS,
        Outcome.TIMEOUT,
        "The operation has timed out.",
    ),
    (
        iwr(
            exception_type="System.Threading.Tasks.TaskCanceledException",
            message="The request was canceled due to the configured HttpClient.Timeout of 5 "
            "seconds elapsing.",
        ),
        HTTPS,
        Outcome.TIMEOUT,
        "The request was canceled due to the configured HttpClient.Timeout of 5 seconds elapsing.",
    ),
    (
        iwr(deadline=True),
        HTTPS,
        Outcome.TIMEOUT,
        "no answer before the probe's deadline on this host",
    ),
    (
        iwr(
            exception_type=WEB,
            reason="ConnectFailure",
            socket_error="ConnectionRefused",
            message="Unable to connect to the remote server",
            inner="No connection could be made because the target machine actively refused "
            "it 10.0.0.1:443",
        ),
        HTTPS,
        Outcome.REFUSED,
        "Unable to connect to the remote server: No connection could be made because the "
        "target machine actively refused it 10.0.0.1:443",
    ),
    (
        iwr(
            exception_type=WEB,
            reason="TrustFailure",
            message=TRUST,
            inner=CERT,
            issuer="CN=Contoso SSL Inspection CA",
        ),
        HTTPS,
        Outcome.TLS_FAILURE,
        f"{TRUST} {CERT}; certificate issuer: CN=Contoso SSL Inspection CA",
    ),
    (
        iwr(exception_type=WEB, reason="SendFailure", tls_layer=True, message="closed"),
        HTTPS,
        Outcome.TLS_FAILURE,
        "closed",
    ),
    (
        iwr(
            exception_type=WEB,
            reason="ProtocolError",
            http_status=407,
            proxy=PROXY,
            message="The remote server returned an error: (407) Proxy Authentication Required.",
        ),
        HTTPS,
        Outcome.PROXY_DENIED,
        "The remote server returned an error: (407) Proxy Authentication Required. "
        f"(proxy {PROXY})",
    ),
    (
        iwr(http_status=403, proxy=PROXY, tunnel=Tunnel.DENIED, message="(403) Forbidden."),
        HTTPS,
        Outcome.PROXY_DENIED,
        f"(403) Forbidden. (proxy {PROXY})",
    ),
    (
        iwr(http_status=403, proxy=PROXY, tunnel=Tunnel.NO_ANSWER, message="(403) Forbidden."),
        HTTPS,
        Outcome.PROXY_DENIED,
        f"(403) Forbidden. (proxy {PROXY})",
    ),
    (
        iwr(http_status=403, proxy=PROXY, tunnel=Tunnel.GRANTED, message="(403) Forbidden."),
        HTTPS,
        Outcome.HTTP_ERROR,
        "(403) Forbidden.",
    ),
    (
        iwr(http_status=403, proxy=PROXY, message="(403) Forbidden."),
        HTTP,
        Outcome.PROXY_DENIED,
        f"(403) Forbidden. (proxy {PROXY})",
    ),
    (
        iwr(exception_type=HRE, reason="ProxyTunnelError", proxy=PROXY, message=TUNNEL_403),
        HTTPS,
        Outcome.PROXY_DENIED,
        TUNNEL_403,
    ),
    (
        iwr(exception_type=HRE, proxy=PROXY, message=TUNNEL_403),
        HTTPS,
        Outcome.PROXY_DENIED,
        TUNNEL_403,
    ),
    (
        iwr(message="probe worker failed: boom"),
        HTTPS,
        Outcome.ERROR,
        "probe worker failed: boom",
    ),
    (iwr(), HTTPS, Outcome.ERROR, "probe reported error without a message"),
]


@pytest.mark.parametrize(("evidence", "target", "outcome", "detail"), POWERSHELL_TABLE)
def test_powershell_evidence_classifies(
    evidence: Evidence, target: Target, outcome: Outcome, detail: str
) -> None:
    assert classify(evidence, target) == (outcome, detail)


@pytest.mark.parametrize("table", [POSIX_TABLE, POWERSHELL_TABLE], ids=["posix", "powershell"])
def test_every_outcome_is_reachable_from_evidence_on_both_platforms(
    table: list[tuple[Evidence, Target, Outcome, str]],
) -> None:
    assert {row[2] for row in table} == set(Outcome)


def test_an_expected_band_decides_reachable_on_both_platforms() -> None:
    lenient = Target(url=HTTPS.url, name="agent", expected_status=tuple(range(200, 500)))
    assert classify(curl(0, 404), lenient)[0] is Outcome.REACHABLE
    assert classify(iwr(http_status=404), lenient)[0] is Outcome.REACHABLE
    # 407 through a proxy is the proxy's on both, even where any 4xx is expected.
    assert classify(curl(0, 407, proxy=PROXY), lenient)[0] is Outcome.PROXY_DENIED
    assert classify(iwr(http_status=407, proxy=PROXY), lenient)[0] is Outcome.PROXY_DENIED


EMULATORS = ("ps51.py", "ps7.py", "wsman.py", "windows.py")


@pytest.mark.parametrize("module", EMULATORS)
def test_the_labs_windows_emulation_fakes_evidence_and_holds_no_outcome_rules(
    module: str,
) -> None:
    """The emulated Windows hosts print what PowerShell would; only the auditor's classifier
    turns that into a verdict, so a lab run tests the real rules, not a copy of them."""
    source = resources.files("auditor_lab").joinpath(module).read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not imported & {"auditor.outcomes", "auditor.classify"}
    # Keys read from the probe's data document ("timeout" is its time budget) are not verdicts.
    data_keys = {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        for arg in node.args[:1]
    }
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in data_keys
    }
    assert not strings & {o.value for o in Outcome}
    assert "outcome" not in strings
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }
    assert not {n for n in names if "classif" in n.lower() or "outcome" in n.lower()}
