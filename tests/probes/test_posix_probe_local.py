"""probe.sh run for real by the local transport against loopback servers, with each HTTP
client it supports (curl, then wget, then python3) and with none."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.errors import HostLevelError
from auditor.models import Connection, Host, Platform, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import ProbeSettings
from auditor.probes.posix import build_posix_job, parse_posix, probe_source, sent_source
from auditor.transports.local import LocalTransport
from tests.support.loopback import Loopback, loopback_servers

HOST = Host(name="here", address="localhost", connection=Connection.LOCAL, platform=Platform.LINUX)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _targets(lb: Loopback) -> list[Target]:
    return [
        Target(url=f"https://localhost:{lb.https_port}/status", name="ok"),
        Target(url=f"http://127.0.0.1:{lb.http_port}/fail", name="503"),
        Target(url=f"https://localhost:{lb.untrusted_port}/", name="tls"),
        Target(url=f"https://127.0.0.1:{lb.silent_port}/", name="silent"),
        Target(url=f"http://127.0.0.1:{lb.closed_port}/", name="closed"),
    ]


def _path_without(tmp: Path, *missing: str) -> str:
    """A PATH directory holding every tool of the system except `missing`."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for directory in ("/usr/bin", "/bin"):
        for entry in os.scandir(directory):
            name = entry.name
            if any(
                name == m
                or name.startswith(m + ".")
                or (m == "python3" and name.startswith("python3"))
                for m in missing
            ):
                continue
            link = bin_dir / name
            if not link.exists():
                link.symlink_to(entry.path)
    return str(bin_dir)


def _audit(targets: list[Target], settings: ProbeSettings) -> list[tuple[Outcome, str, str]]:
    raw = asyncio.run(LocalTransport().run_job(HOST, build_posix_job(targets, settings), 30))
    result = parse_posix(raw, targets, settings.nonce)
    return [(o.outcome, o.detail, o.tool) for o in result.observations]


def test_curl_gives_every_outcome_at_once(
    servers: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    got = _audit(_targets(servers), ProbeSettings(connect_timeout=2, max_time=2))
    assert [g[0] for g in got] == [
        Outcome.REACHABLE,
        Outcome.HTTP_ERROR,
        Outcome.TLS_FAILURE,
        Outcome.TIMEOUT,
        Outcome.REFUSED,
    ]
    assert "Contoso SSL Inspection CA" in got[2][1]
    assert {g[2] for g in got} == {"curl"}


def test_urls_run_in_parallel_on_the_host(servers: Loopback) -> None:
    """Three black-holed URLs at 2 s each must take about 2 s, not 6 s."""
    slow = [
        Target(url=f"https://127.0.0.1:{servers.silent_port}/{i}", name=str(i)) for i in range(3)
    ]
    loop = asyncio.new_event_loop()
    try:
        start = loop.time()
        settings = ProbeSettings(connect_timeout=2, max_time=2)
        loop.run_until_complete(LocalTransport().run_job(HOST, build_posix_job(slow, settings), 30))
        elapsed = loop.time() - start
    finally:
        loop.close()
    assert elapsed < 5.0


def test_a_denying_proxy_is_proxy_denied_and_its_password_is_never_shown(
    servers: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", f"http://auditor:s3cret-pw@127.0.0.1:{servers.proxy_port}")
    target = [Target(url=f"https://localhost:{servers.https_port}/status", name="ok")]
    settings = ProbeSettings(connect_timeout=2, max_time=2)
    raw = asyncio.run(LocalTransport().run_job(HOST, build_posix_job(target, settings), 30))
    result = parse_posix(raw, target, settings.nonce)
    assert "s3cret-pw" not in repr(result)
    (obs,) = result.observations
    assert obs.outcome is Outcome.PROXY_DENIED
    assert obs.proxy == f"http://***@127.0.0.1:{servers.proxy_port}"


def test_a_proxy_password_holding_an_at_sign_is_masked_whole(
    servers: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", f"http://auditor:s3c@ret-pw@127.0.0.1:{servers.proxy_port}")
    target = [Target(url=f"https://localhost:{servers.https_port}/status", name="ok")]
    settings = ProbeSettings(connect_timeout=2, max_time=2)
    raw = asyncio.run(LocalTransport().run_job(HOST, build_posix_job(target, settings), 30))
    result = parse_posix(raw, target, settings.nonce)
    assert "s3c" not in repr(result) and "ret-pw" not in repr(result)
    (obs,) = result.observations
    assert obs.proxy == f"http://***@127.0.0.1:{servers.proxy_port}"


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget not installed")
def test_wget_is_the_fallback_without_curl(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path, "curl"))
    got = _audit(_targets(servers), ProbeSettings(connect_timeout=2, max_time=2))
    assert {g[2] for g in got} == {"wget"}
    assert [g[0] for g in got] == [
        Outcome.TLS_FAILURE,  # wget reads the system CA store, not CURL_CA_BUNDLE
        Outcome.HTTP_ERROR,
        Outcome.TLS_FAILURE,
        Outcome.TIMEOUT,
        Outcome.REFUSED,
    ]


def test_python3_is_the_last_fallback(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path, "curl", "wget"))
    monkeypatch.setenv("SSL_CERT_FILE", str(servers.ca_bundle))
    got = _audit(_targets(servers), ProbeSettings(connect_timeout=2, max_time=2))
    assert {g[2] for g in got} == {"python3"}
    assert [g[0] for g in got] == [
        Outcome.REACHABLE,
        Outcome.HTTP_ERROR,
        Outcome.TLS_FAILURE,
        Outcome.TIMEOUT,
        Outcome.REFUSED,
    ]


def test_no_http_client_at_all_is_probe_unavailable(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path, "curl", "wget", "python3"))
    with pytest.raises(HostLevelError) as info:
        _audit(_targets(servers), ProbeSettings())
    assert info.value.outcome == HostOutcome.PROBE_UNAVAILABLE


