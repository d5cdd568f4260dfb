"""The WinRM transport against the lab's endpoint answering as PowerShell 7.4+, through real
pywinrm (NTLM with message encryption over HTTP on 127.0.0.1). The targets are loopback
servers making each condition for real; the texts expected are PowerShell 7's (see
auditor_lab.ps7 for their sources), parsed by the auditor's own parser."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.models import RawOutput, Target
from auditor.outcomes import Outcome
from auditor.probes import ProbeSettings
from auditor.probes.powershell import build_powershell_job, parse_powershell
from auditor.secret import Secret
from auditor.transports.options import WinRMSettings
from auditor.transports.winrm import WinRMTransport
from tests.support.loopback import Loopback, loopback_servers
from tests.support.wsman_env import PASSWORD, Extras, endpoint, extra_servers, windows_host

SETTINGS = ProbeSettings(connect_timeout=2.0, max_time=2.0)
SSL_FAILED = "The SSL connection could not be established, see inner exception."


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loopback, Extras]]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb, extra_servers() as ex:
        yield lb, ex


def _run(port: int, targets: list[Target], powershell: str = "pwsh") -> RawOutput:
    transport = WinRMTransport(WinRMSettings(), Secret(PASSWORD), max_workers=1)
    host = windows_host(port, ansible_winrm_scheme="http", auditor_powershell=powershell)
    job = build_powershell_job(targets, SETTINGS)
    try:
        return asyncio.run(transport.run_job(host, job, 20.0))
    finally:
        asyncio.run(transport.close())


def test_a_powershell_7_host_audits_every_outcome_with_7s_exception_texts(
    servers: tuple[Loopback, Extras], tmp_path: Path
) -> None:
    lb, ex = servers
    proxy = f"http://127.0.0.1:{ex.proxy_port}/"
    cases: list[tuple[Target, Outcome, str, dict[str, Any]]] = [
        (
            Target(url=f"https://localhost:{lb.https_port}/status", name="ok"),
            Outcome.REACHABLE,
            "HTTP 200",
            {"http_status": 200},
        ),
        (
            Target(url=f"https://localhost:{lb.https_port}/fail", name="down"),
            Outcome.HTTP_ERROR,
            "Response status code does not indicate success: 503 (Service Unavailable).",
            {"http_status": 503},
        ),
        (
            Target(url="https://nohost.invalid/status", name="dns"),
            Outcome.DNS_FAILURE,
            "No such host is known. (nohost.invalid:443)",
            {},
        ),
        (
            Target(url=f"https://localhost:{lb.closed_port}/", name="refused"),
            Outcome.REFUSED,
            "No connection could be made because the target machine actively refused it. "
            f"(localhost:{lb.closed_port})",
            {},
        ),
        (
            Target(url=f"https://localhost:{lb.silent_port}/", name="blackhole"),
            Outcome.TIMEOUT,
            "The request was canceled due to the configured HttpClient.Timeout of 2 seconds "
            "elapsing.",
            {},
        ),
        (
            Target(url=f"https://localhost:{lb.untrusted_port}/", name="intercepted"),
            Outcome.TLS_FAILURE,
            f"{SSL_FAILED} The remote certificate is invalid because of errors in the "
            "certificate chain: UntrustedRoot; certificate issuer: O=Contoso Ltd, CN=Contoso "
            "SSL Inspection CA",
            {"tls_issuer": "O=Contoso Ltd, CN=Contoso SSL Inspection CA"},
        ),
        (
            Target(url=f"https://other.lab.test:{lb.https_port}/status", name="wrong-name"),
            Outcome.TLS_FAILURE,
            f"{SSL_FAILED} The remote certificate is invalid according to the validation "
            "procedure: RemoteCertificateNameMismatch; certificate issuer: O=Auditor Tests, "
            "CN=Loopback Test CA",
            {},
        ),
        (
            Target(url=f"https://localhost:{ex.drop_port}/", name="cut"),
            Outcome.TLS_FAILURE,
            SSL_FAILED,
            {"tls_issuer": ""},
        ),
        (
            Target(url="https://denied.lab.test/status", name="proxy403"),
            Outcome.PROXY_DENIED,
            f"The proxy tunnel request to proxy '{proxy}' failed with status code '403'.",
            {"http_status": 403, "proxy": proxy},
        ),
        (
            Target(url="https://auth.lab.test/status", name="proxy407"),
            Outcome.PROXY_DENIED,
            f"The proxy tunnel request to proxy '{proxy}' failed with status code '407'.",
            {"http_status": 407, "proxy": proxy},
        ),
    ]
    network = {
        "hosts": {"localhost": "127.0.0.1", "other.lab.test": "127.0.0.1"},
        "ca_bundle": str(lb.ca_bundle),
        "proxy": proxy.rstrip("/"),
        "no_proxy": ["localhost", "127.0.0.1", "other.lab.test", "nohost.invalid"],
    }
    targets = [case[0] for case in cases]
    with endpoint(tmp_path, auth=["ntlm"], network=network, powershell="7") as wsman:
        raw = _run(wsman.port, targets)
    assert raw.exit_status == 0
    assert raw.stderr == b""  # no 5.1 first-use progress record on 7
    result = parse_powershell(raw, targets, SETTINGS.nonce)
    assert (result.facts["ps_edition"], result.facts["ps_version"]) == ("Core", "7.4.6")
    for (target, outcome, detail, fields), obs in zip(cases, result.observations, strict=True):
        assert (obs.url, obs.outcome, obs.detail) == (target.url, outcome, detail), target.name
        for key, value in fields.items():
            assert getattr(obs, key) == value, (target.name, key)


def test_powershell_exe_on_a_powershell_7_host_is_still_windows_powershell_51(
    servers: tuple[Loopback, Extras], tmp_path: Path
) -> None:
    lb, _ = servers
    targets = [Target(url=f"https://localhost:{lb.closed_port}/", name="refused")]
    network = {"hosts": {"localhost": "127.0.0.1"}, "ca_bundle": str(lb.ca_bundle), "proxy": ""}
    with endpoint(tmp_path, auth=["ntlm"], network=network, powershell="7") as wsman:
        raw = _run(wsman.port, targets, powershell="powershell")
    result = parse_powershell(raw, targets, SETTINGS.nonce)
    assert (result.facts["ps_edition"], result.facts["ps_version"][:4]) == ("Desktop", "5.1.")
    assert result.observations[0].outcome is Outcome.REFUSED
    assert result.observations[0].detail.startswith("Unable to connect to the remote server")


def test_pwsh_where_powershell_7_is_not_installed_is_probe_unavailable(tmp_path: Path) -> None:
    from auditor.errors import HostLevelError
    from auditor.outcomes import HostOutcome

    targets = [Target(url="https://localhost:1/", name="x")]
    with endpoint(tmp_path, auth=["ntlm"], network={"proxy": ""}) as wsman:  # 5.1 only
        with pytest.raises(HostLevelError) as caught:
            _run(wsman.port, targets, powershell="pwsh")
    assert caught.value.outcome == HostOutcome.PROBE_UNAVAILABLE
    assert caught.value.detail.startswith("pwsh.exe could not be started")
    assert "cannot find the file specified" in caught.value.detail
