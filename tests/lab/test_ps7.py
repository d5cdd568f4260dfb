"""The lab's PowerShell 7 flavour, without a network: each failure the request layer can raise
becomes the PowerShell 7.4+ exception shape, and the auditor's real parser reads the record
the probe would print from it to the right outcome and detail.

The request layer (`ps51.http_get`) is replaced by a stub that raises what it would raise for
each condition; the end-to-end run over WinRM is in tests/transports/test_winrm_ps7.py."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
from auditor_lab import ps7, ps51
from auditor_lab.ps51 import (
    MSG,
    WINDOWS_POWERSHELL_51,
    Machine,
    Network,
    Output,
    _WebError,
    record_line,
    run_probe,
)
from auditor_lab.wsman import EndpointConfig

from auditor.models import RawOutput, Target
from auditor.outcomes import Outcome
from auditor.probes.powershell import parse_powershell

NONCE = "ps7n0nce"
URL = "https://cask.qg3.apps.qualys.com/status"
HOST = "cask.qg3.apps.qualys.com"
PROXY = "http://10.213.0.1:3129"
TIMEOUT_S = 3


def _refused() -> _WebError:
    return _WebError("ConnectFailure", MSG["ConnectFailure"], inner="...", sock="ConnectionRefused")


def _protocol(code: int, phrase: str, tunnel: bool = False) -> _WebError:
    return _WebError(
        "ProtocolError", f"(5.1 text for {code})", code=code, phrase=phrase, tunnel=tunnel
    )


def _observe(
    monkeypatch: pytest.MonkeyPatch,
    answer: int | _WebError,
    proxy: str | None = None,
    expected_status: tuple[int, ...] = (200,),
) -> tuple[dict[str, Any], Any]:
    """The record ps7.probe_target builds when the request layer answers `answer`, and the
    observation the auditor's parser makes of it."""

    def fake_get(url: str, timeout_s: float, machine: Machine, network: Network) -> int:
        assert (url, timeout_s) == (URL, TIMEOUT_S)
        if isinstance(answer, _WebError):
            raise answer
        return answer

    monkeypatch.setattr(ps7, "http_get", fake_get)
    # No hosts and no system DNS: the issuer re-connect after a TLS failure finds nothing.
    network = Network(proxy=proxy)
    rec = ps7.probe_target(0, URL, TIMEOUT_S, 500, Machine(), network)
    stdout = record_line(NONCE, rec, ps7.ps7_json) + record_line(
        NONCE, {"kind": "done", "count": 1}, ps7.ps7_json
    )
    target = Target(url=URL, name="cdn", expected_status=expected_status)
    result = parse_powershell(RawOutput(stdout, b"", 0), [target], NONCE)
    (obs,) = result.observations
    return rec, obs


def test_an_unresolvable_name_is_an_http_request_exception_over_host_not_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, obs = _observe(monkeypatch, _WebError("NameResolutionFailure", "5.1 text"))
    assert (rec["type"], rec["reason"], rec["sock"]) == (
        "System.Net.Http.HttpRequestException",
        "NameResolutionError",
        "HostNotFound",
    )
    assert rec["inner"] == "No such host is known."
    assert (obs.outcome, obs.detail) == (
        Outcome.DNS_FAILURE,
        f"No such host is known. ({HOST}:443)",
    )


def test_a_refused_connection_names_the_host_as_typed_not_its_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, obs = _observe(monkeypatch, _refused())
    assert (rec["reason"], rec["sock"]) == ("ConnectionError", "ConnectionRefused")
    assert (obs.outcome, obs.detail) == (
        Outcome.REFUSED,
        f"No connection could be made because the target machine actively refused it. ({HOST}:443)",
    )


def test_a_refused_connection_through_a_proxy_names_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, obs = _observe(monkeypatch, _refused(), proxy=PROXY)
    assert obs.outcome is Outcome.REFUSED
    assert obs.detail.endswith("(10.213.0.1:3129)"), obs.detail


