"""Agent-aware audits against the lab: real sshd hosts whose own dpkg database and
/etc/default hold the Qualys Cloud Agent (`auditor_lab.agent`), each probed the way its
agent goes, with the verdict and the fleet answer in every report, and a planted proxy
password in no output and no process's arguments."""

from __future__ import annotations

import csv
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import LabInfo
from auditor_lab.spec import (
    AGENT_PROXY_SECRET,
    DEAD_PROXY_URL,
    INSPECT_PROXY_URL,
    INTERCEPT_CA_NAME,
    PROBE_URL,
    PROXY_URL,
    agent_hosts,
    design_hosts,
    windows_agent_hosts,
)

from tests.support.cli import audit_argv, environ
from tests.support.proc import command_lines

AGENTS = {spec.name: spec for spec in agent_hosts()}
SECRET = AGENT_PROXY_SECRET.encode()


def _lab_run(lab: LabInfo, out: Path, *args: str) -> tuple[int, str, list[bytes]]:
    """The audit over the lab's Linux sites (SSH), with every process's argv sampled while
    it runs; returns the exit status, its terminal output and the argv seen."""
    assert lab.ssh_password is not None
    argv = audit_argv(
        lab.inventory,
        lab.known_hosts,
        PROBE_URL,
        out,
        "--limit",
        "site_a:site_b:site_agent",
        "--timeout",
        "60",
        "--probe-timeout",
        "4",
        "--probe-connect-timeout",
        "3",
        *args,
    )
    env = environ(AUDITOR_SSH_PASSWORD=lab.ssh_password.read_text().strip())
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[bytes] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.extend(command_lines())
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        done.set()
        sampler.join(30)
    text = (stdout + stderr).decode(errors="replace")
    assert "Traceback" not in text, text
    return proc.returncode, text, seen


@pytest.fixture(scope="module")
def agent_run(
    lab: LabInfo, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, str, list[bytes], Path]:
    out = tmp_path_factory.mktemp("agent") / "out"
    status, text, seen = _lab_run(lab, out)
    return status, text, seen, out


def _hosts(out: Path) -> dict[str, Any]:
    report = json.loads((out / "report.json").read_text())
    return {h["host"]["name"]: h for h in report["hosts"]}


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_each_agent_host_is_probed_along_its_agents_path(
    agent_run: tuple[int, str, list[bytes], Path], name: str
) -> None:
    spec = AGENTS[name]
    host = _hosts(agent_run[3])[name]
    (obs,) = host["observations"]
    assert obs["outcome"] == spec.outcome.value, obs
    assert spec.detail in obs["detail"], obs
    assert obs["proxy"] == spec.proxy, obs
    agent = host["agent"]
    assert agent["verdict"] == spec.agent_verdict, agent
    assert agent["installed"] is True and agent["version"] == spec.agent_version
    assert agent["path"] == ("agent_proxy" if spec.agent_conf else "agent_direct")
    assert agent["ca_bundle"] is spec.agent_ca


def test_agent_facts_say_where_they_come_from(
    agent_run: tuple[int, str, list[bytes], Path],
) -> None:
    hosts = _hosts(agent_run[3])
    failover = hosts["agentfailover"]["agent"]
    assert failover["proxies"] == [DEAD_PROXY_URL, PROXY_URL]
    assert failover["proxy"] == DEAD_PROXY_URL
    assert failover["proxy_key"] == "qualys_https_proxy"
    assert failover["config"] == "/etc/default/qualys-cloud-agent"
    assert failover["source"] == "dpkg"
    dead = hosts["agentdead"]["observations"][0]
    assert dead["at_proxy"] is True
    creds = hosts["agentcreds"]["agent"]
    assert creds["proxy"] == "http://labagent:***@10.213.0.1:3128"
    enc = hosts["agentenc"]["agent"]
    assert enc["credentials_encrypted"] is True
    assert "encrypted" in enc["reason"]
    assert enc["proxy"] == "http://***@10.213.0.1:3129"
    # Design hosts have no agent: the same probe says so.
    for spec in design_hosts():
        if spec.site in ("site_a", "site_b"):
            assert hosts[spec.name]["agent"]["verdict"] == "no_agent", spec.name


