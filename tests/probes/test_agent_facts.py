"""The Qualys agent's facts: the configuration parser on hostile files, the records the
POSIX probe sends, and the real probe on this machine with an agent installed for it alone
(its own dpkg status file and /etc overlay, in a private mount namespace)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from auditor_lab.winagent import winhttp_blob

from auditor.agent import agent_verdict, uses_cdn, version_key
from auditor.models import (
    AgentFacts,
    AgentVerdict,
    AuditedHost,
    Connection,
    Host,
    Observation,
    Platform,
    ProbeJob,
    ProbePath,
    RawOutput,
    Target,
)
from auditor.outcomes import Outcome
from auditor.probes import ProbeResult, ProbeSettings
from auditor.probes.agentfacts import (
    MAX_CONFIG_BYTES,
    mask_proxy,
    parse_proxy_config,
    windows_agent_secrets,
    winhttp_https_proxies,
)
from auditor.probes.posix import build_posix_job, parse_posix
from auditor.results import result_from_dict, result_to_dict
from auditor.transports.local import LocalTransport
from tests.support import agentbox
from tests.support.loopback import Loopback, auth_proxy, loopback_servers

HOST = Host(name="here", address="localhost", connection=Connection.LOCAL, platform=Platform.LINUX)
CONF = "/etc/default/qualys-cloud-agent"
needs_box = pytest.mark.skipif(not agentbox.available(), reason="needs root, unshare, dpkg")


# --- the configuration file, parsed as hostile data --------------------------------------


def test_the_documented_list_form_gives_every_proxy_in_order_masked() -> None:
    text = (
        '# proxies\nqualys_https_proxy="https://u1:p%3Bw1@proxy1:3128;'
        'https://proxy2:3128; https://u3:pw3@proxy3:8080"\n'
    )
    parsed = parse_proxy_config(text.encode(), CONF)
    assert parsed.key == "qualys_https_proxy"
    assert parsed.raw[0] == "https://u1:p%3Bw1@proxy1:3128"
    assert parsed.shown == (
        "https://u1:***@proxy1:3128",
        "https://proxy2:3128",
        "https://u3:***@proxy3:8080",
    )
    assert parsed.notes == ()


def test_qualys_https_proxy_wins_over_https_proxy_and_the_last_assignment_counts() -> None:
    text = "https_proxy=http://a:1\nqualys_https_proxy=http://b:2\nqualys_https_proxy=http://c:3\n"
    assert parse_proxy_config(text.encode(), CONF).raw == ("http://c:3",)
    assert parse_proxy_config(b"export https_proxy='http://d:4'\n", CONF).raw == ("http://d:4",)


def test_more_than_five_proxies_are_cut_to_the_documented_five() -> None:
    text = "https_proxy=" + ";".join(f"http://p{i}:3128" for i in range(8))
    parsed = parse_proxy_config(text.encode(), CONF)
    assert len(parsed.raw) == 5 and parsed.raw[-1] == "http://p4:3128"
    assert any("at most 5" in n for n in parsed.notes)


def test_shell_syntax_is_literal_text_never_evaluated() -> None:
    text = 'https_proxy="$(touch /tmp/pwned)http://`id`:${HOME}@p:1"\n'
    parsed = parse_proxy_config(text.encode(), CONF)
    assert parsed.raw == ("$(touch /tmp/pwned)http://`id`:${HOME}@p:1",)
    assert any("never evaluated" in n for n in parsed.notes)
    assert "${HOME}" not in " ".join(parsed.shown)


def test_an_unterminated_quote_takes_the_rest_of_the_line_and_says_so() -> None:
    parsed = parse_proxy_config(b'https_proxy="http://u:pw@p:1\nother=1\n', CONF)
    assert parsed.raw == ("http://u:pw@p:1",)
    assert parsed.shown == ("http://u:***@p:1",)
    assert any("unterminated quote" in n and "line 1" in n for n in parsed.notes)


def test_typographic_quotes_from_the_vendor_page_are_read_and_noted() -> None:
    text = "qualys_https_proxy=\u201dhttps://p1:3128;https://p2:3128\u201d\n"
    parsed = parse_proxy_config(text.encode(), CONF)
    assert parsed.raw == ("https://p1:3128", "https://p2:3128")
    assert any("typographic" in n for n in parsed.notes)


def test_a_huge_file_is_read_only_to_its_bound() -> None:
    data = b"#" * (MAX_CONFIG_BYTES + 10) + b"\nhttps_proxy=http://late:1\n"
    parsed = parse_proxy_config(data, CONF)
    assert parsed.raw == ()
    assert any("only its start" in n for n in parsed.notes)


def test_a_binary_file_is_noted_and_yields_only_what_is_text() -> None:
    data = b"\x7fELF\x00\x01\xff\xfe" * 100 + b"\nhttps_proxy=http://p:1\x00\n"
    parsed = parse_proxy_config(data, CONF)
    assert parsed.raw == ("http://p:1",)
    assert any("binary" in n for n in parsed.notes)


def test_a_blank_before_the_equals_sign_is_not_an_assignment() -> None:
    parsed = parse_proxy_config(b"https_proxy = http://p:1\n", CONF)
    assert parsed.raw == ()
    assert any("blank before" in n for n in parsed.notes)


def test_control_characters_and_bad_addresses_are_shown_escaped_in_notes() -> None:
    parsed = parse_proxy_config(b"https_proxy=http://u:pw@p\x1b[2J:1\n", CONF)
    assert "\x1b" not in " ".join(parsed.shown + parsed.notes)
    assert any("not a proxy address" in n for n in parsed.notes)
    assert "pw" not in " ".join(parsed.notes)


def test_encrypted_credentials_are_detected_and_masked_whole() -> None:
    blob = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5Cg=="
    parsed = parse_proxy_config(f"https_proxy=http://{blob}:{blob}@p:3128\n".encode(), CONF)
    assert parsed.encrypted
    assert parsed.shown == ("http://***@p:3128",)
    assert not parse_proxy_config(b"https_proxy=http://u:short@p:1\n", CONF).encrypted


@pytest.mark.parametrize(
    ("proxy", "shown"),
    [
        ("http://user:pa:ss@w@h:1", "http://user:***@h:1"),
        ("user:pw@h:1", "user:***@h:1"),
        ("http://tokenonly@h:1", "http://***@h:1"),
        ("http://h:1", "http://h:1"),
    ],
)
def test_every_credential_form_is_masked(proxy: str, shown: str) -> None:
    assert mask_proxy(proxy) == shown


# --- the probe's records, parsed ----------------------------------------------------------


def _raw(nonce: str, *records: str) -> RawOutput:
    lines = [f"AUD1 {nonce}\t{r}" for r in records]
    return RawOutput(stdout=("\n".join(lines) + "\n").encode(), stderr=b"", exit_status=0)


def _agent(
    mgr: str, status: str, answer: str, svc: str = "0", path: str = "session", confs: str = CONF
) -> str:
    """The probe's one agent record (see probe.sh auditor_agent)."""
    return "\t".join(["A", mgr, status, answer, "", "", "", "proc", svc, "1", path, confs])


