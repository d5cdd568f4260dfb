"""Certificate, CredSSP and Kerberos WinRM authentication, end to end against real parts.

Each test runs real pywinrm against the lab's WS-Management endpoint on 127.0.0.1: real TLS
with client certificates, pyspnego's CredSSP acceptor (NTLM inside) with CredSSP message
encryption, and Kerberos with a throwaway MIT realm whose krb5kdc listens on loopback. The
endpoint is an emulation of a Windows WinRM service, not Windows.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import spnego
from auditor_lab import pki
from auditor_lab.wsman import EndpointConfig

from auditor.errors import HostLevelError, InputError
from auditor.models import Host, RawOutput, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import ProbeSettings
from auditor.probes.powershell import build_powershell_job, parse_powershell
from auditor.secret import Secret
from auditor.transports.options import WinRMSettings
from auditor.transports.winrm import WinRMTransport, command_line
from tests.support.kdc import Realm, kdc, tools_missing
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
BIN = Path(sys.executable).parent
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
        return asyncio.run(transport.run_job(host, job, 20.0))
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
    return WinRMTransport(WinRMSettings(), None, max_workers=1)


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
        transport = WinRMTransport(WinRMSettings(), Secret(PASSWORD), max_workers=1)
        assert transport.endpoint(host).password is None
        _audits(transport, host, loopback)


# --- Kerberos ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    missing = tools_missing()
    if missing:
        pytest.fail(f"MIT Kerberos programs missing: {', '.join(missing)} (make sysdeps)")
    with kdc(tmp_path_factory.mktemp("realm"), USER, PASSWORD) as running:
        yield running


def _kerberos_config(
    realm: Realm, lb: Loopback, log: Path, keytab: Path | None = None
) -> dict[str, Any]:
    return {
        "auth": ["kerberos"],
        "kerberos": {
            "keytab": str(keytab or realm.keytab),
            "krb5_config": str(realm.krb5_conf),
            "realm": realm.name,
        },
        "network": _network(lb),
        "audit_log": str(log),
    }


def _kerberos_host(realm: Realm, port: int, **hostvars: Any) -> Host:
    variables: dict[str, Any] = {
        "ansible_winrm_transport": "kerberos",
        "ansible_winrm_scheme": "http",
        "ansible_winrm_kerberos_hostname_override": realm.service_host,
    }
    variables.update(hostvars)
    return windows_host(port, **{k: v for k, v in variables.items() if v is not None})


@pytest.fixture
def ticket(realm: Realm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A credential cache holding the user's TGT, made the process's default."""
    ccache = tmp_path / "ccache"
    realm.kinit(ccache)
    for name, value in realm.env(ccache).items():
        monkeypatch.setenv(name, value)
    return ccache


def test_with_a_ticket_kerberos_audits_sealed_over_http_without_a_password(
    realm: Realm, ticket: Path, loopback: Loopback, tmp_path: Path
) -> None:
    log = tmp_path / "actions.jsonl"
    with endpoint(tmp_path / "ep", **_kerberos_config(realm, loopback, log)) as wsman:
        host = _kerberos_host(realm, wsman.port)
        ep = _no_password().endpoint(host)
        assert (ep.auth, ep.password, ep.kerberos_hostname) == (
            "kerberos",
            None,
            realm.service_host,
        )
        _audits(_no_password(), host, loopback)
    entries = audit_log(log)
    assert {(e["user"], e["via"]) for e in entries} == {(USER, "kerberos+sealed")}
    assert [e["action"] for e in entries][:2] == ["Create", "Command"]


