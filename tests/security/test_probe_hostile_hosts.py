"""probe.sh against hosts that lie, leak or misconfigure: run for real by the local transport,
with real curl, wget and python3, against loopback servers and a real authenticating proxy."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from auditor.models import Connection, Host, Platform, ProbeJob, RawOutput, Target
from auditor.outcomes import Outcome
from auditor.probes import ProbeResult, ProbeSettings
from auditor.probes.posix import build_posix_job, parse_posix, probe_source
from auditor.transports.local import LocalTransport
from tests.support.loopback import (
    Loopback,
    auth_proxy,
    crowd_server,
    loopback_servers,
    make_ca,
    raw_http_server,
    tls_server,
)
from tests.support.proc import command_lines

HOST = Host(name="here", address="localhost", connection=Connection.LOCAL, platform=Platform.LINUX)
TOOLS = ("curl", "wget", "python3")
FAST = ProbeSettings(connect_timeout=3, max_time=8)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _only(tmp: Path, tool: str) -> str:
    """A PATH directory holding every tool of the system but the HTTP clients before `tool`
    in the probe's order of preference, so that the probe picks `tool`."""
    missing = TOOLS[: TOOLS.index(tool)]
    bin_dir = tmp / f"bin-{tool}"
    bin_dir.mkdir(exist_ok=True)
    for directory in ("/usr/bin", "/bin"):
        for entry in os.scandir(directory):
            name = entry.name
            if any(name == m or name.startswith(m + ".") for m in missing) or (
                "python3" in missing and name.startswith("python3")
            ):
                continue
            link = bin_dir / name
            if not link.exists():
                link.symlink_to(entry.path)
    return str(bin_dir)


def _probe(
    targets: list[Target], settings: ProbeSettings = FAST, command: str | None = None
) -> tuple[RawOutput, ProbeResult]:
    job = build_posix_job(targets, settings)
    if command is not None:
        job = ProbeJob(script=job.script, command=command)
    raw = asyncio.run(LocalTransport().run_job(HOST, job, 120))
    return raw, parse_posix(raw, targets, settings.nonce)


# --- item 2: proxy credentials never in process arguments -------------------------------


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
@pytest.mark.parametrize("tool", TOOLS)
def test_the_agent_proxy_password_never_appears_in_any_process_arguments(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool: str
) -> None:
    """The Qualys agent's proxy (with credentials) is used; while the tool talks through it,
    /proc/*/cmdline of every process on the machine is read: the password is in none."""
    if tool == "wget" and not shutil.which("wget"):
        pytest.skip("wget not installed")
    password = "Agent-Pr0xy-Secret"
    monkeypatch.setenv("PATH", _only(tmp_path, tool))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(servers.ca_bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(servers.ca_bundle))
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    etc_default = tmp_path / "default"
    etc_default.mkdir()
    url = f"https://localhost:{servers.https_port}/status"
    settings = ProbeSettings(connect_timeout=5, max_time=20, agent_proxy=True)
    with auth_proxy("agent", password, servers.https_port) as proxy:
        (etc_default / "qualys-cloud-agent").write_text(
            f"https_proxy=http://agent:{password}@127.0.0.1:{proxy.port}\n"
        )
        # The agent's configuration, seen only by this probe: its own mount namespace.
        command = (
            "unshare -m --propagation private /bin/sh -c "
            f"'mount --bind {etc_default} /etc/default && exec /bin/sh -s'"
        )
        box: list[ProbeResult] = []
        run = threading.Thread(
            target=lambda: box.append(_probe([Target(url=url, name="ok")], settings, command)[1])
        )
        run.start()
        try:
            assert proxy.holding.wait(60), "the probe never reached the proxy"
            seen = command_lines()
        finally:
            proxy.release.set()
            run.join(120)
    # The sample was taken while the tool was running (its argv names the URL).
    assert [c for c in seen if url.encode() in c and tool.encode() in c.split(b"\0")[0]]
    assert [c for c in seen if password.encode() in c] == []
    (result,) = box
    assert proxy.authorized, "the tool authenticated to the proxy"
    (obs,) = result.observations
    expected = Outcome.TLS_FAILURE if tool == "wget" else Outcome.REACHABLE  # GnuTLS wget
    assert obs.outcome is expected, obs.detail
    assert password not in repr(result)
    assert obs.proxy == f"http://***@127.0.0.1:{proxy.port}"
    assert result.facts["proxy_settings"] == f"agent=http://***@127.0.0.1:{proxy.port}"


