"""The PowerShell probe's builder and parser, without a Windows host.

Records here are written the way probe.ps1 writes them on Windows PowerShell 5.1 (base64 of
ConvertTo-Json -Compress output, 5.1's JavaScriptSerializer escapes included); the lab
emulator's own output is checked end to end in tests/transports/test_winrm.py.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from typing import Any

import pytest
from auditor_lab.ps51 import CLIXML_PROGRESS, clixml_error, decode_command, probe_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.errors import HostLevelError, InputError
from auditor.models import MAX_OUTPUT_BYTES, RawOutput, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import ProbeResult, ProbeSettings
from auditor.probes.powershell import (
    DATA_PLACEHOLDER,
    build_powershell_job,
    clean_text,
    encode_data,
    minify,
    parse_powershell,
    probe_deadline,
    probe_source,
    status_ranges,
    stderr_text,
    substitute_data,
)
from auditor.transports.winrm import CMD_EXE_MAX_CHARS, CREATEPROCESS_MAX_CHARS, command_line

NONCE = "0123456789abcdef"
TARGETS = [
    Target(url="https://cask.qg3.apps.qualys.com/status", name="cdn"),
    # The agent endpoint answers anything, as in the built-in catalog: 200-499 is expected.
    Target(
        url="https://qagpublic.qg3.apps.qualys.com/CloudAgent/",
        name="agent",
        expected_status=tuple(range(200, 500)),
    ),
    Target(url="https://intercepted.example/", name="tls"),
]


def record(obj: dict[str, Any], nonce: str = NONCE) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(ch, esc)
    return f"AUDITOR-PS1 {nonce} {base64.b64encode(text.encode()).decode()}\r\n".encode()


def target_rec(i: int, **fields: Any) -> dict[str, Any]:
    """A target record as probe.ps1 prints it: evidence only, the verdict is the parser's."""
    base = {
        "kind": "target", "i": i, "status": 0, "type": "", "reason": "", "msg": "",
        "inner": "", "sock": "", "tls": False, "tunnel": "", "issuer": "", "proxy": "", "ms": 12,
    }  # fmt: skip
    base.update(fields)
    return base


FACTS = {
    "kind": "facts",
    "os_version": "10.0.17763",
    "ps_edition": "Desktop",
    "hostname": "WIN-01",
    "os": "Microsoft Windows Server 2019 Standard",
    "ps_version": "5.1.17763.6414",
}
# The three records 5.1 prints for a reachable CDN, an agent endpoint answering 404 (inside
# its expected band), and a TLS-intercepted URL.
RECORDED = (
    record(FACTS)
    + record(target_rec(0, status=200, ms=311))
    + record(
        target_rec(
            2,
            type="System.Net.WebException",
            reason="TrustFailure",
            msg="The underlying connection was closed: Could not establish trust relationship "
            "for the SSL/TLS secure channel.",
            inner="The remote certificate is invalid according to the validation procedure.",
            issuer="CN=Contoso SSL Inspection CA, O=Contoso Ltd, C=US",
        )
    )
    + record(
        target_rec(
            1,
            status=404,
            type="System.Net.WebException",
            reason="ProtocolError",
            msg="The remote server returned an error: (404) Not Found.",
        )
    )
    + record({"kind": "done", "count": 3})
)


def parse(
    stdout: bytes, stderr: bytes = b"", exit_status: int | None = 0, **kw: Any
) -> ProbeResult:
    raw = RawOutput(stdout=stdout, stderr=stderr, exit_status=exit_status, **kw)
    return parse_powershell(raw, TARGETS, NONCE)


# --- building ---------------------------------------------------------------------------


def test_probe_source_keeps_the_rules_the_minifier_relies_on() -> None:
    source = probe_source()
    assert source.count(DATA_PLACEHOLDER) == 1
    assert "<#" not in source and "#>" not in source
    assert not re.search(r"(?<![@\w])@['\"]\s*$", source, re.MULTILINE), "no here-strings"
    for line in minify(source).splitlines():
        assert not line.startswith("#")
        assert line == line.strip()