def test_without_a_ticket_kerberos_is_auth_failed(
    realm: Realm, loopback: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-ccache"
    for name, value in realm.env(empty).items():
        monkeypatch.setenv(name, value)
    with endpoint(tmp_path / "ep", **_kerberos_config(realm, loopback, tmp_path / "log")) as wsman:
        error = _host_error(_no_password(), _kerberos_host(realm, wsman.port), loopback)
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert error.detail.startswith(
        f"Kerberos authentication to http://127.0.0.1:{wsman.port}/wsman "
        f"(SPN HTTP/{realm.service_host}) failed before any request: no service ticket"
    )
    assert error.detail.endswith(
        "No credentials were supplied, or the credentials were unavailable or inaccessible; "
        f"Can't find client principal {USER}@{realm.name} in cache collection"
    )


def test_an_spn_the_kdc_does_not_know_is_auth_failed(
    realm: Realm, ticket: Path, loopback: Loopback, tmp_path: Path
) -> None:
    # Without the override the SPN is HTTP/127.0.0.1, which the realm has no key for.
    with endpoint(tmp_path / "ep", **_kerberos_config(realm, loopback, tmp_path / "log")) as wsman:
        host = _kerberos_host(realm, wsman.port, ansible_winrm_kerberos_hostname_override=None)
        error = _host_error(_no_password(), host, loopback)
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert "(SPN HTTP/127.0.0.1)" in error.detail
    assert error.detail.endswith(
        f"Server HTTP/127.0.0.1@{realm.name} not found in Kerberos database"
    )


def test_a_service_with_a_stale_keytab_is_auth_failed(
    realm: Realm, ticket: Path, loopback: Loopback, tmp_path: Path
) -> None:
    config = _kerberos_config(realm, loopback, tmp_path / "log", keytab=realm.stale_keytab)
    with endpoint(tmp_path / "ep", **config) as wsman:
        error = _host_error(_no_password(), _kerberos_host(realm, wsman.port), loopback)
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert error.detail == (
        "the specified credentials were rejected by the server "
        f"(HTTP 401 from http://127.0.0.1:{wsman.port}/wsman, user {USER}, auth kerberos)"
    )


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
        transport = WinRMTransport(WinRMSettings(), Secret(PASSWORD), max_workers=1)
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
        transport = WinRMTransport(WinRMSettings(ca_bundle=str(tls.ca)), Secret(PASSWORD), 1)
        _audits(transport, _credssp_host(wsman.port, "https"), loopback)
    assert {(e["user"], e["via"]) for e in audit_log(log)} == {(USER, "credssp+tls")}


def test_credssp_seals_messages_over_16_kib_in_parts_both_ways(
    loopback: Loopback, tmp_path: Path
) -> None:
    # Names that compress badly make a Command body well over 16 KiB, which pywinrm sends as
    # multipart/x-multi-encrypted; 120 records make the reply as long.
    names = [hashlib.sha256(str(i).encode()).hexdigest()[:24] for i in range(120)]
    targets = [_target(loopback)] + [
        Target(url=f"https://h{name}.nohost.invalid/{name[:12]}", name=name) for name in names
    ]
    assert len(command_line(build_powershell_job(targets, SETTINGS).script)) > 16384
    config = {"auth": ["credssp"], "network": _network(loopback)}
    with endpoint(tmp_path / "ep", **config) as wsman:
        transport = WinRMTransport(WinRMSettings(), Secret(PASSWORD), max_workers=1)
        raw = _run(transport, _credssp_host(wsman.port, "http"), targets)
    assert len(raw.stdout) > 16384
    observations = parse_powershell(raw, targets, SETTINGS.nonce).observations
    assert [o.outcome for o in observations] == [Outcome.REACHABLE] + [Outcome.DNS_FAILURE] * 120


def _credssp_logon(port: int, delegated_password: str) -> int:
    """Run CredSSP by hand on one connection: NTLM inside with the right password, then
    delegate `delegated_password`. The HTTP status of the last answer."""
    inner = spnego.client(USER, PASSWORD, hostname="127.0.0.1", service="HTTP", protocol="ntlm")
    context = spnego.client(
        USER,
        delegated_password,
        hostname="127.0.0.1",
        service="HTTP",
        protocol="credssp",
        credssp_negotiate_context=inner,
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    token: bytes | None = None
    try:
        while True:
            out = context.step(token)
            headers = {"Authorization": f"CredSSP {base64.b64encode(out or b'').decode()}"}
            connection.request("POST", "/wsman", body=b"", headers=headers)
            answer = connection.getresponse()
            answer.read()
            found = re.search(r"CredSSP (\S+)", answer.getheader("WWW-Authenticate") or "")
            if answer.status != 401 or found is None:
                return answer.status
            token = base64.b64decode(found.group(1))
    finally:
        connection.close()


def test_credssp_refuses_delegated_credentials_that_are_not_the_accounts(
    tmp_path: Path,
) -> None:
    with endpoint(tmp_path / "ep", auth=["credssp"]) as wsman:
        assert _credssp_logon(wsman.port, PASSWORD) == 200
        # NTLM inside succeeds; only the delegated password is wrong.
        assert _credssp_logon(wsman.port, "not-" + PASSWORD) == 401


def test_credssp_with_a_wrong_password_is_auth_failed(loopback: Loopback, tmp_path: Path) -> None:
    log = tmp_path / "actions.jsonl"
    config = {"auth": ["credssp"], "network": _network(loopback), "audit_log": str(log)}
    with endpoint(tmp_path / "ep", **config) as wsman:
        transport = WinRMTransport(WinRMSettings(), Secret("not-" + PASSWORD), max_workers=1)
        error = _host_error(transport, _credssp_host(wsman.port, "http"), loopback)
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert error.detail.startswith(
        f"credssp authentication with http://127.0.0.1:{wsman.port}/wsman failed for user {USER}: "
    )
    assert error.detail.endswith("(SEC_E_LOGON_DENIED: wrong user or password)")
    assert "not-" not in error.detail
    assert audit_log(log) == []


def test_kerberos_asks_for_no_password_and_takes_the_spn_host_from_the_inventory() -> None:
    host = windows_host(
        5985,
        ansible_winrm_transport="kerberos",
        ansible_winrm_kerberos_hostname_override="web01.corp.example",
        ansible_password="inventory-secret",
    )
    for password in (None, Secret(PASSWORD)):
        ep = WinRMTransport(WinRMSettings(), password, max_workers=1).endpoint(host)
        assert (ep.auth, ep.password, ep.user) == ("kerberos", None, USER)
        assert ep.kerberos_hostname == "web01.corp.example"
    # The override is only for Kerberos, and must be a host name.
    ntlm = windows_host(5985, ansible_winrm_kerberos_hostname_override="web01.corp.example")
    assert _no_password_with(Secret(PASSWORD)).endpoint(ntlm).kerberos_hostname is None
    bad = windows_host(
        5985,
        ansible_winrm_transport="kerberos",
        ansible_winrm_kerberos_hostname_override="web01/evil@REALM",
    )
    with pytest.raises(InputError, match="is not a host name"):
        _no_password().endpoint(bad)


def _no_password_with(password: Secret) -> WinRMTransport:
    return WinRMTransport(WinRMSettings(), password, max_workers=1)


def test_with_a_ticket_kerberos_audits_over_https(
    realm: Realm, ticket: Path, loopback: Loopback, tmp_path: Path
) -> None:
    tls = endpoint_tls(tmp_path / "pki")
    log = tmp_path / "actions.jsonl"
    config = _kerberos_config(realm, loopback, log)
    config["tls"] = {"cert": str(tls.cert), "key": str(tls.key)}
    with endpoint(tmp_path / "ep", **config) as wsman:
        host = _kerberos_host(realm, wsman.port, ansible_winrm_scheme="https")
        transport = WinRMTransport(WinRMSettings(ca_bundle=str(tls.ca)), None, max_workers=1)
        _audits(transport, host, loopback)
    assert {(e["user"], e["via"]) for e in audit_log(log)} == {(USER, "kerberos+tls")}


def test_the_audit_command_runs_a_kerberos_host_with_no_password_anywhere(
    realm: Realm, loopback: Loopback, tmp_path: Path
) -> None:
    ccache = tmp_path / "ccache"
    realm.kinit(ccache)
    log = tmp_path / "actions.jsonl"
    with endpoint(tmp_path / "ep", **_kerberos_config(realm, loopback, log)) as wsman:
        inventory = tmp_path / "inv.ini"
        inventory.write_text(
            "[windows]\n"
            f"win-krb ansible_host=127.0.0.1 ansible_port={wsman.port} ansible_user={USER}\n"
            "[windows:vars]\nansible_connection=winrm\nansible_winrm_transport=kerberos\n"
            "ansible_winrm_scheme=http\n"
            f"ansible_winrm_kerberos_hostname_override={realm.service_host}\n"
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.lower().endswith("_proxy") and not k.startswith(("AUDITOR_", "KRB5"))
        }
        env.update(realm.env(ccache))
        out = tmp_path / "report"
        url = _target(loopback).url
        proc = subprocess.run(
            # --ask-pass too: with only Kerberos hosts there is nothing to ask for (stdin is
            # closed, so a prompt would fail the run).
            [
                str(BIN / "audit"),
                "-i",
                str(inventory),
                "--url",
                url,
                "-o",
                str(out),
                "-q",
                "--ask-pass",
            ],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    (host,) = json.loads((out / "report.json").read_text())["hosts"]
    assert host["host"]["name"] == "win-krb"
    assert [t["outcome"] for t in host["observations"]] == ["reachable"]
    assert {(e["user"], e["via"]) for e in audit_log(log)} == {(USER, "kerberos+sealed")}


def test_the_endpoint_refuses_a_certificate_mapping_without_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"client_certificates": [{"subject": UPN, "user": USER}]}))
    with pytest.raises(ValueError, match="need subject, issuer and user"):
        EndpointConfig.from_file(path)
    path.write_text(
        json.dumps({"client_certificates": [{"subject": UPN, "issuer": "AB", "user": USER}]})
    )
    assert EndpointConfig.from_file(path).client_certificates[0].issuer == "AB"