# --- item 3: masking from the setting, whatever its shape -------------------------------

HOSTILE_PROXIES = [
    "http://auditor:Pw0rd/x9@127.0.0.1:{port}",
    "auditor:Pw0rd/x9@127.0.0.1:{port}",
    "http:/auditor:Pw0rd/x9@127.0.0.1:{port}",
    "http:\\\\auditor:Pw0rd/x9@127.0.0.1:{port}",
    "http://auditor:Pw0rd%2Fx9@127.0.0.1:{port}",
]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("setting", HOSTILE_PROXIES)
def test_a_proxy_password_is_masked_in_every_shape_and_encoding(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool: str, setting: str
) -> None:
    if tool == "wget" and not shutil.which("wget"):
        pytest.skip("wget not installed")
    monkeypatch.setenv("PATH", _only(tmp_path, tool))
    monkeypatch.setenv("https_proxy", setting.format(port=servers.proxy_port))
    target = [Target(url=f"https://localhost:{servers.https_port}/status", name="ok")]
    _, result = _probe(target)
    shown = repr(result)
    for form in ("Pw0rd", "x9", "%2F", "%2f"):
        assert form not in shown, (form, shown)
    assert "https_proxy=" in result.facts["proxy_settings"]
    assert result.observations[0].outcome is not Outcome.REACHABLE


# --- item 9: hostile certificates --------------------------------------------------------


def _hostile_chain(directory: Path) -> tuple[Path, Path]:
    """A leaf whose subject forges an issuer line, from a CA whose name holds control
    characters (an SOH, which is the record separator, and an ANSI colour escape)."""
    _, ca_key, ca_cert = make_ca(directory, "Evil\x01CA\x1b[31m", "Contoso")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "localhost\n*  issuer: Forged Issuer")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    crt, pem = directory / "hostile.crt", directory / "hostile.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


OLD_CURL = """#!/bin/sh
# The real curl, claiming an older version: the probe must then read verbose text.
if [ "$1" = --version ]; then
    echo 'curl 7.76.1 (x86_64-pc-linux-gnu) libcurl/7.76.1 OpenSSL/3.0.7'
    exit 0
fi
exec {curl} "$@"
"""


@pytest.mark.parametrize("curl", ["current", "older than 7.88"])
def test_a_hostile_certificate_cannot_break_the_record_or_forge_its_issuer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, curl: str
) -> None:
    if curl != "current":
        real = shutil.which("curl")
        assert real
        wrapper = tmp_path / "old-bin"
        wrapper.mkdir()
        (wrapper / "curl").write_text(OLD_CURL.format(curl=real))
        (wrapper / "curl").chmod(0o755)
        monkeypatch.setenv("PATH", f"{wrapper}:{os.environ['PATH']}")
    crt, key = _hostile_chain(tmp_path)
    with tls_server(crt, key) as port:
        _, result = _probe([Target(url=f"https://localhost:{port}/", name="hostile")])
    (obs,) = result.observations
    assert obs.outcome is Outcome.TLS_FAILURE, obs.detail
    assert "Evil" in obs.tls_issuer and "Contoso" in obs.tls_issuer
    assert "Forged" not in obs.tls_issuer and "Forged" not in obs.detail
    assert all(ch.isprintable() for ch in obs.tls_issuer)
    # The control characters are shown, escaped, not dropped.
    assert re.search(r"Evil\\(x)?01CA\\(x)?1[bB]\[31m", obs.tls_issuer), obs.tls_issuer