TARGET = Target(url="https://cask.example/status", name="cdn", category="CDN")
T_OK = "T\t0\tcurl\t0\t200\t000\t\t\t\t\t\t\t\t"


@pytest.mark.parametrize(
    ("proxy_list", "https"),
    [
        ("", ()),
        (";; \t ;", ()),
        ("p:1", ("p:1",)),
        ("p:1;q:2", ("p:1", "q:2")),
        ("http=a:80;https=b:443", ("b:443",)),
        ("HTTPS=b:443 p:1", ("b:443", "p:1")),
        ("https=https://b:443", ("https://b:443",)),
        ("https=;http=a:80;socks=s:1080", ()),
        ("=x;https==y", ("=y", "=x")),
        (";".join(f"p{i}:1" for i in range(8)), tuple(f"p{i}:1" for i in range(5))),
    ],
)
def test_a_winhttp_list_gives_the_entries_for_https_urls(
    proxy_list: str, https: tuple[str, ...]
) -> None:
    assert winhttp_https_proxies(proxy_list) == https


def test_every_winhttp_entry_is_a_secret_to_scrub_even_one_for_another_scheme() -> None:
    blob = winhttp_blob("http=u:Http-Secret@a:80;https=v:Https-Secret@b:443").hex()
    secrets = " ".join(windows_agent_secrets({"winhttp": blob}))
    assert "Http-Secret" in secrets and "Https-Secret" in secrets