def test_the_fleet_answer_leads_the_summary_and_the_reports(
    agent_run: tuple[int, str, list[bytes], Path],
) -> None:
    status, text, _, out = agent_run
    assert status == 1
    audited = [s for s in design_hosts() if s.site in ("site_a", "site_b")]
    total = len(audited) + len(AGENTS)
    line = next(x for x in text.splitlines() if x.startswith("Qualys Cloud Agent:"))
    assert line == (
        f"Qualys Cloud Agent: Of {total} hosts: 4 agents will use the CDN, 1 agent is blocked "
        f"from it (they fall back to the platform), 1 agent is too old to use it, "
        f"{len(audited)} hosts have no agent, 1 host could not be told"
    )
    assert text.index("Qualys Cloud Agent:") < text.index("Readiness")
    assert "  site_agent: Of 7 hosts: 4 agents will use the CDN" in text
    rows = {r["host"]: r for r in csv.DictReader((out / "report.csv").open(newline=""))}
    assert rows["agentold"]["agent_verdict"] == "too_old"
    assert rows["agentold"]["agent_uses_cdn"] == "false"
    assert rows["agentproxy"]["agent_proxy"] == PROXY_URL
    junit = (out / "junit.xml").read_text()
    assert 'type="cdn_blocked"' in junit and "agentdead" in junit


def test_the_planted_proxy_password_is_in_no_output_and_no_argv(
    agent_run: tuple[int, str, list[bytes], Path],
) -> None:
    _, text, seen, out = agent_run
    assert AGENT_PROXY_SECRET not in text
    for path in out.iterdir():
        assert SECRET not in path.read_bytes(), path
    assert seen, "no process was sampled"
    assert [c for c in seen if SECRET in c] == []


def test_direct_probes_without_the_agents_proxy(
    lab: LabInfo, tmp_path: Path, agent_run: tuple[int, str, list[bytes], Path]
) -> None:
    """`--direct`: the dead-proxy host reaches the CDN directly, the proxy-only host is
    refused, and the report says which path was probed."""
    out = tmp_path / "direct"
    _lab_run(lab, out, "--direct")
    hosts = _hosts(out)
    assert hosts["agentdead"]["observations"][0]["outcome"] == "reachable"
    assert hosts["agentdead"]["agent"]["path"] == "session"
    assert hosts["agentproxy"]["observations"][0]["outcome"] == "refused"
    assert hosts["agentproxy"]["observations"][0]["at_proxy"] is False
    # The TLS-inspecting proxy, without the agent's CA bundle: the inspection CA is not
    # trusted, and the issuer seen names it.
    inspected = hosts["agentinspect"]["observations"][0]
    assert inspected["outcome"] == "tls_failure", inspected
    assert INTERCEPT_CA_NAME in inspected["tls_issuer"], inspected
    assert inspected["proxy"] == INSPECT_PROXY_URL
    assert hosts["agentinspect"]["agent"]["path"] == "session"
    assert hosts["agentinspect"]["agent"]["verdict"] == "cdn_blocked"


def test_the_agents_ca_bundle_lets_its_tls_inspecting_proxy_through(
    lab: LabInfo, agent_run: tuple[int, str, list[bytes], Path]
) -> None:
    """Along the agent's path, the same inspecting proxy is trusted through the agent's own
    CA bundle, which only that host sees (mounted in its namespace like its other files)."""
    host = _hosts(agent_run[3])["agentinspect"]
    (obs,) = host["observations"]
    assert (obs["outcome"], obs["proxy"], obs["tls_issuer"]) == (
        "reachable",
        INSPECT_PROXY_URL,
        "",
    ), obs
    assert host["agent"]["ca_bundle"] is True and host["agent"]["verdict"] == "cdn_ready"
    bundle = "/etc/qualys/cloud-agent/cert/ca-bundle.crt"
    seen = {}
    for name in ("agentinspect", "agentproxy"):
        shown = subprocess.run(
            ["ip", "netns", "exec", lab.host(name).namespace, "cat", bundle],
            capture_output=True,
            timeout=60,
            check=False,
        )
        seen[name] = shown.stdout
    assert seen["agentinspect"] == lab.intercept_ca_cert.read_bytes()
    assert seen["agentproxy"] == b""
    # The machine itself trusts nothing new: at most the empty mount point is there.
    assert not Path(bundle).exists()


def _gate(lab: LabInfo, out: Path, hosts: str) -> subprocess.CompletedProcess[bytes]:
    argv = audit_argv(
        lab.inventory, lab.known_hosts, PROBE_URL, out, "--limit", hosts, "--require-agent"
    )
    return subprocess.run(argv, env=environ(), capture_output=True, timeout=300)


