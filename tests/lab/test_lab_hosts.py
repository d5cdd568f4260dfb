"""Each design host shows its condition to real tools: OpenSSH into the host, then the
vendor's own check (`curl https://cask.qg3.apps.qualys.com/status`) from inside it."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
from auditor_lab import PROBE_URL, LabInfo
from auditor_lab.netns import NETNS_DIR

from auditor.outcomes import HostOutcome, Outcome

SshRun = Any  # the `ssh_run` fixture (tests/lab/conftest.py)

CURL = f'hostname; curl -sS --max-time 2 -o /dev/null -w "%{{http_code}}" {PROBE_URL}'

# host -> (curl exit status, HTTP code, the outcome the design table promises)
CURL_RESULTS = {
    "direct": (0, "200", Outcome.REACHABLE),
    "jump": (0, "200", Outcome.REACHABLE),
    "viaproxy": (0, "200", Outcome.REACHABLE),
    "nodns": (6, "000", Outcome.DNS_FAILURE),
    "reject": (7, "000", Outcome.REFUSED),
    "blackhole": (28, "000", Outcome.TIMEOUT),
    "intercept": (60, "000", Outcome.TLS_FAILURE),
    "proxydeny": (56, "000", Outcome.PROXY_DENIED),
    "http503": (0, "503", Outcome.HTTP_ERROR),
}


@pytest.mark.parametrize("name", sorted(CURL_RESULTS))
def test_curl_on_each_audited_host_fails_as_designed(
    lab: LabInfo, ssh_run: SshRun, name: str
) -> None:
    exit_status, http_code, outcome = CURL_RESULTS[name]
    assert lab.host(name).outcome is outcome
    result = ssh_run(lab, name, CURL)
    lines = result.stdout.splitlines()
    assert lines[0] == name, result.stderr  # the session runs in the host's own UTS namespace
    assert (result.returncode, lines[-1]) == (exit_status, http_code), result.stderr


def test_viaproxy_reaches_the_cdn_only_through_its_proxy(lab: LabInfo, ssh_run: SshRun) -> None:
    host = lab.host("viaproxy")
    shown = ssh_run(lab, "viaproxy", "echo $https_proxy")
    assert shown.stdout.strip() == host.proxy == lab.services.proxy
    direct = ssh_run(lab, "viaproxy", f"curl -sS --noproxy '*' -o /dev/null {PROBE_URL}")
    assert direct.returncode == 7
    log = lab.services_log.read_text()
    assert f"proxy src={host.address} " in log
    assert "method=CONNECT path=cask.qg3.apps.qualys.com:443 status=200" in log


def test_intercept_presents_the_untrusted_contoso_issuer(lab: LabInfo, ssh_run: SshRun) -> None:
    assert lab.host("intercept").detail == "Contoso SSL Inspection CA"
    result = ssh_run(lab, "intercept", f"curl -sS -k -v -o /dev/null {PROBE_URL} 2>&1")
    assert result.returncode == 0
    assert re.search(r"issuer: CN=Contoso SSL Inspection CA; O=Contoso Ltd", result.stdout)


def test_http503_is_answered_503_by_the_cdn_and_logged(lab: LabInfo, ssh_run: SshRun) -> None:
    result = ssh_run(lab, "http503", f"curl -sS -f -o /dev/null {PROBE_URL}")
    assert result.returncode == 22 and "503" in result.stderr
    address = lab.host("http503").address
    assert re.search(
        rf"cdn-https src={re.escape(address)} host=cask\.qg3\.apps\.qualys\.com "
        r"method=GET path=/status status=503",
        lab.services_log.read_text(),
    )


def test_nocurl_session_has_no_http_client_but_has_sh(lab: LabInfo, ssh_run: SshRun) -> None:
    assert lab.host("nocurl").outcome is HostOutcome.PROBE_UNAVAILABLE
    result = ssh_run(lab, "nocurl", CURL)
    assert result.returncode == 127 and "curl: command not found" in result.stderr
    script = "for c in curl wget python3 sed; do command -v $c || echo no-$c; done\n"
    probe = ssh_run(lab, "nocurl", "/bin/sh -s", stdin=script)
    assert probe.returncode == 0
    assert probe.stdout.splitlines()[:3] == ["no-curl", "no-wget", "no-python3"]
    assert probe.stdout.splitlines()[3].endswith("/sed")


def test_sshdown_refuses_ssh_in_an_existing_namespace(lab: LabInfo, ssh_run: SshRun) -> None:
    host = lab.host("sshdown")
    assert (NETNS_DIR / host.namespace).exists()
    result = ssh_run(lab, "sshdown", "true")
    assert result.returncode == 255 and "Connection refused" in result.stderr


def test_noauth_rejects_the_lab_key(lab: LabInfo, ssh_run: SshRun) -> None:
    result = ssh_run(lab, "noauth", "true")
    assert result.returncode == 255 and "Permission denied (publickey)" in result.stderr


def test_rekeyed_presents_a_key_known_hosts_does_not_have(lab: LabInfo, ssh_run: SshRun) -> None:
    result = ssh_run(lab, "rekeyed", "true")
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_jump_forwards_to_other_lab_hosts(lab: LabInfo, ssh_run: SshRun) -> None:
    via_jump = " ".join(ssh_run.command(lab, "jump", "-W", "%h:%p"))
    result = ssh_run(lab, "direct", "hostname", "-o", f"ProxyCommand={via_jump}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "direct"
    via_plain = " ".join(ssh_run.command(lab, "reject", "-W", "%h:%p"))
    refused = ssh_run(lab, "direct", "hostname", "-o", f"ProxyCommand={via_plain}")
    assert refused.returncode == 255  # plain hosts do not forward


def test_every_host_with_sshd_has_its_own_hostname(lab: LabInfo) -> None:
    state = json.loads((lab.directory / "state.json").read_text())
    pids = {p["role"]: p["pid"] for p in state["processes"]}
    for host in lab.hosts:
        if host.service != "sshd":
            continue
        uts = subprocess.run(
            ["nsenter", "--uts", "-t", str(pids[f"sshd:{host.name}"]), "hostname"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert uts.stdout.strip() == host.name