def test_the_probe_prints_evidence_and_never_a_verdict() -> None:
    source = minify(probe_source())
    assert "outcome" not in source.lower()
    assigned = set(re.findall(r"=\s*'(\w+)'", source))
    assert assigned >= {"granted", "denied", "no_answer"}
    assert not assigned & {o.value for o in Outcome}


def test_a_verdict_a_record_claims_is_ignored() -> None:
    refused = target_rec(0, reason="ConnectFailure", sock="ConnectionRefused")
    out = record({**refused, "outcome": "reachable", "status": 0})
    assert parse(out).observations[0].outcome is Outcome.REFUSED


def test_probe_ps1_parses_as_powershell() -> None:
    tsp = pytest.importorskip("tree_sitter_powershell")
    ts = pytest.importorskip("tree_sitter")
    parser = ts.Parser(ts.Language(tsp.language()))
    job = build_powershell_job(TARGETS, ProbeSettings(nonce=NONCE))
    for text in (probe_source(), minify(probe_source()), job.script, _inflate(job.script)):
        assert not parser.parse(text.encode()).root_node.has_error


def _inflate(bootstrap: str) -> str:
    payload = re.search(r"FromBase64String\('([A-Za-z0-9+/=]+)'\)", bootstrap)
    assert payload
    return zlib.decompress(base64.b64decode(payload.group(1)), -15).decode()


def test_urls_travel_only_as_base64_data_never_as_source() -> None:
    hostile = "https://evil.example/a'b\";$(Remove-Item -Recurse C:\\)`n#"
    job = build_powershell_job([Target(url=hostile, name="x")], ProbeSettings(nonce=NONCE))
    inner = _inflate(job.script)
    assert hostile not in inner and "Remove-Item" not in inner
    literal = re.search(r"\$AuditorData = '([^']*)'", inner)
    assert literal and re.fullmatch(r"[A-Za-z0-9+/=]+", literal.group(1))
    doc = json.loads(base64.b64decode(literal.group(1)))
    assert doc["targets"] == [{"url": hostile, "expect": [200, 200]}]
    assert next(iter(doc)) == "nonce"  # found by a regex before JSON is parsed (PowerShell 2.0)


def test_the_lab_emulator_reads_back_exactly_what_the_builder_wrote() -> None:
    settings = ProbeSettings(nonce=NONCE, max_time=7.5, connect_timeout=2.0)
    job = build_powershell_job(TARGETS, settings)
    script = decode_command(command_line(job.script))
    assert script == job.script
    doc = probe_data(script)
    assert doc is not None
    assert doc == {
        "nonce": NONCE,
        "timeout": 8,
        "connect_ms": 2000,
        "parallel": 3,
        "deadline": probe_deadline(3, settings),
        "targets": [
            {"url": t.url, "expect": [200, 200] if t.name != "agent" else [200, 499]}
            for t in TARGETS
        ],
    }


def test_substitution_accepts_base64_only() -> None:
    with pytest.raises(ValueError, match="base64"):
        substitute_data(probe_source(), "abc'; Remove-Item x")
    with pytest.raises(ValueError, match="exactly one"):
        substitute_data("no placeholder here", "QUJD")


def test_bad_input_is_refused() -> None:
    with pytest.raises(InputError):
        encode_data([], ProbeSettings(nonce=NONCE))
    with pytest.raises(InputError, match="not an http"):
        encode_data([Target(url="ftp://x.example/", name="x")], ProbeSettings(nonce=NONCE))
    with pytest.raises(ValueError, match="nonce"):
        encode_data(TARGETS, ProbeSettings(nonce="no spaces allowed"))