def test_require_agent_gates_on_missing_and_old_agents(lab: LabInfo, tmp_path: Path) -> None:
    """Every host reaches the CDN; the gate still fails while one agent is too old."""
    gated = _gate(lab, tmp_path / "a", "agentproxy:agentfailover:agentold")
    assert gated.returncode == 1, gated.stderr
    hosts = _hosts(tmp_path / "a")
    assert {n: h["observations"][0]["outcome"] for n, h in hosts.items()} == dict.fromkeys(
        ("agentproxy", "agentfailover", "agentold"), "reachable"
    )
    passed = _gate(lab, tmp_path / "b", "agentproxy:agentfailover")
    assert passed.returncode == 0, passed.stderr
    assert _gate(lab, tmp_path / "c", "direct").returncode == 1  # no agent


# --- Windows (the lab's WS-Management endpoint, PowerShell 5.1 and 7) ----------------------

WIN_AGENTS = {spec.name: spec for spec in windows_agent_hosts()}


@pytest.fixture(scope="module")
def windows_run(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert lab.winrm_password is not None
    out = tmp_path_factory.mktemp("winagent") / "out"
    argv = audit_argv(
        lab.inventory,
        lab.known_hosts,
        PROBE_URL,
        out,
        "--limit",
        "win_agent",
        "--timeout",
        "60",
        "--probe-timeout",
        "4",
    )
    env = environ(AUDITOR_WINRM_PASSWORD=lab.winrm_password.read_text().strip())
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Qualys Cloud Agent: Of 3 hosts: 2 agents will use the CDN" in proc.stderr
    return out


@pytest.mark.parametrize("name", sorted(WIN_AGENTS))
def test_each_windows_agent_host_is_judged_from_the_registry_and_service(
    windows_run: Path, name: str
) -> None:
    spec = WIN_AGENTS[name]
    host = _hosts(windows_run)[name]
    (obs,) = host["observations"]
    assert obs["outcome"] == spec.outcome.value, obs
    agent = host["agent"]
    assert agent["verdict"] == spec.agent_verdict, agent
    assert (agent["installed"], agent["version"], agent["source"]) == (
        True,
        spec.agent_version,
        "uninstall",
    )
    if spec.agent_conf:
        assert agent["proxies"] == [spec.agent_conf]
        assert agent["path"] == "agent_proxy"
        assert obs["proxy"] == f"http://{spec.agent_conf}/"
    elif spec.agent_winhttp:
        # Only the list's https= entry applies to the CDN URL; the dead http= one is not tried.
        assert (agent["config"], agent["proxies"]) == (
            "WinHTTP",
            [PROXY_URL.removeprefix("http://")],
        )
        assert agent["path"] == "agent_proxy"
        assert obs["proxy"] == f"{PROXY_URL}/"
    else:
        assert agent["path"] == "session" and obs["proxy"] == ""


def test_the_demo_audit_leads_with_the_fleet_answer(lab: LabInfo, tmp_path: Path) -> None:
    """`make demo`'s own audit (the built-in US3 catalog over the lab): the first lines of
    its summary give the agent answer, per site as well. The Windows design sites are left
    out: the WinRM tests count every session their hosts ever get."""
    assert lab.ssh_password is not None and lab.winrm_password is not None
    argv = [
        *audit_argv(lab.inventory, lab.known_hosts, PROBE_URL, tmp_path / "demo"),
        "--timeout",
        "20",
        "--limit",
        "all:!win_egress:!win_winrm",
    ]
    argv[argv.index("--url") : argv.index("--url") + 2] = ["--platform", "US3"]
    env = environ(
        AUDITOR_SSH_PASSWORD=lab.ssh_password.read_text().strip(),
        AUDITOR_WINRM_PASSWORD=lab.winrm_password.read_text().strip(),
    )
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (1, 3), proc.stderr
    lines = proc.stderr.splitlines()
    shown = [h for h in lab.hosts if h.site not in ("win_egress", "win_winrm")]
    assert lines[2].startswith(f"Qualys Cloud Agent: Of {len(shown)} hosts: "), lines[:4]
    assert any(line.startswith("  site_agent: Of 7 hosts") for line in lines)
    assert any(line.startswith("  win_agent: Of 3 hosts") for line in lines)
