"""Property tests: arbitrary input to every parser of outside data raises nothing but the
tool's own errors, and serialised results round-trip."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from auditor.errors import HostLevelError, InputError
from auditor.models import AuditedHost, Connection, Host, Observation, Platform, RawOutput, Target
from auditor.outcomes import Outcome
from auditor.probes.posix import parse_posix
from auditor.results import result_from_dict, result_to_dict
from auditor.targets import load_targets_file, validate_url

NONCE = "00112233aabbccdd"
TARGETS = [Target(url="https://a.example/", name="a"), Target(url="https://b.example/", name="b")]

field = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
record = st.builds(
    lambda kind, fields: f"AUD1 {NONCE}\t{kind}\t" + "\t".join(fields),
    st.sampled_from(["T", "H", "D", "U", "X"]),
    st.lists(field, max_size=16),
)


@given(
    st.binary(max_size=4096), st.binary(max_size=512), st.one_of(st.none(), st.integers(-1, 300))
)
def test_posix_parser_survives_arbitrary_bytes(
    stdout: bytes, stderr: bytes, status: int | None
) -> None:
    try:
        result = parse_posix(RawOutput(stdout, stderr, status), TARGETS, NONCE)
    except HostLevelError:
        return
    assert len(result.observations) == len(TARGETS)


@given(st.lists(record, max_size=12), st.booleans())
def test_posix_parser_gives_one_observation_per_target_for_any_records(
    lines: list[str], cut: bool
) -> None:
    raw = RawOutput("\n".join(lines).encode("utf-8", "surrogatepass"), b"", 0, truncated=cut)
    try:
        result = parse_posix(raw, TARGETS, NONCE)
    except HostLevelError:
        return
    assert [o.url for o in result.observations] == [t.url for t in TARGETS]
    for obs in result.observations:
        assert "\n" not in obs.detail and len(obs.detail) <= 1000
        assert all(ord(c) >= 32 for c in obs.detail)


@given(st.binary(max_size=2048))
def test_targets_loader_raises_only_input_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "targets.yml"
        path.write_bytes(data)
        try:
            targets = load_targets_file(path)
        except InputError:
            return
        for t in targets:
            assert validate_url(t.url) == t.url


@given(st.text(alphabet=string.printable + "\u0430\uff04\u202e", max_size=120))
def test_url_validation_accepts_only_inert_urls(url: str) -> None:
    try:
        validate_url(url)
    except InputError:
        return
    assert not any(c.isspace() or c in "'\"`\\<>{}|^" or ord(c) > 126 for c in url)


observation = st.builds(
    Observation,
    url=st.just("https://a.example/"),
    outcome=st.sampled_from(Outcome),
    detail=field,
    http_status=st.one_of(st.none(), st.integers(100, 599)),
    remote_ip=field,
    tool=field,
    tls_issuer=field,
    proxy=field,
    exit_code=st.one_of(st.none(), st.integers(0, 99)),
    time_total=st.one_of(st.none(), st.floats(0, 1e5)),
)


@given(
    st.lists(observation, min_size=1, max_size=3),
    st.text(min_size=1, max_size=30),
    st.lists(field, max_size=3),
)
def test_results_round_trip(observations: list[Observation], name: str, groups: list[str]) -> None:
    host = Host(
        name=name,
        address="10.0.0.1",
        connection=Connection.SSH,
        platform=Platform.LINUX,
        groups=tuple(groups),
    )
    result = AuditedHost(host=host, observations=tuple(observations), duration=1.5)
    back = result_from_dict(result_to_dict(result), len(observations))
    assert back == result


# Targets files that use anchors and aliases (an `expected_status` alias bomb included).
TARGET_PIECES = """\
targets:
- url: https://a.example/
  expected_status: *s
  expected_status: &s [200, 204]
  expected_status: [*s, *s, *s]
  name: *n
x: &n [*s, *s, *s, *s]
y: &m [*n, *n, *n, *n]
z: [*m, *m, *m, *m, *m]
- https://b.example/
- {url: https://c.example/, "\\x1b[2J": 1}
""".splitlines()


@given(st.lists(st.sampled_from(TARGET_PIECES) | st.text(max_size=6), max_size=16))
def test_targets_loader_with_aliases_raises_only_input_errors(pieces: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "targets.yml"
        path.write_text("\n".join(pieces), encoding="utf-8", errors="surrogatepass")
        try:
            targets = load_targets_file(path)
        except InputError as exc:
            assert len(str(exc)) < 400 + len(str(path))  # one short line, whatever the input
            return
        assert 0 < len(targets) <= 1000
