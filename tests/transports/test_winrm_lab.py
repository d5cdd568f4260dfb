"""The WinRM transport against the lab's Windows hosts, through the real `audit` command.

One audit of the whole lab (Linux hosts over SSH, Windows hosts over WinRM) in one run with
one report, then one test per Windows host for its exact outcome and detail. Each Windows
host is a network namespace running the lab's WS-Management endpoint (real NTLM with message
encryption over HTTP, or Basic over HTTPS with a certificate from the lab CA), which makes the
probe's request from inside that namespace: the DNS, firewall, proxy and interception
conditions are the real ones. The WinRM password travels only in AUDITOR_WINRM_PASSWORD.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import LabInfo
from auditor_lab.spec import (
    CDN_ADDRESS,
    DENY_PROXY_URL,
    HTTPS_PORT,
    LAB_WINRM_USER,
    PROBE_URL,
    HostKind,
    design_hosts,
    windows_hosts,
)
from auditor_lab.windows import ACTIONS_FILE, machine_name

from tests.support.proc import command_lines

BIN = Path(sys.executable).parent
WINDOWS = {spec.name: spec for spec in windows_hosts()}
LINUX = {spec.name: spec for spec in design_hosts()}
# Small on purpose: the shell that never completes costs exactly this long, and it is the
# longest host of the run.
TIMEOUT = 12
PROBE_TIMEOUT = 3
HOST = "cask.qg3.apps.qualys.com"


@dataclass(frozen=True)
class MixedRun:
    status: int
    hosts: dict[str, Any]
    out: Path
    stdout: str
    stderr: str
    password: str
    ssh_password: str
    cmdlines: frozenset[bytes]
    samples: int
    seconds: float


def _cmdlines() -> set[bytes]:
    return set(command_lines())


@pytest.fixture(scope="module")
def mixed(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> MixedRun:
    """The whole lab audited once by the real CLI, /proc/*/cmdline read all the while."""
    assert lab.winrm_password is not None
    password = lab.winrm_password.read_text().strip()
    out = tmp_path_factory.mktemp("mixed") / "out"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["AUDITOR_WINRM_PASSWORD"] = password
    assert lab.ssh_password is not None
    ssh_password = lab.ssh_password.read_text().strip()
    env["AUDITOR_SSH_PASSWORD"] = ssh_password
    argv = [
        str(BIN / "audit"),
        "-i",
        str(lab.inventory),
        "--known-hosts",
        str(lab.known_hosts),
        "--url",
        PROBE_URL,
        "-o",
        str(out),
        "--timeout",
        str(TIMEOUT),
        "--connect-timeout",
        "5",
        "--probe-timeout",
        str(PROBE_TIMEOUT),
        "--probe-connect-timeout",
        "2",
    ]
    seen: set[bytes] = set()
    samples = 0
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    done = threading.Event()

    def sample() -> None:
        nonlocal samples
        while not done.is_set():
            seen.update(_cmdlines())
            samples += 1
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT + 45)
    finally:
        done.set()
        sampler.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - start
    assert "Traceback" not in stderr, stderr
    report = json.loads((out / "report.json").read_text())
    return MixedRun(
        status=proc.returncode,
        hosts={h["host"]["name"]: h for h in report["hosts"]},
        out=out,
        stdout=stdout,
        stderr=stderr,
        password=password,
        ssh_password=ssh_password,
        cmdlines=frozenset(seen),
        samples=samples,
        seconds=seconds,
    )


def test_a_mixed_fleet_audits_in_one_run_with_one_report(mixed: MixedRun, lab: LabInfo) -> None:
    assert mixed.status == 1  # something is blocked
    assert sorted(mixed.hosts) == sorted(spec.name for spec in lab.hosts)
    connections = {name: h["host"]["connection"] for name, h in mixed.hosts.items()}
    assert {connections[name] for name in LINUX} == {"ssh"}
    assert {connections[name] for name in WINDOWS} == {"winrm"}
    # One results stream and one JUnit file cover both kinds of host.
    lines = [json.loads(x) for x in (mixed.out / "results.jsonl").read_text().splitlines()]
    streamed = {x["host"]["name"] for x in lines if isinstance(x.get("host"), dict)}
    assert streamed == set(mixed.hosts)
    cases = [case.get("name") for case in ET.parse(mixed.out / "junit.xml").iter("testcase")]
    assert sorted(cases) == sorted(mixed.hosts)  # one URL: one testcase per host
    assert mixed.seconds < TIMEOUT + 20, mixed.seconds


@pytest.mark.parametrize("name", sorted(LINUX))
def test_linux_hosts_in_the_mixed_run_get_their_designed_outcomes(
    mixed: MixedRun, name: str
) -> None:
    spec = LINUX[name]
    result = mixed.hosts[name]
    if spec.audited:
        (obs,) = result["observations"]
        assert obs["outcome"] == spec.outcome.value, obs
    else:
        assert result["host_outcome"] == spec.outcome.value, result


def _expected(lab: LabInfo, name: str) -> tuple[str, str]:
    """(outcome, exact detail) for each Windows host: Windows PowerShell 5.1's own texts for
    the target verdicts (see auditor_lab.ps51 for their sources), PowerShell 7's for the win7
    hosts (auditor_lab.ps7), the transport's for the host-level ones."""
    url = lab.host(name).winrm_url
    details = {
        "win-direct": ("reachable", "HTTP 200"),
        "win-https": ("reachable", "HTTP 200"),
        "win-reject": (
            "refused",
            "Unable to connect to the remote server: No connection could be made because the "
            f"target machine actively refused it {CDN_ADDRESS}:{HTTPS_PORT}",
        ),
        "win-blackhole": ("timeout", "The operation has timed out."),
        "win-nodns": ("dns_failure", f"The remote name could not be resolved: '{HOST}'"),
        "win-proxydeny": (
            "proxy_denied",
            f"The remote server returned an error: (403) Forbidden. (proxy {DENY_PROXY_URL}/)",
        ),
        "win-intercept": (
            "tls_failure",
            "The underlying connection was closed: Could not establish trust relationship for "
            "the SSL/TLS secure channel. The remote certificate is invalid according to the "
            "validation procedure.; certificate issuer: O=Contoso Ltd, CN=Contoso SSL "
            "Inspection CA",
        ),
        "win-noauth": (
            "auth_failed",
            f"the specified credentials were rejected by the server (HTTP 401 from {url}, "
            f"user {LAB_WINRM_USER}, auth ntlm)",
        ),
        "win-down": ("unreachable", f"cannot connect to {url}: [Errno 111] Connection refused"),
        "win-hang": (
            "session_timeout",
            f"WinRM session on {url} (receive) did not finish within {TIMEOUT} s",
        ),
        "win-quota": (
            "error",
            f"WS-Management fault from {url} (create shell) (HTTP 500, WS-Man code "
            "2150859173): The WS-Management service cannot process the request. This user is "
            "allowed a maximum number of 30 concurrent shells, which has been exceeded. Close "
            "existing shells or raise the quota for this user.",
        ),
        "win7-direct": ("reachable", "HTTP 200"),
        "win7-reject": (
            "refused",
            "No connection could be made because the target machine actively refused it. "
            f"({HOST}:{HTTPS_PORT})",
        ),
        "win7-blackhole": (
            "timeout",
            "The request was canceled due to the configured HttpClient.Timeout of "
            f"{PROBE_TIMEOUT} seconds elapsing.",
        ),
        "win7-nodns": ("dns_failure", f"No such host is known. ({HOST}:{HTTPS_PORT})"),
        "win7-proxydeny": (
            "proxy_denied",
            f"The proxy tunnel request to proxy '{DENY_PROXY_URL}/' failed with status code '403'.",
        ),
        "win7-intercept": (
            "tls_failure",
            "The SSL connection could not be established, see inner exception. The remote "
            "certificate is invalid because of errors in the certificate chain: UntrustedRoot; "
            "certificate issuer: O=Contoso Ltd, CN=Contoso SSL Inspection CA",
        ),
        "win7-http503": (
            "http_error",
            "Response status code does not indicate success: 503 (Service Unavailable).",
        ),
    }
    return details[name]


def test_every_windows_design_host_has_an_exact_expectation(lab: LabInfo) -> None:
    assert {h.name for h in lab.hosts if h.kind is HostKind.WINDOWS} == set(WINDOWS)
    for name, spec in WINDOWS.items():
        outcome, detail = _expected(lab, name)
        assert outcome == spec.outcome.value and spec.detail in detail, name


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_each_windows_host_gets_its_exact_outcome_and_detail(
    mixed: MixedRun, lab: LabInfo, name: str
) -> None:
    spec = WINDOWS[name]
    outcome, detail = _expected(lab, name)
    result = mixed.hosts[name]
    assert result["host"]["connection"] == "winrm"
    if spec.audited:
        assert result["audited"] is True, result
        (obs,) = result["observations"]
        assert (obs["outcome"], obs["detail"]) == (outcome, detail), obs
        assert obs["tool"] == "Invoke-WebRequest"
        assert obs["proxy"] == spec.proxy
        if outcome == "tls_failure":
            assert obs["tls_issuer"] == "O=Contoso Ltd, CN=Contoso SSL Inspection CA"
        # The facts say which emulated host answered, and as which PowerShell.
        facts = result["facts"]
        assert facts["hostname"] == machine_name(spec)
        edition = {"5.1": ("Desktop", "5.1."), "7": ("Core", "7.4.")}[spec.powershell]
        assert (facts["ps_edition"], facts["ps_version"][:4]) == edition
    else:
        assert result["audited"] is False, result
        shown = result["detail"]
        if name == "win-hang":
            # The scheduler hands the transport the time left of the host's deadline, which a
            # thread switch can shave by microseconds (printed as 11.9999): allow that alone.
            seconds = re.fullmatch(r".* did not finish within ([0-9.]+) s", shown)
            assert seconds and TIMEOUT - 0.01 < float(seconds.group(1)) <= TIMEOUT, shown
            shown = shown.replace(f"{seconds.group(1)} s", f"{TIMEOUT} s")
        assert (result["host_outcome"], shown) == (outcome, detail), result
        assert result["observations"] == []


def _actions(lab: LabInfo, name: str) -> list[dict[str, Any]]:
    path = lab.directory / "hosts" / name / ACTIONS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_ntlm_with_message_encryption_and_basic_over_https_were_both_used(
    mixed: MixedRun, lab: LabInfo
) -> None:
    for name in ("win-direct", "win-reject", "win-blackhole", "win-nodns", "win-proxydeny"):
        actions = _actions(lab, name)
        assert "Command" in [a["action"] for a in actions], name
        assert {a["via"] for a in actions} == {"ntlm+sealed"}, name
        assert {a["user"] for a in actions} == {LAB_WINRM_USER}
    https = _actions(lab, "win-https")
    assert {a["via"] for a in https} == {"basic+tls"}
    assert lab.host("win-https").winrm_url.startswith("https://")
    assert mixed.hosts["win-https"]["observations"][0]["outcome"] == "reachable"


def test_the_hung_shell_is_signalled_and_deleted_and_the_quota_host_never_got_one(
    mixed: MixedRun, lab: LabInfo
) -> None:
    hang = [a["action"] for a in _actions(lab, "win-hang")]
    assert hang[:2] == ["Create", "Command"]
    assert set(hang[2:-2]) == {"Receive"}
    assert hang[-2:] == ["Signal", "Delete"]
    assert [a["action"] for a in _actions(lab, "win-quota")] == ["Create"]
    assert not (lab.directory / "hosts" / "win-noauth" / ACTIONS_FILE).exists()


def test_the_probe_requests_came_from_each_windows_hosts_own_address(
    mixed: MixedRun, lab: LabInfo
) -> None:
    log = lab.services_log.read_text()
    direct = lab.host("win-direct").address
    assert f"cdn-https src={direct} host={HOST} method=GET path=/status status=200" in log
    deny = lab.host("win-proxydeny").address
    assert f"deny-proxy src={deny} host={HOST}:443 method=CONNECT" in log
    # Refused and dropped packets never reach the CDN; the nodns host never had an address.
    for name in ("win-reject", "win-blackhole", "win-nodns"):
        assert f"cdn-https src={lab.host(name).address} " not in log, name


def test_the_powershell_7_hosts_meet_the_same_real_conditions(
    mixed: MixedRun, lab: LabInfo
) -> None:
    log = lab.services_log.read_text()
    for name, status in (("win7-direct", 200), ("win7-http503", 503)):
        src = lab.host(name).address
        assert f"cdn-https src={src} host={HOST} method=GET path=/status status={status}" in log
    deny = lab.host("win7-proxydeny").address
    assert f"deny-proxy src={deny} host={HOST}:443 method=CONNECT" in log
    for name in ("win7-reject", "win7-blackhole", "win7-nodns"):
        assert f"cdn-https src={lab.host(name).address} " not in log, name
    assert {a["via"] for a in _actions(lab, "win7-direct")} == {"ntlm+sealed"}


@pytest.mark.parametrize("kind", ["winrm", "ssh"])
def test_the_password_is_in_no_report_file_output_or_command_line(
    mixed: MixedRun, kind: str
) -> None:
    password = mixed.password if kind == "winrm" else mixed.ssh_password
    secret = password.encode()
    if kind == "ssh":  # it was used: the password-only host was audited with it
        assert mixed.hosts["pwauth"]["audited"] is True
    files = sorted(p for p in mixed.out.iterdir() if p.is_file())
    names = {p.name for p in files}
    assert {"results.jsonl", "report.json", "report.csv", "report.html", "junit.xml"} <= names
    for path in files:
        assert secret not in path.read_bytes(), path
    assert password not in mixed.stdout + mixed.stderr
    # The sampler ran while the audit did: it saw the audit's own command line, and the
    # endpoints' (which name their config file, never the password).
    assert mixed.samples >= 10
    assert any(b"--known-hosts" in c and str(mixed.out).encode() in c for c in mixed.cmdlines)
    assert any(b"auditor_lab.wsman\x00--config\x00" in c for c in mixed.cmdlines)
    assert [c for c in mixed.cmdlines if secret in c] == []