def test_expected_statuses_travel_as_ranges() -> None:
    assert status_ranges((200,)) == [200, 200]
    assert status_ranges(tuple(range(200, 500))) == [200, 499]
    assert status_ranges((404, 200, 201, 202, 200)) == [200, 202, 404, 404]


def test_deadline_covers_every_wave_of_parallel_requests() -> None:
    s = ProbeSettings(max_time=10.0)
    assert probe_deadline(1, s) == 15.0
    assert probe_deadline(10, s) == 15.0
    assert probe_deadline(20, s) == 25.0


def _encoded_length(n: int) -> int:
    # Distinct, catalog-like URLs (the worst case for compression), each with a status band.
    targets = [
        Target(
            url=f"https://qagpublic.qg{i}.apps.qualys-region{i}.example/CloudAgent/",
            name=str(i),
            expected_status=tuple(range(200, 500)),
        )
        for i in range(n)
    ]
    return len(command_line(build_powershell_job(targets, ProbeSettings(nonce=NONCE)).script))


def test_twenty_targets_fit_the_windows_command_line_the_transport_uses() -> None:
    lengths = {n: _encoded_length(n) for n in (1, 20, 50)}
    # Measured when written: 1 -> 10530, 20 -> 11702, 50 -> 12470 characters. The
    # WinRM transport starts powershell.exe without cmd.exe (WINRS_SKIP_CMD_SHELL=TRUE), so
    # CreateProcess's 32767 applies; cmd.exe's 8191 would not fit even one target.
    assert lengths[20] < CREATEPROCESS_MAX_CHARS - 8000
    assert lengths[50] < CREATEPROCESS_MAX_CHARS
    assert lengths[1] > CMD_EXE_MAX_CHARS
    print(f"encoded command lengths: {lengths}")


# --- parsing ------------------------------------------------------------------------------


def test_recorded_51_output_with_clixml_noise_parses_to_one_observation_per_target() -> None:
    result = parse(RECORDED, CLIXML_PROGRESS.encode())
    cdn, agent, tls = result.observations
    assert (cdn.outcome, cdn.detail, cdn.http_status, cdn.time_total) == (
        Outcome.REACHABLE,
        "HTTP 200",
        200,
        0.311,
    )
    assert (agent.outcome, agent.detail, agent.http_status) == (Outcome.REACHABLE, "HTTP 404", 404)
    assert tls.outcome is Outcome.TLS_FAILURE
    assert tls.detail == (
        "The underlying connection was closed: Could not establish trust relationship for the "
        "SSL/TLS secure channel. The remote certificate is invalid according to the validation "
        "procedure.; certificate issuer: CN=Contoso SSL Inspection CA, O=Contoso Ltd, C=US"
    )
    assert tls.tls_issuer == "CN=Contoso SSL Inspection CA, O=Contoso Ltd, C=US"
    assert dict(result.facts) == {k: v for k, v in FACTS.items() if k != "kind"}


def test_lines_without_this_runs_nonce_are_ignored() -> None:
    forged = record(target_rec(0, status=200), nonce="f" * 16)
    noise = b"AUDITOR-PS1 " + NONCE.encode() + b" not-base64!!\r\nWARNING: hello\r\n"
    result = parse(forged + noise + RECORDED)
    assert result.observations[0].detail == "HTTP 200"
    assert [o.outcome for o in parse(forged + record(FACTS)).observations] == [Outcome.ERROR] * 3


def test_truncated_output_marks_missing_targets_as_errors() -> None:
    cut = RECORDED[: RECORDED.index(b"\r\n", RECORDED.index(b"\r\n") + 2) + 2]
    result = parse(cut + b"AUDITOR-PS1 " + NONCE.encode() + b" eyJra", truncated=True)
    assert result.observations[0].outcome is Outcome.REACHABLE
    for obs in result.observations[1:]:
        assert obs.outcome is Outcome.ERROR
        assert obs.detail == (
            "probe output ended before this target's record "
            f"(output was cut at {MAX_OUTPUT_BYTES} bytes)"
        )


