"""The lab's WS-Management endpoint: the protocol pywinrm speaks, NTLM sealing, WinRM faults,
and PowerShell 5.1's answers, checked with pywinrm itself on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import winrm
from auditor_lab import ps51
from auditor_lab.wsman import EndpointConfig, EndpointProcess
from cryptography import x509
from cryptography.x509.oid import NameOID
from winrm.exceptions import WinRMOperationTimeoutError, WSManFaultError
from winrm.protocol import Protocol

from auditor.classify import classify
from auditor.errors import HostLevelError
from auditor.models import RawOutput, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import ProbeSettings
from auditor.probes.powershell import build_powershell_job, parse_powershell
from auditor.probes.powershell import evidence as powershell_evidence
from auditor.secret import Secret
from auditor.transports.options import WinRMSettings
from auditor.transports.winrm import WinRMTransport, encode_command
from tests.support.loopback import Loopback, loopback_servers
from tests.support.wsman_env import PASSWORD, USER, audit_log, endpoint, windows_host

SETTINGS = ProbeSettings(connect_timeout=2.0, max_time=2.0)


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as servers:
        yield servers


def _protocol(port: int, **kw: Any) -> Protocol:
    options: dict[str, Any] = {
        "transport": "ntlm",
        "username": USER,
        "password": PASSWORD,
        "operation_timeout_sec": 1,
        "read_timeout_sec": 5,
        "proxy": None,
        "ca_trust_path": None,
    }
    options.update(kw)
    return Protocol(f"http://127.0.0.1:{port}/wsman", **options)


def _audit(port: int, targets: list[Target]) -> Any:
    transport = WinRMTransport(WinRMSettings(), Secret(PASSWORD), max_workers=1)
    host = windows_host(port, ansible_winrm_scheme="http")
    job = build_powershell_job(targets, SETTINGS)
    try:
        raw = asyncio.run(transport.run_job(host, job, 20.0))
    finally:
        asyncio.run(transport.close())
    return parse_powershell(raw, targets, SETTINGS.nonce)


def test_pywinrm_run_ps_goes_through_cmd_exe_and_hits_its_8191_limit(tmp_path: Path) -> None:
    script = build_powershell_job([Target(url="https://localhost/", name="x")], SETTINGS).script
    with endpoint(tmp_path) as wsman:
        session = winrm.Session(
            f"http://127.0.0.1:{wsman.port}/wsman",
            auth=(USER, PASSWORD),
            transport="ntlm",
            proxy=None,
            ca_trust_path=None,
        )
        response = session.run_ps(script)
    assert (response.status_code, response.std_err) == (1, b"The command line is too long.\r\n")


def test_receive_polls_through_operation_timeouts_until_done(lb: Loopback, tmp_path: Path) -> None:
    target = Target(url=f"https://localhost:{lb.silent_port}/", name="blackhole")
    program, args = encode_command(build_powershell_job([target], SETTINGS).script)
    config = {"network": {"hosts": {"localhost": "127.0.0.1"}, "proxy": ""}}
    with endpoint(tmp_path, audit_log=str(tmp_path / "log.jsonl"), **config) as wsman:
        protocol = _protocol(wsman.port)
        shell = protocol.open_shell()
        command = protocol.run_command(shell, program, args, skip_cmd_shell=True)
        timeouts = 0
        out = b""
        while True:
            try:
                stdout, _, code, done = protocol.get_command_output_raw(shell, command)
            except WinRMOperationTimeoutError:
                timeouts += 1
                continue
            out += stdout
            if done:
                break
        protocol.cleanup_command(shell, command)
        protocol.close_shell(shell)
    assert code == 0 and timeouts >= 1
    raw = RawOutput(stdout=out, stderr=b"", exit_status=code)
    obs = parse_powershell(raw, [target], SETTINGS.nonce).observations[0]
    assert (obs.outcome, obs.detail) == (Outcome.TIMEOUT, "The operation has timed out.")
    actions = [e["action"] for e in audit_log(tmp_path / "log.jsonl")]
    assert actions[0] == "Create" and actions[-2:] == ["Signal", "Delete"]


def test_shell_quota_is_enforced_per_user_and_freed_by_delete(tmp_path: Path) -> None:
    with endpoint(tmp_path, max_shells=1) as wsman:
        protocol = _protocol(wsman.port)
        first = protocol.open_shell()
        with pytest.raises(WSManFaultError) as caught:
            protocol.open_shell()
        assert caught.value.wsman_fault_code == 2150859173
        assert caught.value.fault_subcode == "w:QuotaLimit"
        assert "maximum number of 1 concurrent shells" in caught.value.reason
        protocol.close_shell(first)
        protocol.close_shell(protocol.open_shell())


def test_sealed_messages_are_integrity_checked(tmp_path: Path) -> None:
    with endpoint(tmp_path) as wsman:
        protocol = _protocol(wsman.port)
        shell = protocol.open_shell()  # authenticates and sets up NTLM sealing
        transport = protocol.transport
        assert transport.encryption is not None and transport.session is not None
        envelope = b"<s:Envelope/>"
        request = transport.encryption.prepare_encrypted_request(
            transport.session, transport.endpoint, envelope
        )
        body = bytearray(request.body)  # type: ignore[arg-type]
        body[-30] ^= 0x01  # one bit of the sealed payload
        request.body = bytes(body)
        answer = transport.session.send(request, timeout=5)
        assert answer.status_code == 400
        # The sealing state is spent (sequence numbers moved on): a new session cleans up.
        _protocol(wsman.port).close_shell(shell)


def test_guard_refuses_every_address_outside_the_lab_ranges(lb: Loopback, tmp_path: Path) -> None:
    targets = [
        Target(url="https://192.0.2.10/status", name="literal"),
        Target(url="https://outside.lab.test/status", name="mapped"),
        Target(url="https://cask.qg3.apps.qualys.com/status", name="real-name"),
    ]
    network = {"hosts": {"outside.lab.test": "192.0.2.11"}, "proxy": ""}
    with endpoint(tmp_path, network=network) as wsman:
        literal, mapped, real = _audit(wsman.port, targets).observations
    assert (literal.outcome, literal.detail) == (
        Outcome.ERROR,
        "lab emulator refused to contact 192.0.2.10: outside 127.0.0.0/8 and 10.213.0.0/16",
    )
    assert mapped.detail.startswith("lab emulator refused to contact 192.0.2.11")
    # Without system_dns, a name outside the hosts map never reaches a resolver.
    assert (real.outcome, real.detail) == (
        Outcome.DNS_FAILURE,
        "The remote name could not be resolved: 'cask.qg3.apps.qualys.com'",
    )


def test_a_proxy_outside_the_lab_ranges_is_refused_too(tmp_path: Path) -> None:
    network = {"proxy": "http://192.0.2.12:3128", "no_proxy": []}
    with endpoint(tmp_path, network=network) as wsman:
        (obs,) = _audit(wsman.port, [Target(url="https://a.lab.test/", name="x")]).observations
    assert obs.detail.startswith("lab emulator refused to contact 192.0.2.12")


@pytest.mark.parametrize(
    ("behaviour", "outcome", "detail"),
    [
        (
            "no_iwr",
            HostOutcome.PROBE_UNAVAILABLE,
            "Invoke-WebRequest is not available (PowerShell 2.0); "
            "the probe needs PowerShell 3.0 or later",
        ),
        (
            "constrained_language",
            HostOutcome.PROBE_UNAVAILABLE,
            "PowerShell refused the probe (constrained language mode): Cannot invoke method. "
            "Method invocation is supported only on core types in this language mode.",
        ),
        (
            "garbage",
            HostOutcome.ERROR,
            "no probe records in the host's output (exit status 0): \ufffd<Objs>not a record",
        ),
    ],
)
def test_powershell_level_failures_reach_the_parser_as_host_outcomes(
    tmp_path: Path, behaviour: str, outcome: HostOutcome, detail: str
) -> None:
    with endpoint(tmp_path, behaviour=behaviour) as wsman:
        with pytest.raises(HostLevelError) as caught:
            _audit(wsman.port, [Target(url="https://localhost/", name="x")])
    assert (caught.value.outcome, caught.value.detail) == (outcome, detail)


def test_passwords_come_from_the_config_file_never_argv(tmp_path: Path) -> None:
    with endpoint(tmp_path) as wsman:
        assert wsman.process is not None
        cmdline = Path(f"/proc/{wsman.process.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{wsman.process.pid}/environ").read_bytes()
    assert PASSWORD.encode() not in cmdline + environ
    assert b"--config" in cmdline
    assert oct((tmp_path / "wsman.json").stat().st_mode & 0o777) == "0o600"


def test_config_rejects_listening_outside_the_lab_and_unknown_behaviours(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"listen": "0.0.0.0"}))
    with pytest.raises(ValueError, match="outside the lab's ranges"):
        EndpointConfig.from_file(path)
    path.write_text(json.dumps({"behaviour": "explode"}))
    with pytest.raises(ValueError, match="behaviour must be one of"):
        EndpointConfig.from_file(path)
    bad = EndpointProcess(path, env={"PATH": os.environ.get("PATH", "")})
    with pytest.raises(RuntimeError, match="did not start"):
        bad.start(timeout=10)
    assert bad.process is None


def test_wrong_password_gets_a_plain_401(tmp_path: Path) -> None:
    with endpoint(tmp_path) as wsman:
        url = f"http://127.0.0.1:{wsman.port}/wsman"
        answer = requests.post(url, data=b"<x/>", timeout=5)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == "Negotiate"
        with pytest.raises(winrm.exceptions.InvalidCredentialsError):
            _protocol(wsman.port, password="nope").open_shell()


# --- PowerShell 5.1 shapes --------------------------------------------------------------


def test_issuer_is_printed_the_way_dotnet_prints_it() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso, Ltd"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Contoso SSL Inspection CA"),
        ]
    )
    assert ps51.dotnet_name(name) == 'CN=Contoso SSL Inspection CA, O="Contoso, Ltd", C=US'


def test_records_use_51s_json_escapes() -> None:
    line = ps51.record_line("n0nce", {"kind": "target", "msg": "a<b>&'c"})
    body = base64.b64decode(line.split()[2])
    assert body == b'{"kind":"target","msg":"a\\u003cb\\u003e\\u0026\\u0027c"}'
    assert line.endswith(b"\r\n")


def test_clixml_errors_read_back_through_pywinrm() -> None:
    lines = ["Invoke-WebRequest : The operation has timed out.", "At line:1 char:1"]
    stderr = ps51.clixml_error(lines, 120)
    assert stderr.startswith(b'#< CLIXML\r\n<Objs Version="1.1.0.1"')
    cleaned = winrm.Session("http://127.0.0.1:1/wsman", auth=("u", "p"))._clean_error_msg(stderr)
    assert cleaned == "\n".join(lines).encode()


def test_long_clixml_lines_wrap_at_the_console_width() -> None:
    stderr = ps51.clixml_error(["word " * 30], 40).decode()
    shown = [s.replace("_x000D__x000A_", "") for s in stderr.split('<S S="Error">')[1:]]
    assert all(len(s.removesuffix("</S>").removesuffix("</S></Objs>")) <= 40 for s in shown)


def test_decode_command_reads_pywinrm_and_transport_forms() -> None:
    script = "Write-Output 'hi'"
    encoded = base64.b64encode(script.encode("utf-16-le")).decode()
    assert ps51.decode_command(f"powershell -encodedcommand {encoded}") == script
    assert ps51.decode_command(" ".join(["powershell.exe", *encode_command(script)[1]])) == script
    assert ps51.decode_command(f"cmd.exe /c echo {encoded}") is None


class _ConnectAnswer:
    """A one-line CONNECT answerer on loopback: replies `status` to every CONNECT."""

    def __init__(self, status: int) -> None:
        import socket
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.requests: list[bytes] = []
        self._status = status
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    head += chunk
                self.requests.append(head)
                conn.sendall(f"HTTP/1.1 {self._status} X\r\nContent-Length: 0\r\n\r\n".encode())

    def close(self) -> None:
        self.server.close()
        self._thread.join(timeout=5)


@pytest.mark.parametrize(("proxy_says", "denied"), [(200, False), (403, True)])
def test_a_proxied_403_is_the_proxys_unless_it_grants_the_tunnel(
    proxy_says: int, denied: bool
) -> None:
    answerer = _ConnectAnswer(proxy_says)
    try:
        network = ps51.Network(proxy=f"http://127.0.0.1:{answerer.port}")
        url = "https://127.0.0.1:8443/CloudAgent/"
        rec = ps51.target_record(0, url, network)
        rec.update(status=403, reason="ProtocolError", type="System.Net.WebException")
        ps51.gather_more(rec, url, 2000, network)
        assert rec["proxy"] == f"http://127.0.0.1:{answerer.port}/"
        assert rec["tunnel"] == ("denied" if denied else "granted")
        assert answerer.requests == [
            b"CONNECT 127.0.0.1:8443 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n\r\n"
        ]
    finally:
        answerer.close()
    seen = powershell_evidence(rec)
    lenient = Target(url=url, name="agent", expected_status=tuple(range(200, 500)))
    got = classify(seen, lenient)[0]
    assert got == ("proxy_denied" if denied else "reachable")
    # An origin's 403 through a granted tunnel, where only 200 is expected, is the origin's.
    granted = powershell_evidence({**rec, "tunnel": "granted"})
    assert classify(granted, Target(url=url, name="x"))[0] == "http_error"


def test_a_407_is_always_the_proxys_and_plain_http_403s_are_read_as_the_proxys() -> None:
    network = ps51.Network(proxy="http://10.213.0.1:3128")
    rec = ps51.target_record(0, "https://x.test/", network)
    rec.update(status=407, reason="ProtocolError")
    ps51.gather_more(rec, "https://x.test/", 100, network)
    https = Target(url="https://x.test/", name="x")
    assert classify(powershell_evidence(rec), https)[0] == "proxy_denied"
    plain = {**ps51.target_record(0, "http://x.test/", network), "status": 403}
    plain["reason"] = "ProtocolError"
    ps51.gather_more(plain, "http://x.test/", 100, network)
    assert plain["tunnel"] == ""  # no tunnel to ask about over plain HTTP
    http = Target(url="http://x.test/", name="x")
    assert classify(powershell_evidence(plain), http)[0] == "proxy_denied"


def test_a_proxied_403_whose_proxy_does_not_answer_the_tunnel_check_stays_the_proxys() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = int(closed.getsockname()[1])
    # Nothing listens there any more: the probe's own CONNECT gets no answer.
    network = ps51.Network(proxy=f"http://127.0.0.1:{port}")
    url = "https://127.0.0.1:8443/CloudAgent/"
    rec = ps51.target_record(0, url, network)
    rec.update(status=403, reason="ProtocolError", type="System.Net.WebException")
    ps51.gather_more(rec, url, 2000, network)
    assert rec["tunnel"] == "no_answer"
    lenient = Target(url=url, name="agent", expected_status=tuple(range(200, 500)))
    assert classify(powershell_evidence(rec), lenient)[0] == "proxy_denied"