def test_timeout_sec_expiring_is_a_task_canceled_exception_with_the_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, obs = _observe(monkeypatch, _WebError("Timeout", MSG["Timeout"]))
    # Neither Status nor HttpRequestError exists on it: only its type says "timeout".
    assert (rec["type"], rec["reason"], rec["sock"]) == (
        "System.Threading.Tasks.TaskCanceledException",
        "",
        "",
    )
    assert (obs.outcome, obs.detail) == (
        Outcome.TIMEOUT,
        "The request was canceled due to the configured HttpClient.Timeout of 3 seconds elapsing.",
    )


@pytest.mark.parametrize(
    ("verify_code", "inner"),
    [
        (20, "The remote certificate is invalid because of errors in the certificate chain: "
         "UntrustedRoot"),
        (19, "The remote certificate is invalid because of errors in the certificate chain: "
         "UntrustedRoot"),
        (62, "The remote certificate is invalid according to the validation procedure: "
         "RemoteCertificateNameMismatch"),
    ],
)  # fmt: skip
def test_certificate_failures_carry_the_chain_status_in_the_inner_exception(
    monkeypatch: pytest.MonkeyPatch, verify_code: int, inner: str
) -> None:
    error = _WebError("TrustFailure", "5.1 text", tls=True, verify_code=verify_code)
    rec, obs = _observe(monkeypatch, error)
    assert (rec["reason"], rec["inner"]) == ("SecureConnectionError", inner)
    assert (obs.outcome, obs.detail) == (
        Outcome.TLS_FAILURE,
        f"The SSL connection could not be established, see inner exception. {inner}",
    )


def test_a_tls_failure_with_no_sourced_inner_text_keeps_only_the_outer_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for error in (
        _WebError("SecureChannelFailure", MSG["SecureChannelFailure"]),
        _WebError("SendFailure", MSG["SendFailure"], inner="5.1 inner", tls=True),
        _WebError("TrustFailure", "5.1 text", tls=True, verify_code=10),  # expired
    ):
        rec, obs = _observe(monkeypatch, error)
        assert rec["inner"] == ""
        assert (obs.outcome, obs.detail) == (
            Outcome.TLS_FAILURE,
            "The SSL connection could not be established, see inner exception.",
        )


def test_an_origin_status_uses_the_servers_reason_phrase_not_51s_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, obs = _observe(monkeypatch, _protocol(503, "Service Unavailable"))
    assert rec["type"] == "Microsoft.PowerShell.Commands.HttpResponseException"
    assert (obs.outcome, obs.http_status, obs.detail) == (
        Outcome.HTTP_ERROR,
        503,
        "Response status code does not indicate success: 503 (Service Unavailable).",
    )


def test_an_expected_error_status_is_still_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    _, obs = _observe(monkeypatch, _protocol(404, "Not Found"), expected_status=(200, 404))
    assert (obs.outcome, obs.http_status, obs.detail) == (Outcome.REACHABLE, 404, "HTTP 404")


@pytest.mark.parametrize("code", [403, 407, 502])
def test_a_refused_tunnel_is_proxy_denied_with_the_status_taken_from_the_message(
    monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    rec, obs = _observe(monkeypatch, _protocol(code, "Denied", tunnel=True), proxy=PROXY)
    assert (rec["type"], rec["reason"]) == (
        "System.Net.Http.HttpRequestException",
        "ProxyTunnelError",
    )
    assert (obs.outcome, obs.http_status, obs.proxy) == (Outcome.PROXY_DENIED, code, f"{PROXY}/")
    assert obs.detail == (
        f"The proxy tunnel request to proxy '{PROXY}/' failed with status code '{code}'."
    )


@pytest.mark.parametrize(
    ("tunnel", "outcome"), [("denied", Outcome.PROXY_DENIED), ("granted", Outcome.HTTP_ERROR)]
)
def test_a_proxied_https_403_is_the_proxys_only_when_it_refuses_a_tunnel_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tunnel: str, outcome: Outcome
) -> None:
    asked: list[str] = []

    def fake_tunnel(url: str, connect_ms: int, network: Network) -> str:
        asked.append(url)
        return tunnel

    monkeypatch.setattr(ps51, "tunnel_answer", fake_tunnel)
    _, obs = _observe(monkeypatch, _protocol(403, "Forbidden"), proxy=PROXY)
    assert asked == [URL]
    assert (obs.outcome, obs.http_status) == (outcome, 403)
    assert obs.detail.startswith("Response status code does not indicate success: 403 (Forbidden).")