def test_hostile_urls_travel_as_inert_data(tmp_path: Path, servers: Loopback) -> None:
    """Shell metacharacters that survive URL validation reach curl as one literal argument."""
    canary = tmp_path / "canary"
    url = f"http://127.0.0.1:{servers.http_port}/a$(touch${{IFS}}{canary})`id`;x|y&z"
    target = [Target(url=url, name="hostile")]
    got = _audit(target, ProbeSettings(connect_timeout=2, max_time=2))
    assert got[0][0] is Outcome.REACHABLE
    assert not canary.exists()


def test_probe_script_passes_shellcheck() -> None:
    checker = shutil.which("shellcheck")
    if checker is None:
        pytest.skip("shellcheck not installed")
    import subprocess

    src = Path(__file__).parent / "probe.sh"
    src.write_text(probe_source())
    try:
        subprocess.run([checker, "-s", "sh", str(src)], check=True)
    finally:
        src.unlink()


@pytest.mark.parametrize("code", [54, 64])
def test_curl_tls_codes_54_and_64_get_the_issuer_look_up(
    code: int, servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """curl's 54 (TLS engine) and 64 (TLS required) fail like any TLS error: probe.sh looks
    the issuer up, as the classifier's TLS codes say. No curl here fails that way on its
    own, so the verifying call answers with the code and every other call is real curl."""
    real = shutil.which("curl")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "curl"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do\n'
        f'  case "$a" in -k|--version) exec {real} "$@";; esac\n'
        "done\n"
        f"printf '\\nAUDW 000|000||0.001|0.002|0.000|0.003\\ncurl: ({code}) TLS setup failed\\n'\n"
        f"exit {code}\n"
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    target = Target(url=f"https://localhost:{servers.untrusted_port}/", name="tls")
    ((outcome, detail, tool),) = _audit([target], ProbeSettings(connect_timeout=2, max_time=2))
    assert (outcome, tool) == (Outcome.TLS_FAILURE, "curl")
    assert detail.startswith("TLS setup failed (issuer: ") and "Contoso SSL Inspection CA" in detail


# --- one curl process for every URL, and the per-URL path it falls back to ----------------


def _observations(targets: list[Target], settings: ProbeSettings) -> list[tuple[object, ...]]:
    """What the classifier saw for each target, with the milliseconds curl's messages
    quote (different on every run) left out."""
    raw = asyncio.run(LocalTransport().run_job(HOST, build_posix_job(targets, settings), 30))
    result = parse_posix(raw, targets, settings.nonce)
    assert result.facts["tool_version"].startswith("curl 7.") or result.facts[
        "tool_version"
    ].startswith("curl 8.")
    return [
        (
            o.outcome,
            re.sub(r"\d+ (ms|milliseconds)", r"N \1", o.detail),
            o.http_status,
            o.exit_code,
            o.tool,
            o.tls_issuer,
            o.proxy,
            o.at_proxy,
            o.remote_ip,
            o.time_total is not None,
        )
        for o in result.observations
    ]


def _curl_wrapper(tmp: Path, log: Path, refuse: str = "") -> str:
    """A PATH whose curl logs each run to `log` and then runs the real curl; with `refuse`,
    it answers as a curl that does not know that option (exit 2, no request made)."""
    real = shutil.which("curl")
    assert real is not None
    bin_dir = tmp / "wrapped"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "curl"
    refusal = (
        f'for a in "$@"; do [ "$a" = "{refuse}" ] && '
        f'{{ echo "curl: option {refuse}: is unknown" >&2; exit 2; }}; done\n'
        if refuse
        else ""
    )
    wrapper.write_text(f'#!/bin/sh\necho run >> "{log}"\n{refusal}exec {real} "$@"\n')
    wrapper.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_one_curl_process_fetches_every_url(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four URLs (no TLS failure, so no issuer look-up): one curl process for them all, and
    one for the version."""
    log = tmp_path / "runs"
    monkeypatch.setenv("PATH", _curl_wrapper(tmp_path, log))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    targets = [t for t in _targets(servers) if t.name != "tls"]
    got = _observations(targets, ProbeSettings(connect_timeout=2, max_time=2))
    assert [g[0] for g in got] == [
        Outcome.REACHABLE,
        Outcome.HTTP_ERROR,
        Outcome.TIMEOUT,
        Outcome.REFUSED,
    ]
    assert log.read_text().count("run") == 2


def test_the_one_process_and_per_url_paths_see_the_same_facts(
    servers: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    targets = _targets(servers)
    one = _observations(targets, ProbeSettings(connect_timeout=2, max_time=2))
    per_url = _observations(targets, ProbeSettings(connect_timeout=2, max_time=2, per_url=True))
    assert one == per_url
    assert "Contoso SSL Inspection CA" in str(one[2][5])


@pytest.mark.parametrize(
    "refused",
    # curl before 7.66 has no --parallel; 7.66 to 7.74 lack what the one-process path reads.
    ["--parallel", "--create-file-mode"],
)
def test_an_older_curl_takes_the_per_url_path_with_the_same_facts(
    refused: str, servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    targets = _targets(servers)
    expected = _observations(targets, ProbeSettings(connect_timeout=2, max_time=2, per_url=True))
    log = tmp_path / "runs"
    monkeypatch.setenv("PATH", _curl_wrapper(tmp_path, log, refuse=refused))
    assert _observations(targets, ProbeSettings(connect_timeout=2, max_time=2)) == expected
    # The refused command line, the version, one process per URL and the TLS issuer look-up.
    assert log.read_text().count("run") == 1 + 1 + len(targets) + 1


def test_a_shared_proxy_for_http_and_https_is_shown_per_url_on_both_paths(
    servers: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy each URL's record names follows its scheme, on the one-process path too."""
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{servers.proxy_port}")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    targets = [
        Target(url=f"https://localhost:{servers.https_port}/status", name="ok"),
        Target(url=f"http://127.0.0.1:{servers.http_port}/fail", name="503"),
    ]
    one = _observations(targets, ProbeSettings(connect_timeout=2, max_time=2))
    per_url = _observations(targets, ProbeSettings(connect_timeout=2, max_time=2, per_url=True))
    assert one == per_url
    assert (one[0][0], one[0][6]) == (
        Outcome.PROXY_DENIED,
        f"http://127.0.0.1:{servers.proxy_port}",
    )
    assert (one[1][0], one[1][6]) == (Outcome.HTTP_ERROR, "")


def test_the_sent_probe_drops_only_comment_and_blank_lines() -> None:
    """Every line of probe.sh that is code reaches the host, in order; the python3 fallback's
    source (the one multi-line quoted string) arrives whole."""
    code = [
        line
        for line in probe_source().splitlines()
        if line.strip() and not line.lstrip()[:1] == "#"
    ]
    assert sent_source().splitlines() == code
    start = probe_source().index("AUDITOR_PY='")
    python = probe_source()[start : probe_source().index("\n'\n", start)]
    assert python in sent_source()
    assert len(sent_source()) < 0.75 * len(probe_source())