def test_records_give_installed_version_and_masked_proxies_with_no_secret_left() -> None:
    nonce = "ab" * 8
    conf = 'qualys_https_proxy="http://bob:Sup3r-S3cret@p1:3128;http://p2:3128"\n'
    hexed = conf.encode().hex()
    raw = _raw(
        nonce,
        _agent("dpkg", "0", "install ok installed|6.4.0.12-1", svc="1", path="agent_proxy"),
        f"C\t{CONF}\t1\t{hexed[:400]}",
        f"C\t{CONF}\t2\t{hexed[400:]}",
        "P\tagent\thttp://bob:Sup3r-S3cret@p1:3128",
        "H\th\tDebian\tcurl\tcurl 8",
        "T\t0\tcurl\t0\t200\t200\t\t\t\t\t\thttp://bob:Sup3r-S3cret@p1:3128\t\tSup3r-S3cret",
        "D\t1",
    )
    result = parse_posix(raw, [TARGET], nonce)
    agent = result.agent
    assert agent is not None
    assert (agent.installed, agent.version, agent.running, agent.source) == (
        True,
        "6.4.0.12-1",
        True,
        "dpkg",
    )
    assert agent.proxies == ("http://bob:***@p1:3128", "http://p2:3128")
    assert agent.proxy == "http://bob:***@p1:3128"
    assert agent.ca_bundle and agent.path is ProbePath.AGENT_PROXY
    everything = json.dumps(
        result_to_dict(AuditedHost(HOST, result.observations, agent=agent, facts=result.facts))
    )
    assert "Sup3r" not in everything and "S3cret" not in everything


def test_an_agent_absent_from_dpkg_is_no_agent_and_no_database_is_unknown() -> None:
    nonce = "cd" * 8
    absent = parse_posix(_raw(nonce, _agent("dpkg", "1", ""), T_OK, "D\t1"), [TARGET], nonce)
    assert absent.agent is not None and absent.agent.installed is False
    none = parse_posix(_raw(nonce, _agent("none", "", ""), T_OK, "D\t1"), [TARGET], nonce)
    assert none.agent is not None and none.agent.installed is None
    assert "neither dpkg-query nor rpm" in none.agent.notes[0]
    rpm = parse_posix(
        _raw(nonce, _agent("rpm", "0", "5.9.0.3-1"), T_OK, "D\t1"), [TARGET], nonce
    ).agent
    assert rpm is not None and (rpm.installed, rpm.version, rpm.source) == (
        True,
        "5.9.0.3-1",
        "rpm",
    )


def test_forged_or_broken_records_are_ignored_not_trusted() -> None:
    nonce = "ef" * 8
    raw = _raw(
        nonce,
        _agent(
            "dpkg",
            "0",
            "install ok installed|6.5",
            path="somewhere-else",
            confs=f"/etc/shadow {CONF}",
        ),
        f"C\t/etc/shadow\t1\t{b'https_proxy=http://x:1'.hex()}",
        f"C\t{CONF}\t1\tnot-hex",
        f"C\t{CONF}\t99999\t41",
        T_OK,
        "D\t1",
    )
    agent = parse_posix(raw, [TARGET], nonce).agent
    assert agent is not None
    assert agent.proxies == () and agent.config == CONF
    assert agent.path is ProbePath.SESSION
    # A record of another run (wrong nonce) is not evidence.
    forged = RawOutput(
        stdout=_raw("0" * 16, _agent("dpkg", "0", "install ok installed|9.9")).stdout
        + _raw(nonce, T_OK, "D\t1").stdout,
        stderr=b"",
        exit_status=0,
    )
    assert parse_posix(forged, [TARGET], nonce).agent is None


def test_agent_facts_round_trip_through_the_results_file() -> None:
    agent = AgentFacts(
        installed=True,
        version="6.4.1",
        running=None,
        proxies=("http://u:***@p:1",),
        path=ProbePath.AGENT_PROXY,
        notes=("n",),
    )
    result = AuditedHost(
        HOST, (Observation(url=TARGET.url, outcome=Outcome.REACHABLE),), agent=agent
    )
    back = result_from_dict(json.loads(json.dumps(result_to_dict(result))), 1)
    assert isinstance(back, AuditedHost) and back.agent == agent
    older = result_to_dict(result)
    del older["agent"]
    assert result_from_dict(older, 1).agent is None  # type: ignore[union-attr]


