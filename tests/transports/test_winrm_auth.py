"""Certificate, CredSSP and Kerberos WinRM authentication, end to end against real parts.

Each test runs real pywinrm against the lab's WS-Management endpoint on 127.0.0.1: real TLS
with client certificates, pyspnego's CredSSP acceptor (NTLM inside) with CredSSP message
encryption, and Kerberos with a throwaway MIT realm whose krb5kdc listens on loopback. The
endpoint is an emulation of a Windows WinRM service, not Windows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.errors import HostLevelError
from auditor.lab import pki
from auditor.models import Host, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import ProbeSettings
from auditor.probes.powershell import build_powershell_job, parse_powershell
from auditor.secret import Secret
from auditor.transports.base import RawOutput
from auditor.transports.winrm import WinRMOptions, WinRMTransport
from tests.support.loopback import Loopback, loopback_servers
from tests.support.wsman_env import (
    PASSWORD,
    USER,
    audit_log,
    client_cert,
    endpoint,
    endpoint_tls,
    thumbprint,
    windows_host,
)

SETTINGS = ProbeSettings(connect_timeout=2.0, max_time=2.0)
UPN = f"{USER}@localhost"


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _network(lb: Loopback) -> dict[str, Any]:
    return {
        "hosts": {"localhost": "127.0.0.1"},
        "ca_bundle": str(lb.ca_bundle),
        "proxy": None,
        "no_proxy": ["localhost", "127.0.0.1"],
    }


def _target(lb: Loopback) -> Target:
    return Target(url=f"https://localhost:{lb.https_port}/status", name="ok")


def _run(transport: WinRMTransport, host: Host, targets: list[Target]) -> RawOutput:
    job = build_powershell_job(targets, SETTINGS)
    try:
        return asyncio.run(transport.run(host, job, 20.0))
    finally:
        asyncio.run(transport.close())


def _audits(transport: WinRMTransport, host: Host, lb: Loopback) -> None:
    target = _target(lb)
    raw = _run(transport, host, [target])
    (obs,) = parse_powershell(raw, [target], SETTINGS.nonce).observations
    assert (obs.outcome, obs.detail) == (Outcome.REACHABLE, "HTTP 200")


def _host_error(transport: WinRMTransport, host: Host, lb: Loopback) -> HostLevelError:
    with pytest.raises(HostLevelError) as caught:
        _run(transport, host, [_target(lb)])
    assert PASSWORD not in str(caught.value)
    return caught.value


# --- certificate ------------------------------------------------------------------------


class _CertLab:
    def __init__(self, directory: Path) -> None:
        self.tls = endpoint_tls(directory / "server")
        self.client_ca = pki.make_authority("WinRM Client CA", "Auditor Tests")
        self.other_ca = pki.make_authority("Someone Else's CA", "Elsewhere")
        self.client_ca_file = directory / "client-ca.pem"
        self.client_ca_file.write_bytes(pki.cert_pem(self.client_ca.cert))
        self.directory = directory

    def config(self, lb: Loopback, log: Path) -> dict[str, Any]:
        return {
            "auth": ["certificate"],
            "tls": {
                "cert": str(self.tls.cert),
                "key": str(self.tls.key),
                "client_ca": str(self.client_ca_file),
            },
            "client_certificates": [
                {"subject": UPN, "issuer": thumbprint(self.client_ca), "user": USER}
            ],
            "network": _network(lb),
            "audit_log": str(log),
        }

    def host(self, port: int, cert: Path, key: Path) -> Host:
        return windows_host(
            port,
            ansible_winrm_transport="certificate",
            ansible_winrm_scheme="https",
            ansible_winrm_ca_trust_path=str(self.tls.ca),
            ansible_winrm_cert_pem=str(cert),
            ansible_winrm_cert_key_pem=str(key),
        )


def _no_password() -> WinRMTransport:
    return WinRMTransport(WinRMOptions(), None, max_workers=1)


def test_a_mapped_client_certificate_audits_without_any_password(
    loopback: Loopback, tmp_path: Path
) -> None:
    lab = _CertLab(tmp_path)
    good = client_cert(lab.client_ca, UPN, tmp_path / "good")
    log = tmp_path / "actions.jsonl"
    with endpoint(tmp_path / "ep", **lab.config(loopback, log)) as wsman:
        host = lab.host(wsman.port, good.cert, good.key)
        ep = _no_password().endpoint(host)
        assert (ep.auth, ep.user, ep.password) == ("certificate", None, None)
        _audits(_no_password(), host, loopback)
    entries = audit_log(log)
    assert {(e["user"], e["via"]) for e in entries} == {(USER, "certificate+tls")}
    assert [e["action"] for e in entries][:2] == ["Create", "Command"]


def test_a_certificate_from_another_ca_is_auth_failed(loopback: Loopback, tmp_path: Path) -> None:
    lab = _CertLab(tmp_path)
    foreign = client_cert(lab.other_ca, UPN, tmp_path / "foreign")
    with endpoint(tmp_path / "ep", **lab.config(loopback, tmp_path / "log")) as wsman:
        error = _host_error(
            _no_password(), lab.host(wsman.port, foreign.cert, foreign.key), loopback
        )
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert error.detail.startswith(
        f"https://127.0.0.1:{wsman.port}/wsman refused the client certificate "
        f"{foreign.cert} in the TLS handshake"
    )
    assert "UNKNOWN_CA" in error.detail


def test_an_unmapped_certificate_is_auth_failed(loopback: Loopback, tmp_path: Path) -> None:
    lab = _CertLab(tmp_path)
    # Issued by the trusted client CA, but for a UPN no mapping names.
    unmapped = client_cert(lab.client_ca, "stranger@localhost", tmp_path / "unmapped")
    log = tmp_path / "actions.jsonl"
    with endpoint(tmp_path / "ep", **lab.config(loopback, log)) as wsman:
        error = _host_error(
            _no_password(), lab.host(wsman.port, unmapped.cert, unmapped.key), loopback
        )
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert error.detail == (
        "the specified credentials were rejected by the server "
        f"(HTTP 401 from https://127.0.0.1:{wsman.port}/wsman, client certificate "
        f"{unmapped.cert} not accepted: not mapped to an account there, or certificate auth "
        "is off, auth certificate)"
    )
    assert audit_log(log) == []


def test_certificate_auth_ignores_a_password_it_was_given(
    loopback: Loopback, tmp_path: Path
) -> None:
    lab = _CertLab(tmp_path)
    good = client_cert(lab.client_ca, UPN, tmp_path / "good")
    with endpoint(tmp_path / "ep", **lab.config(loopback, tmp_path / "log")) as wsman:
        host = lab.host(wsman.port, good.cert, good.key)
        transport = WinRMTransport(WinRMOptions(), Secret(PASSWORD), max_workers=1)
        assert transport.endpoint(host).password is None
        _audits(transport, host, loopback)


# --- CredSSP ----------------------------------------------------------------------------


def _credssp_host(port: int, scheme: str, **hostvars: Any) -> Host:
    return windows_host(
        port, ansible_winrm_transport="credssp", ansible_winrm_scheme=scheme, **hostvars
    )


def test_credssp_with_the_right_password_audits_sealed_over_http(
    loopback: Loopback, tmp_path: Path
) -> None:
    log = tmp_path / "actions.jsonl"
    config = {"auth": ["credssp"], "network": _network(loopback), "audit_log": str(log)}
    with endpoint(tmp_path / "ep", **config) as wsman:
        transport = WinRMTransport(WinRMOptions(), Secret(PASSWORD), max_workers=1)
        _audits(transport, _credssp_host(wsman.port, "http"), loopback)
    entries = audit_log(log)
    assert {(e["user"], e["via"]) for e in entries} == {(USER, "credssp+sealed")}


def test_credssp_over_https_audits(loopback: Loopback, tmp_path: Path) -> None:
    tls = endpoint_tls(tmp_path / "pki")
    log = tmp_path / "actions.jsonl"
    config = {
        "auth": ["credssp"],
        "tls": {"cert": str(tls.cert), "key": str(tls.key)},
        "network": _network(loopback),
        "audit_log": str(log),
    }
    with endpoint(tmp_path / "ep", **config) as wsman:
        transport = WinRMTransport(WinRMOptions(ca_bundle=str(tls.ca)), Secret(PASSWORD), 1)
        _audits(transport, _credssp_host(wsman.port, "https"), loopback)
    assert {(e["user"], e["via"]) for e in audit_log(log)} == {(USER, "credssp+tls")}


def test_credssp_with_a_wrong_password_is_auth_failed(loopback: Loopback, tmp_path: Path) -> None:
    log = tmp_path / "actions.jsonl"
    config = {"auth": ["credssp"], "network": _network(loopback), "audit_log": str(log)}
    with endpoint(tmp_path / "ep", **config) as wsman:
        transport = WinRMTransport(WinRMOptions(), Secret("not-" + PASSWORD), max_workers=1)
        error = _host_error(transport, _credssp_host(wsman.port, "http"), loopback)
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert error.detail.startswith(
        f"credssp authentication with http://127.0.0.1:{wsman.port}/wsman failed for user {USER}: "
    )
    assert error.detail.endswith("(SEC_E_LOGON_DENIED: wrong user or password)")
    assert "not-" not in error.detail
    assert audit_log(log) == []
