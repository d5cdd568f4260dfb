"""The POSIX probe's parser and classifier, on records captured from real curl runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.classify import Evidence, classify
from auditor.errors import HostLevelError
from auditor.models import RawOutput, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes.posix import parse_posix

NONCE = "0123456789abcdef"
RECORDED = Path(__file__).parent / "recorded"
TARGET = Target(url="https://cask.qg3.apps.qualys.com/status", name="US3 CDN")


def verdict(
    tool: str,
    exit_code: int | None,
    http: int | None,
    connect: int | None,
    err: str,
    issuer: str,
    proxy: str,
    target: Target,
) -> tuple[Outcome, str]:
    """What the shared classifier makes of one POSIX tool's result."""
    evidence = Evidence(
        tool=tool,
        exit_code=exit_code,
        http_status=http,
        connect_status=connect,
        message=err,
        issuer=issuer,
        proxy=proxy,
    )
    return classify(evidence, target)


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for path in sorted(RECORDED.glob("*.tsv")):
        for line in path.read_text().splitlines():
            if not line.startswith("AUD1"):
                continue
            record, _, expect = line.partition("\t=> ")
            outcome, _, detail = expect.partition("\t")
            cases.append((record, outcome, detail))
    return cases


CASES = _cases()


def test_the_recorded_corpus_covers_every_target_outcome_but_error() -> None:
    seen = {outcome for _, outcome, _ in CASES}
    assert seen == {o.value for o in Outcome} - {"error"}


@pytest.mark.parametrize(("record", "outcome", "detail"), CASES)
def test_recorded_curl_output_is_classified(record: str, outcome: str, detail: str) -> None:
    raw = RawOutput(stdout=f"{record}\nAUD1 {NONCE}\tD\t1\n".encode(), stderr=b"", exit_status=0)
    (obs,) = parse_posix(raw, [TARGET], NONCE).observations
    assert obs.outcome == outcome
    assert detail in obs.detail


def test_lines_without_this_runs_nonce_are_ignored() -> None:
    forged = "AUD1 ffffffffffffffff\tT\t0\tcurl\t0\t200\t000\t\t\t\t\t\t\t\t"
    real = CASES[4][0].replace("\t=>", "")
    out = f"{forged}\nnoise\n{real}\nAUD1 {NONCE}\tD\t1\n".encode()
    (obs,) = parse_posix(RawOutput(out, b"", 0), [TARGET], NONCE).observations
    assert obs.outcome is Outcome.TIMEOUT


def test_credentials_in_any_url_a_tool_prints_are_masked() -> None:
    err = "Unsupported proxy syntax in 'http://bob:p@ss@proxy.example:3128'"
    record = f"AUD1 {NONCE}\tT\t0\tcurl\t5\t000\t000\t\t\t\t\t\thttp://bob:p@ss@proxy.example:3128\t\t{err}"
    out = f"{record}\nAUD1 {NONCE}\tD\t1\n".encode()
    (obs,) = parse_posix(RawOutput(out, b"", 0), [TARGET], NONCE).observations
    assert "p@ss" not in obs.detail + obs.proxy and "bob" not in obs.detail + obs.proxy
    assert "'http://***@proxy.example:3128'" in obs.detail


def test_a_missing_record_is_an_error_for_that_target_only() -> None:
    targets = [TARGET, Target(url="https://example.invalid/x", name="second")]
    out = f"AUD1 {NONCE}\tH\th\tos\tcurl\t7\n{CASES[0][0]}\n".encode()
    first, second = parse_posix(
        RawOutput(out, b"", None, truncated=True), targets, NONCE
    ).observations
    assert first.outcome is Outcome.REACHABLE
    assert second.outcome is Outcome.ERROR
    assert "cut off" in second.detail


def test_no_http_client_is_probe_unavailable() -> None:
    out = f"AUD1 {NONCE}\tU\tno curl, wget or python3 on PATH (/nowhere)\n".encode()
    with pytest.raises(HostLevelError) as info:
        parse_posix(RawOutput(out, b"", 0), [TARGET], NONCE)
    assert info.value.outcome == HostOutcome.PROBE_UNAVAILABLE
    assert "/nowhere" in info.value.detail


def test_silence_is_a_host_level_error_not_a_blocked_target() -> None:
    with pytest.raises(HostLevelError) as info:
        parse_posix(RawOutput(b"", b"sh: 1: oops\n", 2), [TARGET], NONCE)
    assert info.value.outcome == HostOutcome.ERROR


def test_missing_sh_is_probe_unavailable() -> None:
    with pytest.raises(HostLevelError) as info:
        parse_posix(
            RawOutput(b"", b"bash: /bin/sh: No such file or directory\n", 127), [TARGET], NONCE
        )
    assert info.value.outcome == HostOutcome.PROBE_UNAVAILABLE