# --- verdicts -----------------------------------------------------------------------------


def test_versions_and_thresholds() -> None:
    assert version_key("1:6.4.0-12") == (6, 4)
    assert version_key("garbage") is None
    linux = AgentFacts(installed=True, version="6.3.9.1")
    assert uses_cdn(linux, Platform.LINUX) is False
    assert uses_cdn(AgentFacts(installed=True, version="6.4.0"), Platform.LINUX) is True
    assert uses_cdn(AgentFacts(installed=True, version="5.7.0"), Platform.WINDOWS) is True
    assert uses_cdn(AgentFacts(installed=True, version="5.6.9"), Platform.WINDOWS) is False
    assert uses_cdn(AgentFacts(installed=False), Platform.LINUX) is False
    assert uses_cdn(None, Platform.LINUX) is None


@pytest.mark.parametrize(
    ("facts", "outcome", "verdict"),
    [
        (AgentFacts(installed=True, version="6.4.0"), Outcome.REACHABLE, AgentVerdict.CDN_READY),
        (AgentFacts(installed=True, version="7.0"), Outcome.TIMEOUT, AgentVerdict.CDN_BLOCKED),
        (AgentFacts(installed=True, version="6.3"), Outcome.REACHABLE, AgentVerdict.TOO_OLD),
        (AgentFacts(installed=False), Outcome.REACHABLE, AgentVerdict.NO_AGENT),
        (AgentFacts(installed=None), Outcome.REACHABLE, AgentVerdict.UNKNOWN),
        (AgentFacts(installed=True, version="x"), Outcome.REACHABLE, AgentVerdict.UNKNOWN),
        (
            AgentFacts(installed=True, version="6.5", credentials_encrypted=True),
            Outcome.PROXY_DENIED,
            AgentVerdict.UNKNOWN,
        ),
        (None, Outcome.REACHABLE, AgentVerdict.UNKNOWN),
    ],
)
def test_the_verdict_table(
    facts: AgentFacts | None, outcome: Outcome, verdict: AgentVerdict
) -> None:
    observations = [Observation(url=TARGET.url, outcome=outcome)]
    assert agent_verdict(facts, Platform.LINUX, [TARGET], observations)[0] is verdict


def test_without_a_cdn_target_an_eligible_agent_is_unknown() -> None:
    other = Target(url="https://qagpublic.example/", name="p", category="agent platform")
    facts = AgentFacts(installed=True, version="6.4")
    ok = [Observation(url=other.url, outcome=Outcome.REACHABLE)]
    verdict, why = agent_verdict(facts, Platform.LINUX, [other], ok)
    assert verdict is AgentVerdict.UNKNOWN and "no CDN URL" in why


# --- the real probe, with an agent installed for it alone ---------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _run(
    command: str, targets: list[Target], settings: ProbeSettings
) -> tuple[RawOutput, ProbeResult]:
    job = build_posix_job(targets, settings)
    raw = asyncio.run(
        LocalTransport().run_job(HOST, ProbeJob(script=job.script, command=command), 120)
    )
    return raw, parse_posix(raw, targets, settings.nonce)


