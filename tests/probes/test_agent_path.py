"""Probing the agent's own path: through its proxies in order, trusting its CA bundle, with
failures of the proxy itself told apart from failures beyond it, each with a remediation
aimed at the right device. Unit rules first, then the real probe on this machine with an
agent installed for it alone (tests/support/agentbox.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from auditor.agent import agent_verdict
from auditor.classify import Evidence, classify, failed_at_proxy
from auditor.models import (
    AgentVerdict,
    Connection,
    Host,
    Observation,
    Platform,
    ProbeJob,
    ProbePath,
    Target,
)
from auditor.outcomes import Outcome, target_hint
from auditor.probes import ProbeResult, ProbeSettings
from auditor.probes.posix import build_posix_job, parse_posix
from auditor.transports.local import LocalTransport
from tests.support import agentbox
from tests.support.loopback import (
    Loopback,
    auth_proxy,
    loopback_servers,
    make_ca,
    make_leaf,
    tls_server,
)

HOST = Host(name="here", address="localhost", connection=Connection.LOCAL, platform=Platform.LINUX)
CDN = Target(url="https://cask.qg3.apps.qualys.com/status", name="cdn", category="CDN")
PROXY = "http://proxy.corp:3128"
needs_box = pytest.mark.skipif(not agentbox.available(), reason="needs root, unshare, dpkg")


def curl(exit_code: int, **kw: object) -> Evidence:
    return Evidence(tool="curl", exit_code=exit_code, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("evidence", "outcome", "at_proxy", "hint_has"),
    [
        # Through a proxy, curl connects only to the proxy: 7 is the proxy not listening.
        (
            curl(7, proxy=PROXY, message="Failed to connect"),
            Outcome.REFUSED,
            True,
            "start it",
        ),
        (curl(5, proxy=PROXY), Outcome.DNS_FAILURE, True, "proxy's name"),
        # The connect to the proxy never completed: the path to the proxy drops packets.
        (curl(28, proxy=PROXY, connect_time=0.0), Outcome.TIMEOUT, True, "to the proxy"),
        # The proxy accepted, then the URL never answered behind it: the proxy's egress.
        (
            curl(28, proxy=PROXY, connect_time=0.002),
            Outcome.TIMEOUT,
            False,
            "proxy's egress",
        ),
        # TLS to an https:// proxy failed before any CONNECT answer.
        (
            curl(60, proxy="https://proxy.corp:3129", connect_time=0.001),
            Outcome.TLS_FAILURE,
            True,
            "TLS to the proxy",
        ),
        # The tunnel was granted: the certificate is the origin's (or an inspector's).
        (
            curl(60, proxy="https://proxy.corp:3129", connect_status=200),
            Outcome.TLS_FAILURE,
            False,
            "exempt",
        ),
        (
            curl(56, proxy=PROXY, connect_status=407, message="CONNECT tunnel failed"),
            Outcome.PROXY_DENIED,
            True,
            "proxy credentials",
        ),
        # Without a proxy nothing is the proxy's.
        (curl(7, message="Connection refused"), Outcome.REFUSED, False, "egress firewall"),
        (
            Evidence(
                tool="Invoke-WebRequest",
                exception_type="System.Net.WebException",
                reason="ConnectFailure",
                socket_error="ConnectionRefused",
                proxy=PROXY,
            ),
            Outcome.REFUSED,
            True,
            "start it",
        ),
        (
            Evidence(
                tool="Invoke-WebRequest",
                exception_type="System.Net.WebException",
                reason="ProxyNameResolutionFailure",
                proxy=PROXY,
            ),
            Outcome.DNS_FAILURE,
            True,
            "proxy's name",
        ),
    ],
)
def test_proxy_failures_are_told_apart_from_origin_failures(
    evidence: Evidence, outcome: Outcome, at_proxy: bool, hint_has: str
) -> None:
    got, _ = classify(evidence, CDN)
    assert got is outcome
    assert failed_at_proxy(evidence, got) is at_proxy
    hint = target_hint(got, CDN.hostname, CDN.port, evidence.proxy, at_proxy)
    assert hint_has in hint
    if evidence.proxy and got is not Outcome.PROXY_DENIED:
        assert evidence.proxy in hint


def test_probe_sh_fails_over_on_exactly_the_classifiers_proxy_failures() -> None:
    """The probe's rule for trying the agent's next proxy is the classifier's: curl exit 5
    and 7, and 28 with no connection made; nothing else (TLS aside, which has no
    fail-over: a proxy's certificate problem is the same on every try)."""
    source = resources.files("auditor.probes").joinpath("probe.sh").read_text(encoding="utf-8")
    body = source[source.index("auditor_curl_at_proxy() {") :]
    body = body[: body.index("\n}\n")]
    assert re.findall(r"^\s+([0-9 |]+)\)", body, re.MULTILINE) == ["5 | 7", "28"]
    tls = {35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91}
    for code in set(range(100)) - tls:
        for connect_time in (0.0, 0.5):
            ev = curl(code, proxy=PROXY, connect_time=connect_time)
            expected = code in (5, 7) or (code == 28 and connect_time == 0.0)
            assert failed_at_proxy(ev, classify(ev, CDN)[0]) is expected, (code, connect_time)


# --- the real probe -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


@pytest.fixture
def clean_env(servers: Loopback, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _run(command: str, targets: list[Target], settings: ProbeSettings) -> ProbeResult:
    job = build_posix_job(targets, settings)
    raw = asyncio.run(
        LocalTransport().run_job(HOST, ProbeJob(script=job.script, command=command), 120)
    )
    return parse_posix(raw, targets, settings.nonce)


FAST = ProbeSettings(connect_timeout=3, max_time=10)


def _verdict(result: ProbeResult, targets: list[Target]) -> AgentVerdict:
    return agent_verdict(result.agent, Platform.LINUX, targets, result.observations)[0]


@needs_box
@pytest.mark.usefixtures("clean_env")
def test_a_proxy_that_does_not_listen_is_the_proxys_failure_and_direct_is_probed_apart(
    servers: Loopback, tmp_path: Path
) -> None:
    cdn = Target(url=f"https://localhost:{servers.https_port}/status", name="c", category="CDN")
    dead = f"http://127.0.0.1:{servers.closed_port}"
    command = agentbox.agent_box(
        tmp_path,
        version="6.4.2",
        etc_files={"default/qualys-cloud-agent": f"https_proxy={dead}\n"},
    )
    result = _run(command, [cdn], FAST)
    (obs,) = result.observations
    assert result.agent is not None and result.agent.path is ProbePath.AGENT_PROXY
    assert (obs.outcome, obs.at_proxy, obs.proxy) == (Outcome.REFUSED, True, dead)
    assert "start it" in target_hint(obs.outcome, "localhost", 443, obs.proxy, obs.at_proxy)
    assert _verdict(result, [cdn]) is AgentVerdict.CDN_BLOCKED
    # --direct: the same host, probed as the login session would, reaches the CDN.
    direct = _run(command, [cdn], ProbeSettings(connect_timeout=3, max_time=10, direct=True))
    assert direct.agent is not None and direct.agent.path is ProbePath.SESSION
    assert direct.observations[0].outcome is Outcome.REACHABLE
    assert direct.observations[0].proxy == ""


@needs_box
@pytest.mark.usefixtures("clean_env")
def test_two_proxies_with_the_first_down_go_through_the_second_as_the_agent_does(
    servers: Loopback, tmp_path: Path
) -> None:
    cdn = Target(url=f"https://localhost:{servers.https_port}/status", name="c", category="CDN")
    with auth_proxy("u", "Second-Pw-42", servers.https_port) as second:
        second.release.set()
        conf = (
            f'qualys_https_proxy="http://127.0.0.1:{servers.closed_port};'
            f'http://u:Second-Pw-42@127.0.0.1:{second.port}"\n'
        )
        command = agentbox.agent_box(
            tmp_path, version="7.1.0", etc_files={"default/qualys-cloud-agent": conf}
        )
        result = _run(command, [cdn], FAST)
        assert second.authorized
    (obs,) = result.observations
    assert obs.outcome is Outcome.REACHABLE, obs.detail
    assert f"127.0.0.1:{second.port}" in obs.proxy and "Second-Pw" not in obs.proxy
    assert "proxy 2 of 2" in obs.detail
    assert _verdict(result, [cdn]) is AgentVerdict.CDN_READY


@needs_box
@pytest.mark.usefixtures("clean_env")
def test_the_agents_ca_bundle_is_trusted_on_its_path_and_not_on_direct(
    tmp_path: Path,
) -> None:
    """An inspecting CA that only the agent's bundle holds: the agent's path reaches the
    URL, the session's (system trust) sees a TLS failure naming that CA."""
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_path, ca_key, ca_cert = make_ca(pki, "Agent Inspection CA", "Agent Corp")
    crt, key = make_leaf(pki, ca_key, ca_cert, ["localhost", "127.0.0.1"])
    with tls_server(crt, key) as port:
        cdn = Target(url=f"https://localhost:{port}/status", name="c", category="CDN")
        command = agentbox.agent_box(
            tmp_path / "box",
            version="6.4.0",
            etc_files={"qualys/cloud-agent/cert/ca-bundle.crt": ca_path.read_text()},
        )
        agent_path = _run(command, [cdn], FAST)
        direct = _run(command, [cdn], ProbeSettings(connect_timeout=3, max_time=10, direct=True))
    assert agent_path.agent is not None and agent_path.agent.ca_bundle
    assert agent_path.agent.path is ProbePath.AGENT_DIRECT
    assert agent_path.observations[0].outcome is Outcome.REACHABLE, agent_path.observations[0]
    assert direct.observations[0].outcome is Outcome.TLS_FAILURE
    assert "Agent Inspection CA" in direct.observations[0].tls_issuer


def test_failover_is_noted_only_for_a_later_proxy() -> None:
    from auditor.models import AgentFacts
    from auditor.probes.agentfacts import failover_note

    agent = AgentFacts(
        installed=True,
        version="6.4",
        proxies=("http://a:***@p1:1", "http://p2:2"),
        path=ProbePath.AGENT_PROXY,
    )
    assert failover_note(agent, "http://***@p1:1") == ""
    assert "proxy 2 of 2" in failover_note(agent, "http://p2:2")
    assert failover_note(agent, "http://elsewhere:3") == ""
    obs = Observation(url=CDN.url, outcome=Outcome.REACHABLE)
    assert obs.at_proxy is False
