"""The Qualys agent on emulated Windows hosts (PowerShell 5.1 and 7 texts): the `agent` record
probe.ps1 prints, read by the auditor's real parser into masked facts and a verdict, and the
agent's proxy handed to every request when the agent's path is probed.

The request layer is replaced by a stub that records which proxy each request would use
(the end-to-end WinRM run is in tests/lab/test_lab_agent.py's Windows host)."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import ps7, ps51, winagent
from auditor_lab.ps51 import WINDOWS_POWERSHELL_51, Flavour, Machine, Network, Output, run_probe
from auditor_lab.winagent import agent_record, winhttp_blob

from auditor.agent import agent_verdict
from auditor.models import (
    AgentVerdict,
    AuditedHost,
    Connection,
    Host,
    Platform,
    ProbePath,
    RawOutput,
    Target,
)
from auditor.probes.agentfacts import winhttp_proxy
from auditor.probes.powershell import parse_powershell
from auditor.results import result_to_dict

NONCE = "winagent01"
URL = "https://cask.qg3.apps.qualys.com/status"
TARGET = Target(url=URL, name="cdn", category="CDN")
SECRET = "W1n-Agent-Pr0xy-Secret"
HOST = Host(name="win", address="w", connection=Connection.WINRM, platform=Platform.WINDOWS)
FLAVOURS = {"5.1": WINDOWS_POWERSHELL_51, "7": ps7.POWERSHELL_7}


def _run(
    monkeypatch: pytest.MonkeyPatch,
    flavour: Flavour,
    agent: dict[str, Any] | None,
    agent_path: bool = True,
) -> tuple[bytes, list[str | None], Any]:
    """The probe's output on an emulated host with `agent`, the proxy each request went
    through, and the auditor's parse of it."""
    used: list[str | None] = []

    def fake_get(url: str, timeout_s: float, machine: Machine, network: Network) -> int:
        used.append(network.proxy)
        return 200

    monkeypatch.setattr(ps51, "http_get", fake_get)
    monkeypatch.setattr(ps7, "http_get", fake_get)
    doc = {
        "nonce": NONCE,
        "timeout": 3,
        "connect_ms": 500,
        "parallel": 1,
        "deadline": 10,
        "agent_path": agent_path,
        "targets": [{"url": URL, "expect": [200, 200]}],
    }
    out = Output()
    machine = Machine(agent=agent, clixml_progress=False)
    run_probe(
        doc,
        machine,
        Network(proxy="http://session-proxy:8080"),
        out,
        threading.Event(),
        flavour=flavour,
    )
    stdout, _, _ = out.take(5)
    result = parse_powershell(RawOutput(stdout, b"", 0), [TARGET], NONCE)
    return stdout, used, result


@pytest.mark.parametrize("ps", sorted(FLAVOURS))
def test_the_agents_registry_proxy_is_probed_and_its_credentials_never_shown(
    monkeypatch: pytest.MonkeyPatch, ps: str
) -> None:
    agent = {
        "version": "5.7.1.12",
        "values": [
            ("ProxyUrl", "10.0.0.5:3128;10.0.0.6:3128"),
            ("ProxyUser", "corp\\agent"),
            ("ProxyPassword", SECRET),
            ("PacUrl", "http://wpad.corp/proxy.pac"),
        ],
    }
    stdout, used, result = _run(monkeypatch, FLAVOURS[ps], agent)
    assert used == ["http://10.0.0.5:3128"]
    facts = result.agent
    assert facts is not None
    assert (facts.installed, facts.version, facts.source, facts.running) == (
        True,
        "5.7.1.12",
        "uninstall",
        True,
    )
    assert facts.proxies == ("10.0.0.5:3128", "10.0.0.6:3128")
    assert facts.proxy_key == "ProxyUrl" and facts.path is ProbePath.AGENT_PROXY
    assert facts.credentials_encrypted
    assert any("PAC" in n for n in facts.notes)
    (obs,) = result.observations
    assert obs.proxy == "http://10.0.0.5:3128/"
    verdict, _ = agent_verdict(facts, Platform.WINDOWS, [TARGET], [obs])
    assert verdict is AgentVerdict.CDN_READY
    sent = b"".join(base64.b64decode(line.split()[2]) for line in stdout.splitlines())
    assert SECRET.encode() in sent  # the host sent it; nothing the auditor keeps holds it
    kept = json.dumps(result_to_dict(AuditedHost(HOST, result.observations, agent=facts)))
    assert SECRET not in kept and "Pr0xy" not in kept