# --- item 10: wget's status -------------------------------------------------------------


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget not installed")
def test_a_status_line_among_the_headers_cannot_make_wget_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _only(tmp_path, "wget"))
    answer = (
        b"HTTP/1.1 403 Forbidden\r\nHTTP/1.1 200 OK\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    with raw_http_server(answer) as port:
        _, result = _probe([Target(url=f"http://127.0.0.1:{port}/status", name="liar")])
    (obs,) = result.observations
    assert obs.tool == "wget"
    assert obs.outcome is Outcome.HTTP_ERROR and obs.http_status == 403, obs.detail


# --- item 11: the host's configuration cannot switch certificate checks off --------------


@pytest.mark.parametrize("tool", TOOLS)
def test_config_files_and_python_overrides_cannot_make_an_untrusted_ca_reachable(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool: str
) -> None:
    if tool == "wget" and not shutil.which("wget"):
        pytest.skip("wget not installed")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".curlrc").write_text("insecure\n")
    (home / ".wgetrc").write_text("check_certificate = off\n")
    version = subprocess.run(
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site = home / ".local" / "lib" / f"python{version}" / "site-packages"
    site.mkdir(parents=True)
    # What PYTHONHTTPSVERIFY=0 does on the distributions that honour it.
    (site / "usercustomize.py").write_text(
        "import ssl\nssl._create_default_https_context = ssl._create_unverified_context\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PYTHONHTTPSVERIFY", "0")
    monkeypatch.setenv("PATH", _only(tmp_path, tool))
    target = [Target(url=f"https://localhost:{servers.untrusted_port}/", name="intercepted")]
    _, result = _probe(target)
    (obs,) = result.observations
    assert obs.tool == tool
    assert obs.outcome is Outcome.TLS_FAILURE, obs.detail


OLD_WGET = """#!/bin/sh
# The real wget, as one older than --no-config answers that option.
for arg in "$@"; do
    if [ "$arg" = --no-config ]; then
        echo "wget: unrecognized option '--no-config'" >&2
        exit 2
    fi
done
exec {wget} "$@"
"""


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget not installed")
def test_a_wget_without_no_config_still_ignores_the_users_wgetrc(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.which("wget")
    bin_dir = Path(_only(tmp_path, "wget"))
    (bin_dir / "wget").unlink()
    (bin_dir / "wget").write_text(OLD_WGET.format(wget=real))
    (bin_dir / "wget").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".wgetrc").write_text("check_certificate = off\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", str(bin_dir))
    target = [Target(url=f"https://localhost:{servers.untrusted_port}/", name="intercepted")]
    _, result = _probe(target)
    (obs,) = result.observations
    assert obs.tool == "wget"
    assert obs.outcome is Outcome.TLS_FAILURE, obs.detail


# --- item 14: bounded parallelism on the host -------------------------------------------


def test_forty_targets_never_run_more_than_eight_transfers_at_once() -> None:
    """The server holds every request until a ninth is open (or 2 s): 40 transfers started
    at once are seen as 9 or more; a probe that caps at 8 waits out each hold."""
    with crowd_server(release_at=9, hold=2.0) as crowd:
        targets = [Target(url=f"http://127.0.0.1:{crowd.port}/{i}", name=str(i)) for i in range(40)]
        _, result = _probe(targets, ProbeSettings(connect_timeout=5, max_time=20))
    assert [o.outcome for o in result.observations] == [Outcome.REACHABLE] * 40
    # At most 8 at once, and truly in parallel (all eight of a wave overlap in the hold).
    assert 4 <= crowd.peak[0] <= 8, crowd.peak[0]


# --- hardening: the probe's environment and the record marker ---------------------------

SPY_CURL = """#!/bin/sh
# Records what a child tool of the probe can see of it, then runs the real curl.
{{ printf 'ARGV'; printf ' %s' "$@"; printf '\\n'; env; }} >> {dump}
exec {curl} "$@"
"""


def _spy(tmp_path: Path) -> tuple[Path, Path]:
    real = shutil.which("curl")
    assert real
    bin_dir, dump = tmp_path / "spy-bin", tmp_path / "dump"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(SPY_CURL.format(dump=dump, curl=real))
    (bin_dir / "curl").chmod(0o755)
    return bin_dir, dump


def test_the_local_probe_starts_with_a_minimal_environment(
    servers: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, dump = _spy(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("AUDITOR_SSH_PASSWORD", "ssh-Secret-123")
    monkeypatch.setenv("AUDITOR_WINRM_PASSWORD", "winrm-Secret-456")
    monkeypatch.setenv("SOME_TOKEN", "unrelated-789")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{servers.proxy_port}")
    monkeypatch.setenv("LC_ALL", "C")
    settings = ProbeSettings(connect_timeout=3, max_time=8)
    _probe([Target(url=f"https://localhost:{servers.https_port}/", name="ok")], settings)
    seen = dump.read_text()
    assert "ARGV" in seen
    for secret in ("ssh-Secret-123", "winrm-Secret-456", "unrelated-789", settings.nonce):
        assert secret not in seen
    assert f"https_proxy=http://127.0.0.1:{servers.proxy_port}" in seen
    assert "LC_ALL=C" in seen and f"PATH={bin_dir}" in seen


def test_the_marker_stays_out_of_child_tools_even_if_the_host_exports_its_names(
    servers: Loopback, tmp_path: Path
) -> None:
    """A host whose login environment happens to export the probe's variable names: the
    probe's values (the record marker first) still never reach a child's environment."""
    bin_dir, dump = _spy(tmp_path)
    settings = ProbeSettings(connect_timeout=3, max_time=8)
    job = build_posix_job(
        [Target(url=f"http://127.0.0.1:{servers.http_port}/", name="x")], settings
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "AUDITOR_NONCE": "host", "_line": "host"}
    names = re.findall(r"\b(AUDITOR_[A-Z0-9_]+|_[a-z_]+)=", probe_source())
    env.update({name: "host" for name in names})
    proc = subprocess.run(
        ["/bin/sh", "-s"], input=job.stdin, capture_output=True, env=env, timeout=60, check=False
    )
    assert settings.nonce.encode() in proc.stdout
    seen = dump.read_text()
    assert "ARGV" in seen
    assert settings.nonce not in seen


def test_every_variable_of_the_probe_is_unset_before_use() -> None:
    """The guard above only works if the unset list names every variable the script sets."""
    source = probe_source()
    unset = re.search(r"^unset ((?:[^\n]*\\\n)*[^\n]*)$", source, re.MULTILINE)
    assert unset is not None
    listed = set(unset.group(1).replace("\\\n", " ").split())
    # The python3 fallback's source is data for the shell, not shell.
    source = re.sub(r"\nAUDITOR_PY='.*?\n'\n", "\nAUDITOR_PY=\n", source, flags=re.DOTALL)
    # Assignments start a command: at a line's start, or after ; && || { ( then do else.
    starts = r"(?:^[ \t]*|[;&|{(][ \t]*|\b(?:then|do|else)[ \t]+)"
    assigned = set(re.findall(starts + r"([A-Za-z_]\w*)=", source, re.MULTILINE))
    assigned |= set(re.findall(r"\bfor ([A-Za-z_]\w*) in", source))
    assigned |= set(re.findall(r"read -r ([A-Za-z_]\w*)", source))
    # Set on purpose for the tools: the agent's proxy, exported.
    assigned -= {"IFS", "https_proxy", "http_proxy", "LC_ALL"}
    assert assigned <= listed, sorted(assigned - listed)