@needs_box
def test_the_probe_reads_the_agent_and_goes_through_its_first_proxy(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same session: dpkg says 6.4.0, the Debian file lists two proxies (credentials on the
    first), the CA bundle exists; the probe goes through the first proxy, authenticates,
    and the report holds the facts with the password nowhere."""
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    password = "Agent-Box-Pw-77"
    url = f"https://localhost:{servers.https_port}/status"
    target = Target(url=url, name="cdn", category="CDN")
    with auth_proxy("agent", password, servers.https_port) as proxy:
        proxy.release.set()
        conf = (
            f'qualys_https_proxy="http://agent:{password}@127.0.0.1:{proxy.port};'
            f'http://127.0.0.1:{servers.closed_port}"\n'
        )
        command = agentbox.agent_box(
            tmp_path,
            version="6.4.0.77-1",
            etc_files={
                "default/qualys-cloud-agent": conf,
                "qualys/cloud-agent/cert/ca-bundle.crt": servers.ca_bundle.read_text(),
            },
        )
        raw, result = _run(command, [target], ProbeSettings(connect_timeout=5, max_time=20))
        assert proxy.authorized, "the probe went through the agent's first proxy"
    agent = result.agent
    assert agent is not None
    assert (agent.installed, agent.version, agent.source) == (True, "6.4.0.77-1", "dpkg")
    assert agent.proxies == (
        f"http://agent:***@127.0.0.1:{proxy.port}",
        f"http://127.0.0.1:{servers.closed_port}",
    )
    assert agent.ca_bundle and agent.path is ProbePath.AGENT_PROXY
    (obs,) = result.observations
    assert obs.outcome is Outcome.REACHABLE, obs.detail
    assert agent_verdict(agent, Platform.LINUX, [target], [obs])[0] is AgentVerdict.CDN_READY
    assert password.encode() in raw.stdout  # the host did send it: the parser removed it
    shown = json.dumps(result_to_dict(AuditedHost(HOST, (obs,), agent=agent)))
    assert password not in shown and "Box-Pw" not in shown


@needs_box
def test_without_the_agent_the_session_path_is_probed_and_its_file_ignored(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    target = Target(url=f"https://localhost:{servers.https_port}/status", name="c", category="CDN")
    command = agentbox.agent_box(
        tmp_path,
        version=None,
        etc_files={"default/qualys-cloud-agent": "https_proxy=http://127.0.0.1:9\n"},
    )
    _, result = _run(command, [target], ProbeSettings(connect_timeout=5, max_time=20))
    agent = result.agent
    assert agent is not None and agent.installed is False
    assert agent.path is ProbePath.SESSION
    (obs,) = result.observations
    assert obs.outcome is Outcome.REACHABLE and obs.proxy == ""


@needs_box
def test_a_hostile_configuration_file_is_never_run(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shell syntax, a huge line, binary bytes and an unterminated quote in the agent's
    file: nothing in it runs on the host, the probe still answers."""
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    marker = tmp_path / "pwned"
    hostile = (
        b"\x00\xff\xfe binary\n"
        + f'https_proxy="$(touch {marker})`touch {marker}`\n'.encode()
        + b"A" * 200_000
        + b"\n"
    )
    command = agentbox.agent_box(
        tmp_path, version="6.9", etc_files={"default/qualys-cloud-agent": hostile}
    )
    target = Target(url=f"https://localhost:{servers.https_port}/status", name="c", category="CDN")
    _, result = _run(command, [target], ProbeSettings(connect_timeout=3, max_time=8))
    assert not marker.exists()
    agent = result.agent
    assert agent is not None and agent.installed is True
    assert any("binary" in n for n in agent.notes)
    assert any("only its start" in n for n in agent.notes)


@pytest.mark.parametrize(
    ("platform", "outcome", "at_proxy", "verdict"),
    [
        # The Windows agent goes direct after its proxy fails: not probed, so not "blocked".
        (Platform.WINDOWS, Outcome.REFUSED, True, AgentVerdict.UNKNOWN),
        (Platform.WINDOWS, Outcome.TIMEOUT, True, AgentVerdict.UNKNOWN),
        # A proxy that answers and refuses is no failed connection; beyond the proxy neither.
        (Platform.WINDOWS, Outcome.PROXY_DENIED, True, AgentVerdict.CDN_BLOCKED),
        (Platform.WINDOWS, Outcome.TLS_FAILURE, False, AgentVerdict.CDN_BLOCKED),
        # No fail-open is documented for Linux: its proxy failing blocks it.
        (Platform.LINUX, Outcome.REFUSED, True, AgentVerdict.CDN_BLOCKED),
    ],
)
def test_a_windows_agent_whose_proxy_fails_is_unknown_since_it_then_goes_direct(
    platform: Platform, outcome: Outcome, at_proxy: bool, verdict: AgentVerdict
) -> None:
    facts = AgentFacts(installed=True, version="6.4.0")
    obs = Observation(
        url=TARGET.url, outcome=outcome, proxy="http://proxy.example:3128", at_proxy=at_proxy
    )
    found, why = agent_verdict(facts, platform, [TARGET], [obs])
    assert found is verdict, why
    if verdict is AgentVerdict.UNKNOWN:
        assert "--direct" in why