@pytest.mark.parametrize("ps", sorted(FLAVOURS))
def test_without_a_qualys_proxy_the_winhttp_proxy_is_the_agents(
    monkeypatch: pytest.MonkeyPatch, ps: str
) -> None:
    agent = {"version": "5.6.0.4", "service": "Stopped", "winhttp": "10.1.1.1:8080"}
    _, used, result = _run(monkeypatch, FLAVOURS[ps], agent)
    assert used == ["http://10.1.1.1:8080"]
    facts = result.agent
    assert facts is not None
    assert (facts.proxies, facts.config, facts.running) == (("10.1.1.1:8080",), "WinHTTP", False)
    verdict, why = agent_verdict(facts, Platform.WINDOWS, [TARGET], result.observations)
    assert verdict is AgentVerdict.TOO_OLD and "5.7+" in why


@pytest.mark.parametrize("ps", sorted(FLAVOURS))
def test_no_agent_and_direct_probe_the_sessions_way(
    monkeypatch: pytest.MonkeyPatch, ps: str
) -> None:
    _, used, result = _run(monkeypatch, FLAVOURS[ps], None)
    assert used == ["http://session-proxy:8080"]
    assert result.agent is not None and result.agent.installed is False
    assert result.agent.path is ProbePath.SESSION
    agent = {"version": "6.0.0.1", "values": [("Proxy", "10.0.0.5:3128")]}
    _, used, direct = _run(monkeypatch, FLAVOURS[ps], agent, agent_path=False)
    assert used == ["http://session-proxy:8080"]
    assert direct.agent is not None and direct.agent.path is ProbePath.SESSION
    assert direct.agent.proxies == ("10.0.0.5:3128",)


def test_the_51_and_7_texts_differ_only_as_their_json_writers_do() -> None:
    record, _ = agent_record({"version": "5.7", "values": [("ProxyUrl", "h:1<&>")]}, True)
    text51 = ps51.ps51_json(record)
    text7 = ps7.ps7_json(record)
    assert "\\u003c\\u0026\\u003e" in text51 and "<&>" in text7
    assert json.loads(text51) == json.loads(text7) == record


def test_a_winhttp_blob_is_read_and_a_broken_one_is_not() -> None:
    assert winhttp_proxy(winhttp_blob("p:1;q:2").hex()) == "p:1;q:2"
    assert winhttp_proxy(winhttp_blob("").hex()) == ""
    assert winhttp_proxy("18000000") == ""
    assert winhttp_proxy("zz") == ""
    broken = bytearray(winhttp_blob("p:1"))
    broken[12] = 200  # a length beyond the blob
    assert winhttp_proxy(bytes(broken).hex()) == ""


WINHTTP_LISTS = [
    # (WinHTTP proxy list, the proxy the requests use, the proxies the auditor reports)
    ("http=10.9.9.9:80;https=10.1.1.1:8443", "http://10.1.1.1:8443", ("10.1.1.1:8443",)),
    (
        "10.1.1.1:8080 HTTPS=10.2.2.2:8443",
        "http://10.2.2.2:8443",
        ("10.2.2.2:8443", "10.1.1.1:8080"),
    ),
    ("ftp=10.9.9.9:21;http=10.9.9.9:80", None, ()),
]


@pytest.mark.parametrize("ps", sorted(FLAVOURS))
@pytest.mark.parametrize(("winhttp", "used_proxy", "reported"), WINHTTP_LISTS)
def test_a_per_scheme_winhttp_list_gives_the_https_entry(
    monkeypatch: pytest.MonkeyPatch,
    ps: str,
    winhttp: str,
    used_proxy: str | None,
    reported: tuple[str, ...],
) -> None:
    """A WinHTTP list names a proxy per scheme (`http=…;https=…`): an https:// URL goes
    through the https= entry (else one without a scheme), never through `http=` taken as a
    host name; a list with none for https leaves the agent's path without a proxy."""
    agent = {"version": "5.7.2.31", "winhttp": winhttp}
    _, used, result = _run(monkeypatch, FLAVOURS[ps], agent)
    facts = result.agent
    assert facts is not None and facts.proxies == reported
    if used_proxy is None:
        assert used == ["http://session-proxy:8080"] and facts.path is ProbePath.SESSION
        assert "no proxy for https:// URLs" in " ".join(facts.notes)
    else:
        assert used == [used_proxy] and facts.path is ProbePath.AGENT_PROXY
        assert (facts.config, facts.proxy_key) == ("WinHTTP", "WinHttpSettings")


def test_the_emulator_picks_the_winhttp_entry_with_probe_ps1s_own_patterns() -> None:
    """The emulator mirrors probe.ps1 (no PowerShell runs here): the patterns it mirrors are
    the ones in the script, so a change to one side alone fails here."""
    from importlib.resources import files

    script = files("auditor.probes").joinpath("probe.ps1").read_text(encoding="utf-8")
    mirror = Path(winagent.__file__).read_text(encoding="utf-8")
    for pattern in ("[;\\s]+", "^https=.", "^\\w+="):
        assert f"'{pattern}'" in script, pattern
        assert f'"{pattern}"' in mirror or f'"(?i){pattern}"' in mirror, pattern