def test_a_success_is_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    rec, obs = _observe(monkeypatch, 200)
    assert rec["type"] == ""
    assert (obs.outcome, obs.detail) == (Outcome.REACHABLE, "HTTP 200")


@pytest.mark.parametrize(
    "answer",
    [
        302,
        _WebError("ReceiveFailure", MSG["ReceiveFailure"], sock="ConnectionReset"),
        _WebError("ProxyNameResolutionFailure", "5.1 text"),
        _WebError("ConnectFailure", MSG["ConnectFailure"], sock="HostUnreachable"),
    ],
    ids=["redirect", "reset", "proxy-name", "unreachable"],
)
def test_conditions_without_a_sourced_ps7_shape_say_so_and_are_errors(
    monkeypatch: pytest.MonkeyPatch, answer: int | _WebError
) -> None:
    rec, obs = _observe(monkeypatch, answer, proxy=PROXY)
    assert rec["type"] == "AuditorLab.NotEmulatedException"
    assert obs.outcome is Outcome.ERROR
    assert "does not emulate PowerShell 7" in obs.detail


def _run(monkeypatch: pytest.MonkeyPatch, flavour: Any, machine: Machine) -> tuple[bytes, bytes]:
    monkeypatch.setattr(ps7, "http_get", lambda *a: 200)
    out = Output()
    doc = {"nonce": NONCE, "timeout": 2, "targets": [{"url": URL, "expect": [200, 200]}]}
    run_probe(doc, machine, Network(), out, threading.Event(), flavour=flavour)
    stdout, stderr, code = out.take(0)
    assert code == 0
    return stdout, stderr


def test_a_ps7_host_reports_powershell_7_core_and_writes_no_51_progress_noise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    path = tmp_path / "wsman.json"
    path.write_text(json.dumps({"powershell": "7", "machine": {"hostname": "WIN7-01"}}))
    config = EndpointConfig.from_file(path)
    assert config.flavour is ps7.POWERSHELL_7
    stdout, stderr = _run(monkeypatch, config.flavour, config.machine)
    assert stderr == b""
    result = parse_powershell(RawOutput(stdout, stderr, 0), [Target(url=URL, name="cdn")], NONCE)
    assert dict(result.facts) == {
        "hostname": "WIN7-01",
        "os": "Microsoft Windows Server 2019 Standard",
        "os_version": "10.0.17763",
        "ps_version": "7.4.6",
        "ps_edition": "Core",
    }
    assert result.observations[0].outcome is Outcome.REACHABLE


def test_a_host_without_a_flavour_still_answers_as_51(tmp_path: Any) -> None:
    path = tmp_path / "wsman.json"
    path.write_text("{}")
    config = EndpointConfig.from_file(path)
    assert config.flavour is WINDOWS_POWERSHELL_51
    assert (config.machine.ps_version, config.machine.clixml_progress) == (
        "5.1.17763.6414",
        True,
    )


def test_config_refuses_unknown_flavours_and_51_only_faults_on_7(tmp_path: Any) -> None:
    path = tmp_path / "wsman.json"
    for doc, reason in (
        ({"powershell": "6"}, "powershell must be one of 5.1, 7"),
        ({"powershell": "7", "behaviour": "no_iwr"}, "5.1 only"),
        ({"powershell": "7", "behaviour": "constrained_language"}, "5.1 only"),
    ):
        path.write_text(json.dumps(doc))
        with pytest.raises(ValueError, match=reason):
            EndpointConfig.from_file(path)


def test_ps7_records_are_json_net_shaped_and_51_records_keep_their_escapes() -> None:
    rec = {"kind": "target", "msg": "a<b>&'c"}

    def body(line: bytes) -> str:
        return base64.b64decode(line.split()[2]).decode()

    assert body(record_line(NONCE, rec, ps7.ps7_json)) == '{"kind":"target","msg":"a<b>&\'c"}'
    assert "\\u003c" in body(record_line(NONCE, rec))