def test_a_fatal_record_explains_the_missing_targets() -> None:
    out = record(FACTS) + record({"kind": "fatal", "msg": 'Exception calling "Open": boom\n'})
    obs = parse(out, exit_status=4).observations[1]
    assert obs.detail == (
        "probe output ended before this target's record "
        '(the probe failed: Exception calling "Open": boom)'
    )


def test_hostile_fields_are_capped_one_line_and_free_of_control_characters() -> None:
    evil = "line1\r\nline2\x1b[31m\u202e\x00" + "A" * 5000
    out = (
        record(target_rec(0, status=503, msg=evil, inner=evil, issuer=evil, proxy=evil, ms=-5))
        + record({**target_rec(1), "outcome": "owned"})
        + record({**target_rec(2, deadline=True), "i": True})
    )
    result = parse(out)
    obs = result.observations[0]
    for text in (obs.detail, obs.tls_issuer, obs.proxy):
        assert "\n" not in text and "\r" not in text and "\x1b" not in text
        assert "\u202e" not in text and "\x00" not in text
    assert len(obs.detail) <= 400 and obs.detail.startswith("line1 line2 [31m")
    assert obs.time_total is None
    assert result.observations[1].outcome is Outcome.ERROR
    # A verdict the record claims counts for nothing: with no evidence, it is an error.
    assert result.observations[1].detail == "probe reported error without a message"
    # "i": true is not an index: that record counts for nothing.
    assert result.observations[2].detail == "probe output ended before this target's record"


def test_invalid_utf8_around_records_is_tolerated() -> None:
    result = parse(b"\xff\xfe\x80garbage\r\n" + RECORDED + b"\xc3\x28")
    assert result.observations[0].outcome is Outcome.REACHABLE


def test_the_first_record_for_a_target_wins() -> None:
    refused = target_rec(0, reason="ConnectFailure", sock="ConnectionRefused")
    out = record(refused) + record(target_rec(0, status=200))
    assert parse(out).observations[0].outcome is Outcome.REFUSED


def test_missing_powershell_is_probe_unavailable() -> None:
    stderr = (
        b"'powershell.exe' is not recognized as an internal or external command,\r\n"
        b"operable program or batch file.\r\n"
    )
    with pytest.raises(HostLevelError) as caught:
        parse(b"", stderr, exit_status=9009)
    assert caught.value.outcome == HostOutcome.PROBE_UNAVAILABLE
    assert caught.value.detail == (
        "powershell.exe could not be started (exit status 9009): 'powershell.exe' is not "
        "recognized as an internal or external command,"
    )


def test_powershell_without_invoke_webrequest_is_probe_unavailable() -> None:
    out = (
        b"AUDITOR-PS1 "
        + NONCE.encode()
        + b" "
        + base64.b64encode(b'{"kind":"unavailable","ps":"2.0"}')
    )
    with pytest.raises(HostLevelError) as caught:
        parse(out, exit_status=3)
    assert caught.value.outcome == HostOutcome.PROBE_UNAVAILABLE
    assert caught.value.detail == (
        "Invoke-WebRequest is not available (PowerShell 2.0); "
        "the probe needs PowerShell 3.0 or later"
    )


def test_constrained_language_mode_is_probe_unavailable() -> None:
    stderr = clixml_error(
        [
            "Cannot invoke method. Method invocation is supported only on core types in this "
            "language mode.",
            "At line:1 char:1",
            "    + FullyQualifiedErrorId : MethodInvocationNotSupportedInConstrainedLanguage",
        ],
        120,
    )
    with pytest.raises(HostLevelError) as caught:
        parse(b"", stderr, exit_status=1)
    assert caught.value.outcome == HostOutcome.PROBE_UNAVAILABLE
    assert "Method invocation is supported only on core types" in caught.value.detail