@pytest.mark.parametrize(
    ("exit_code", "err", "outcome"),
    [
        (
            35,
            "OpenSSL SSL_connect: Connection reset by peer in connection to x:443",
            Outcome.REFUSED,
        ),
        (7, "Failed to connect to x port 443 after 3001 ms: Connection timed out", Outcome.TIMEOUT),
        (5, "Could not resolve proxy: proxy.corp", Outcome.DNS_FAILURE),
        (52, "Empty reply from server", Outcome.ERROR),
        (
            51,
            "SSL: no alternative certificate subject name matches target host name",
            Outcome.TLS_FAILURE,
        ),
    ],
)
def test_curl_exit_codes_map_onto_the_taxonomy(exit_code: int, err: str, outcome: Outcome) -> None:
    assert verdict("curl", exit_code, None, None, err, "", "", TARGET)[0] is outcome


def test_407_from_a_proxy_is_proxy_denied() -> None:
    got = verdict("curl", 0, 407, None, "", "", "http://proxy:3128", TARGET)
    assert got[0] is Outcome.PROXY_DENIED


def test_a_proxys_407_is_proxy_denied_even_where_any_4xx_is_expected() -> None:
    lenient = Target(url=TARGET.url, name="x", expected_status=tuple(range(200, 500)))
    got = verdict("curl", 0, 407, None, "", "", "http://proxy:3128", lenient)
    assert got[0] is Outcome.PROXY_DENIED


def test_an_expected_non_200_status_is_reachable() -> None:
    target = Target(url=TARGET.url, name="x", expected_status=(200, 204, 401))
    assert verdict("curl", 0, 401, None, "", "", "", target)[0] is Outcome.REACHABLE


@pytest.mark.parametrize(
    ("err", "http", "outcome"),
    [
        (
            "Resolving nohost... failed: Name or service not known. wget: unable to resolve host address 'nohost'",
            None,
            Outcome.DNS_FAILURE,
        ),
        ("Connecting to 127.0.0.1:9... failed: Connection refused.", None, Outcome.REFUSED),
        ("ERROR: The certificate of 'x' is not trusted.", None, Outcome.TLS_FAILURE),
        (
            "Proxy tunneling failed: ForbiddenUnable to establish SSL connection.",
            None,
            Outcome.PROXY_DENIED,
        ),
        ("ERROR 503: Service Unavailable.", 503, Outcome.HTTP_ERROR),
    ],
)
def test_wget_messages_map_onto_the_taxonomy(err: str, http: int | None, outcome: Outcome) -> None:
    exit_code = 8 if http else (5 if "certificate" in err else 4)
    assert verdict("wget", exit_code, http, None, err, "", "", TARGET)[0] is outcome


def _t(index: object, exit_code: str = "0", http: str = "200") -> str:
    return f"AUD1 {NONCE}\tT\t{index}\tcurl\t{exit_code}\t{http}\t000\t10.0.0.1\t0.1\t0.2\t0.3\t0.4\t\t\t"


def test_a_host_reporting_a_target_twice_gets_an_error_for_it_not_either_record() -> None:
    """A host may print records it was not asked for, twice for one target, or none: the
    doubled target is an error (which record would be true?), the others stand, and records
    for targets that were not asked for are ignored."""
    targets = [TARGET, Target(url="https://example.invalid/x", name="second"), TARGET]
    out = "\n".join(
        [
            _t(0),
            _t(1, "7", "000"),
            _t(1),  # the same target again, now "reachable"
            _t(3),  # not asked for
            _t(99999999),  # an index no target has, and too long to be one
            _t("-1"),
            _t("x"),
            f"AUD1 {NONCE}\tD\t3",
        ]
    ).encode()
    first, second, third = parse_posix(RawOutput(out, b"", 0), targets, NONCE).observations
    assert first.outcome is Outcome.REACHABLE
    assert second.outcome is Outcome.ERROR and "more than one record" in second.detail
    assert third.outcome is Outcome.ERROR and "no record" in third.detail


def test_short_long_and_garbled_records_never_crash_the_parser() -> None:
    targets = [TARGET]
    for record in [
        f"AUD1 {NONCE}\tT",
        f"AUD1 {NONCE}\tT\t0",
        _t(0) + "\textra",
        f"AUD1 {NONCE}\tT\t0\tcurl\t{'9' * 5000}\t\x00\t\t\t\t\t\t\t\t\t",
        f"AUD1 {NONCE}\tT\t0\tcurl\tNaN\tinf\t-1\t;rm\t1e999\t-0\tnan\t\t\t\t",
    ]:
        out = f"AUD1 {NONCE}\tH\th\tos\tcurl\t7\n{record}\n".encode() + b"\xff\xfe"
        (obs,) = parse_posix(RawOutput(out, b"", 0), targets, NONCE).observations
        assert len(obs.detail) <= 1000 and "\x00" not in obs.detail
