"""The WinRM transport, through real pywinrm, against the lab's WS-Management endpoint.

The endpoint runs as a subprocess on 127.0.0.1 (real NTLM with message encryption over HTTP,
Basic over HTTPS with a test CA) and answers as Windows PowerShell 5.1 would; the targets it
probes are loopback servers. Nothing here resolves a name through real DNS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import winrm.transport

from auditor.errors import HostLevelError, InputError
from auditor.models import Host, RawOutput, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import ProbeSettings
from auditor.probes.powershell import build_powershell_job, parse_powershell
from auditor.secret import Secret
from auditor.transports.options import WinRMSettings
from auditor.transports.winrm import WinRMTransport, command_line, winrm_transport
from tests.support.loopback import Loopback, loopback_servers
from tests.support.proc import command_lines
from tests.support.wsman_env import (
    PASSWORD,
    USER,
    Extras,
    audit_log,
    closed_port,
    endpoint,
    endpoint_tls,
    extra_servers,
    windows_host,
)

SETTINGS = ProbeSettings(connect_timeout=2.0, max_time=2.0)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loopback, Extras]]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb, extra_servers() as ex:
        yield lb, ex


def _network(lb: Loopback, ex: Extras) -> dict[str, Any]:
    return {
        "hosts": {"localhost": "127.0.0.1"},
        "ca_bundle": str(lb.ca_bundle),
        "proxy": f"http://127.0.0.1:{ex.proxy_port}",
        "no_proxy": ["localhost", "127.0.0.1", "nohost.invalid"],
    }


def _run(
    transport: WinRMTransport, host: Host, targets: list[Target], timeout: float = 20.0
) -> RawOutput:
    job = build_powershell_job(targets, SETTINGS)
    try:
        return asyncio.run(transport.run_job(host, job, timeout))
    finally:
        asyncio.run(transport.close())


def _host_error(transport: WinRMTransport, host: Host, timeout: float = 20.0) -> HostLevelError:
    with pytest.raises(HostLevelError) as caught:
        _run(transport, host, [Target(url="https://localhost/", name="x")], timeout)
    assert PASSWORD not in str(caught.value)
    return caught.value


def _transport(**options: Any) -> WinRMTransport:
    return WinRMTransport(WinRMSettings(**options), Secret(PASSWORD), max_workers=2)


def test_ntlm_over_http_with_encryption_audits_every_outcome_exactly(
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
            "The remote server returned an error: (503) Server Unavailable.",
            {"http_status": 503},
        ),
        (
            Target(
                url=f"https://localhost:{lb.https_port}/fail", name="503ok", expected_status=(503,)
            ),
            Outcome.REACHABLE,
            "HTTP 503",
            {"http_status": 503},
        ),
        (
            Target(url="https://nohost.invalid/status", name="dns"),
            Outcome.DNS_FAILURE,
            "The remote name could not be resolved: 'nohost.invalid'",
            {},
        ),
        (
            Target(url=f"https://localhost:{lb.closed_port}/", name="refused"),
            Outcome.REFUSED,
            "Unable to connect to the remote server: No connection could be made because the "
            f"target machine actively refused it 127.0.0.1:{lb.closed_port}",
            {},
        ),
        (
            Target(url=f"https://localhost:{lb.silent_port}/", name="blackhole"),
            Outcome.TIMEOUT,
            "The operation has timed out.",
            {},
        ),
        (
            Target(url=f"https://localhost:{lb.untrusted_port}/", name="intercepted"),
            Outcome.TLS_FAILURE,
            "The underlying connection was closed: Could not establish trust relationship for "
            "the SSL/TLS secure channel. The remote certificate is invalid according to the "
            "validation procedure.; certificate issuer: O=Contoso Ltd, CN=Contoso SSL "
            "Inspection CA",
            {"tls_issuer": "O=Contoso Ltd, CN=Contoso SSL Inspection CA"},
        ),
        (
            Target(url=f"https://localhost:{ex.drop_port}/", name="cut"),
            Outcome.TLS_FAILURE,
            "The underlying connection was closed: An unexpected error occurred on a send. "
            "Authentication failed because the remote party has closed the transport stream.",
            {"tls_issuer": ""},
        ),
        (
            Target(url="https://denied.lab.test/status", name="proxy403"),
            Outcome.PROXY_DENIED,
            f"The remote server returned an error: (403) Forbidden. (proxy {proxy})",
            {"http_status": 403, "proxy": proxy},
        ),
        (
            # The agent-server style target accepts any 4xx from the origin: a proxy's 403
            # must still not pass for one (the probe asks the proxy for the tunnel itself).
            Target(
                url="https://denied.lab.test/CloudAgent/",
                name="proxy403-lenient",
                expected_status=tuple(range(200, 500)),
            ),
            Outcome.PROXY_DENIED,
            f"The remote server returned an error: (403) Forbidden. (proxy {proxy})",
            {"http_status": 403, "proxy": proxy},
        ),
        (
            Target(
                url="https://auth.lab.test/status",
                name="proxy407-lenient",
                expected_status=tuple(range(200, 500)),
            ),
            Outcome.PROXY_DENIED,
            "The remote server returned an error: (407) Proxy Authentication Required. "
            f"(proxy {proxy})",
            {"http_status": 407, "proxy": proxy},
        ),
        (
            Target(url="https://auth.lab.test/status", name="proxy407"),
            Outcome.PROXY_DENIED,
            "The remote server returned an error: (407) Proxy Authentication Required. "
            f"(proxy {proxy})",
            {"http_status": 407, "proxy": proxy},
        ),
    ]
    targets = [case[0] for case in cases]
    with endpoint(tmp_path, auth=["ntlm"], network=_network(lb, ex)) as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="http")
        seen_cmdlines: list[bytes] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen_cmdlines.extend(command_lines())
                time.sleep(0.2)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            raw = _run(_transport(), host, targets)
        finally:
            stop.set()
            watcher.join()
    assert seen_cmdlines, "the /proc scan ran while the audit was in progress"
    assert not [c for c in seen_cmdlines if PASSWORD.encode() in c]
    assert raw.exit_status == 0
    assert raw.stderr.startswith(b"#< CLIXML\r\n")  # 5.1's progress noise, tolerated
    result = parse_powershell(raw, targets, SETTINGS.nonce)
    assert result.facts["ps_version"].startswith("5.1.")
    assert result.facts["ps_edition"] == "Desktop"
    for (target, outcome, detail, fields), obs in zip(cases, result.observations, strict=True):
        assert (obs.url, obs.outcome, obs.detail) == (target.url, outcome, detail), target.name
        for name, value in fields.items():
            assert getattr(obs, name) == value, (target.name, name)
        assert obs.tool == "Invoke-WebRequest"
        assert PASSWORD not in repr(obs)


def test_basic_over_https_validates_the_endpoint_certificate(
    servers: tuple[Loopback, Extras], tmp_path: Path
) -> None:
    lb, ex = servers
    tls = endpoint_tls(tmp_path / "pki")
    target = Target(url=f"https://localhost:{lb.https_port}/status", name="ok")
    config = {
        "auth": ["basic"],
        "tls": {"cert": str(tls.cert), "key": str(tls.key)},
        "network": _network(lb, ex),
    }
    with endpoint(tmp_path / "ep", **config) as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="https")
        raw = _run(_transport(transport="basic", ca_bundle=str(tls.ca)), host, [target])
        (obs,) = parse_powershell(raw, [target], SETTINGS.nonce).observations
        assert (obs.outcome, obs.detail) == (Outcome.REACHABLE, "HTTP 200")

        # The endpoint's certificate from a CA we were not told to trust: a TLS error.
        wrong_ca = _transport(transport="basic", ca_bundle=str(lb.ca_bundle))
        error = _host_error(wrong_ca, host)
        assert error.outcome == HostOutcome.ERROR
        assert error.detail.startswith(
            f"TLS to WinRM endpoint https://127.0.0.1:{wsman.port}/wsman"
        )
        assert "CERTIFICATE_VERIFY_FAILED" in error.detail

        # Only the inventory may switch validation off for a host, and for Basic only when
        # the command line allows it too (--winrm-allow-insecure).
        lax = windows_host(
            wsman.port,
            ansible_winrm_scheme="https",
            ansible_winrm_server_cert_validation="ignore",
        )
        refused = _host_error(_transport(transport="basic"), lax)
        assert refused.outcome == HostOutcome.ERROR
        assert "--winrm-allow-insecure" in refused.detail
        raw = _run(_transport(transport="basic", allow_insecure=True), lax, [target])
        assert (
            parse_powershell(raw, [target], SETTINGS.nonce).observations[0].outcome == "reachable"
        )


def test_ntlm_over_https_sends_channel_bindings_the_endpoint_checks(
    servers: tuple[Loopback, Extras], tmp_path: Path
) -> None:
    lb, ex = servers
    tls = endpoint_tls(tmp_path / "pki")
    target = Target(url=f"https://localhost:{lb.https_port}/status", name="ok")
    config = {"tls": {"cert": str(tls.cert), "key": str(tls.key)}, "network": _network(lb, ex)}
    with endpoint(tmp_path / "ep", **config) as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="https")
        raw = _run(_transport(ca_bundle=str(tls.ca)), host, [target])
    assert parse_powershell(raw, [target], SETTINGS.nonce).observations[0].detail == "HTTP 200"


def test_wrong_password_is_auth_failed_with_the_servers_answer(tmp_path: Path) -> None:
    with endpoint(tmp_path, auth=["ntlm"]) as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="http")
        transport = WinRMTransport(WinRMSettings(), Secret("not-" + PASSWORD), max_workers=1)
        error = _host_error(transport, host)
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert error.detail == (
        "the specified credentials were rejected by the server "
        f"(HTTP 401 from http://127.0.0.1:{wsman.port}/wsman, user {USER}, auth ntlm)"
    )


def test_inventory_password_overrides_the_cli_one_and_never_shows(tmp_path: Path) -> None:
    with endpoint(tmp_path, auth=["ntlm"]) as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="http", ansible_password="wrong-pw")
        error = _host_error(_transport(), host)
    assert error.outcome == HostOutcome.AUTH_FAILED
    assert "wrong-pw" not in error.detail
    assert "wrong-pw" not in repr(host)


def test_closed_port_is_unreachable() -> None:
    port = closed_port()
    error = _host_error(_transport(), windows_host(port, ansible_winrm_scheme="http"))
    assert error.outcome == HostOutcome.UNREACHABLE
    assert error.detail == (
        f"cannot connect to http://127.0.0.1:{port}/wsman: [Errno 111] Connection refused"
    )


def test_unresolvable_endpoint_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    # The lookup is answered here, so no query for the made-up name leaves the machine.
    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "winrm.nohost.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    host = windows_host(5985)
    host = dataclasses.replace(host, address="winrm.nohost.invalid")
    error = _host_error(_transport(), host)
    assert error.outcome == HostOutcome.UNREACHABLE
    assert error.detail == (
        "cannot connect to http://winrm.nohost.invalid:5985/wsman: "
        "[Errno -2] Name or service not known"
    )


def test_a_shell_that_never_completes_ends_within_the_timeout_and_is_cleaned_up(
    tmp_path: Path,
) -> None:
    log = tmp_path / "actions.jsonl"
    with endpoint(tmp_path, behaviour="hang", audit_log=str(log)) as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="http")
        start = time.monotonic()
        error = _host_error(_transport(), host, timeout=3.0)
        elapsed = time.monotonic() - start
    assert error.outcome == HostOutcome.SESSION_TIMEOUT
    assert error.detail == (
        f"WinRM session on http://127.0.0.1:{wsman.port}/wsman (receive) did not finish within 3 s"
    )
    assert elapsed < 3.5
    actions = [entry["action"] for entry in audit_log(log)]
    assert actions[:2] == ["Create", "Command"]
    assert set(actions[2:-2]) == {"Receive"}
    assert actions[-2:] == ["Signal", "Delete"]


def test_a_hung_http_response_is_a_session_timeout(tmp_path: Path) -> None:
    with endpoint(tmp_path, behaviour="slow_http") as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="http")
        start = time.monotonic()
        error = _host_error(_transport(), host, timeout=2.5)
        elapsed = time.monotonic() - start
    assert error.outcome == HostOutcome.SESSION_TIMEOUT
    assert "did not answer in time" in error.detail
    assert elapsed < 3.0


def test_quota_fault_is_an_error_with_the_fault_text(tmp_path: Path) -> None:
    with endpoint(tmp_path, behaviour="quota", max_shells=5) as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="http")
        error = _host_error(_transport(), host)
    assert error.outcome == HostOutcome.ERROR
    assert error.detail == (
        f"WS-Management fault from http://127.0.0.1:{wsman.port}/wsman (create shell) "
        "(HTTP 500, WS-Man code 2150859173): The WS-Management service cannot process the "
        "request. This user is allowed a maximum number of 5 concurrent shells, which has "
        "been exceeded. Close existing shells or raise the quota for this user."
    )


def test_missing_powershell_is_probe_unavailable(tmp_path: Path) -> None:
    with endpoint(tmp_path, behaviour="no_powershell") as wsman:
        host = windows_host(wsman.port, ansible_winrm_scheme="http")
        error = _host_error(_transport(), host)
    assert error.outcome == HostOutcome.PROBE_UNAVAILABLE
    assert error.detail.startswith("powershell.exe could not be started: WS-Management fault")
    assert error.detail.endswith("The system cannot find the file specified.")


def test_unencrypted_soap_over_http_is_refused_like_winrm_does(tmp_path: Path) -> None:
    with endpoint(tmp_path, auth=["ntlm"]) as wsman:
        host = windows_host(
            wsman.port, ansible_winrm_scheme="http", ansible_winrm_message_encryption="never"
        )
        error = _host_error(_transport(), host)
    assert error.outcome == HostOutcome.ERROR
    assert "answered HTTP 400" in error.detail


def test_basic_over_plain_http_is_refused_before_any_traffic() -> None:
    transport = _transport(transport="basic")
    host = windows_host(5985)
    with pytest.raises(InputError, match=r"host win-test: Basic auth over plain HTTP"):
        transport.endpoint(host)
    error = _host_error(transport, host)
    assert error.outcome == HostOutcome.ERROR
    assert "Basic auth over plain HTTP" in error.detail
    allowed = _transport(transport="basic", allow_basic_http=True)
    assert allowed.endpoint(host).url == "http://127.0.0.1:5985/wsman"


@pytest.mark.parametrize("name", ["kerberos", "credssp"])
def test_kerberos_and_credssp_name_their_extra_when_missing(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test extras install both; pywinrm's own flags say what it could import.
    monkeypatch.setattr(winrm.transport, f"HAVE_{name.upper()}", False)
    with pytest.raises(InputError, match=rf"pip install 'fleet-auditor\[{name}\]'"):
        _transport(transport=name).endpoint(windows_host(5986))
    error = _host_error(_transport(transport=name), windows_host(closed_port()))
    assert error.outcome == HostOutcome.ERROR
    assert f"WinRM transport '{name}' needs extra packages" in error.detail
    # A list falls through to the next transport whose packages are there.
    listed = windows_host(5986, ansible_winrm_transport=[name, "ntlm"])
    assert _transport().endpoint(listed).auth == "ntlm"


def test_inventory_variables_map_onto_the_endpoint() -> None:
    transport = winrm_transport(
        WinRMSettings(user="cli-user", ca_bundle="/etc/ssl/ca.pem", password=Secret(PASSWORD)),
        forks=3,
    )
    host = windows_host(
        5986,
        ansible_winrm_transport=["kerberos", "ntlm"]
        if not winrm.transport.HAVE_KERBEROS
        else "ntlm",
        ansible_winrm_path="/custom",
        ansible_winrm_ca_trust_path="/srv/ca.pem",
    )
    ep = transport.endpoint(host)
    assert ep.url == "https://127.0.0.1:5986/custom"
    assert (ep.auth, ep.user, ep.ca_bundle, ep.validate_cert) == ("ntlm", USER, "/srv/ca.pem", True)
    assert ep.password is not None and ep.password.reveal() == PASSWORD
    assert PASSWORD not in repr(ep) + repr(transport) + str(ep.password)
    # Ansible's rule: http on 5985 unless the inventory says otherwise.
    assert transport.endpoint(windows_host(5985)).url.startswith("http://")
    cert = windows_host(5986, ansible_winrm_transport="certificate")
    with pytest.raises(InputError, match="certificate auth needs https and both"):
        transport.endpoint(cert)


def test_twenty_targets_fit_the_createprocess_limit_the_transport_relies_on() -> None:
    targets = [
        Target(url=f"https://cdn{i}.qg3.apps.qualys.com/status", name=str(i)) for i in range(20)
    ]
    line = command_line(build_powershell_job(targets, SETTINGS).script)
    assert 8191 < len(line) < 32767
    assert line.startswith("powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass ")


def test_the_powershell_that_runs_the_probe_comes_from_the_inventory_then_the_flag() -> None:
    default = winrm_transport(WinRMSettings(password=Secret(PASSWORD)), forks=1)
    assert default.endpoint(windows_host(5985)).program == "powershell.exe"
    flagged = winrm_transport(WinRMSettings(powershell="pwsh", password=Secret(PASSWORD)), forks=1)
    assert flagged.endpoint(windows_host(5985)).program == "pwsh.exe"
    inventory = windows_host(5985, auditor_powershell="powershell")
    assert flagged.endpoint(inventory).program == "powershell.exe"
    assert command_line("x", "pwsh.exe").startswith("pwsh.exe -NoProfile -NonInteractive ")
    with pytest.raises(InputError, match="auditor_powershell='pwsh7' is neither"):
        default.endpoint(windows_host(5985, auditor_powershell="pwsh7"))