def test_output_with_no_record_is_a_host_error_with_what_the_host_said() -> None:
    with pytest.raises(HostLevelError) as caught:
        parse(b"Some banner\r\n", CLIXML_PROGRESS.encode(), exit_status=0)
    assert caught.value.outcome == HostOutcome.ERROR
    assert (
        caught.value.detail == "no probe records in the host's output (exit status 0): Some banner"
    )


def test_clixml_errors_decode_to_their_text() -> None:
    # The verified fixture shape from pywinrm's test_session.py (reference §4), shortened.
    stderr = (
        b"#< CLIXML\r\n"
        b'<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        b'<S S="Error">fake : The term &apos;fake&apos; is not recognized _x000D__x000A_</S>'
        b'<S S="Error">At line:1 char:1_x000D__x000A_</S></Objs>'
    )
    assert (
        stderr_text(stderr) == "fake : The term 'fake' is not recognized \r\nAt line:1 char:1\r\n"
    )
    assert stderr_text(CLIXML_PROGRESS.encode()) == ""


def test_clean_text() -> None:
    assert clean_text("a\r\n\tb\u2028c\u200bd") == "a b c d"
    assert clean_text("x" * 10, limit=5) == "xxxx…"


_LINE = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda b: b"AUDITOR-PS1 " + NONCE.encode() + b" " + base64.b64encode(b),
        st.binary(max_size=60),
    ),
    st.builds(
        lambda obj: (
            b"AUDITOR-PS1 " + NONCE.encode() + b" " + base64.b64encode(json.dumps(obj).encode())
        ),
        st.dictionaries(
            st.sampled_from(["kind", "i", "outcome", "status", "msg", "inner", "ms", "ps"]),
            st.one_of(
                st.sampled_from(["target", "facts", "done", "fatal", "reachable", "timeout"]),
                st.integers(-(10**20), 10**20),
                st.floats(allow_nan=True),
                st.text(max_size=20),
                st.none(),
                st.booleans(),
                st.lists(st.integers(), max_size=3),
            ),
            max_size=6,
        ),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(_LINE, max_size=12),
    stderr=st.binary(max_size=200),
    exit_status=st.one_of(st.none(), st.integers(-1, 10000)),
    truncated=st.booleans(),
)
def test_fuzz_parser_never_raises_anything_but_host_level_error(
    lines: list[bytes], stderr: bytes, exit_status: int | None, truncated: bool
) -> None:
    raw = RawOutput(b"\r\n".join(lines), stderr, exit_status, truncated)
    try:
        result = parse_powershell(raw, TARGETS, NONCE)
    except HostLevelError as exc:
        assert exc.outcome in {o.value for o in HostOutcome}
        assert "\n" not in exc.detail and len(exc.detail) <= 400
        return
    assert len(result.observations) == len(TARGETS)
    for obs, target in zip(result.observations, TARGETS, strict=True):
        assert obs.url == target.url and isinstance(obs.outcome, Outcome)
        assert "\n" not in obs.detail and len(obs.detail) <= 400


def test_the_password_of_a_reported_proxy_is_masked_in_every_field() -> None:
    proxy = "http://auditor:Pw0rd/x9@proxy.corp:3128/"
    msg = "The proxy tunnel request to proxy 'http://auditor:Pw0rd%2Fx9@proxy.corp:3128/' failed"
    out = record(target_rec(0, status=407, proxy=proxy, msg=msg, inner="Pw0rd"))
    result = parse(out)
    assert "Pw0rd" not in repr(result) and "x9" not in repr(result)
    assert result.observations[0].proxy == "http://***@proxy.corp:3128/"


def test_an_issuer_with_control_characters_is_shown_escaped() -> None:
    out = record(target_rec(2, reason="TrustFailure", issuer="CN=Evil\x01CA\x1b[31m, O=Contoso"))
    obs = parse(out).observations[2]
    assert obs.tls_issuer == "CN=Evil\\x01CA\\x1b[31m, O=Contoso"
