"""report.prom: Prometheus text exposition format, read back by a strict parser."""

from __future__ import annotations

import math
import re

import pytest

from auditor.models import AuditRun, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters.base import render
from auditor.reporters.prom import PromReporter, escape_label
from tests.reporters.fleet import TARGETS, sample_run

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def parse(text: str) -> tuple[dict[str, str], list[Sample]]:
    """The exposition format, strictly: HELP and TYPE once per family and before its
    samples, samples of one family together, labels quoted and escaped exactly as the format
    allows, values that are numbers. Returns (TYPE per family, samples)."""
    assert text.endswith("\n") and "\r" not in text
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: list[Sample] = []
    finished: set[str] = set()
    current = ""
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert _NAME.fullmatch(name) and name not in helps, line
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helps and name not in types and kind == "gauge", line
            types[name] = kind
            if current:
                finished.add(current)
            current = name
            continue
        assert not line.startswith("#") and line.strip() == line and line, repr(line)
        match = _NAME.match(line)
        assert match, line
        name = match.group(0)
        assert name == current and name not in finished, line
        rest = line[match.end() :]
        labels: list[tuple[str, str]] = []
        if rest.startswith("{"):
            pos = 1
            while rest[pos] != "}":
                label = _LABEL.match(rest, pos)
                assert label, rest[pos:]
                value = re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], label.group(2))
                labels.append((label.group(1), value))
                pos = label.end()
                if rest[pos] == ",":
                    pos += 1
            rest = rest[pos + 1 :]
        assert rest.startswith(" ") and " " not in rest[1:], line
        value = float(rest[1:])
        assert len({k for k, _ in labels}) == len(labels), line
        samples.append((name, tuple(labels), value))
    return types, samples


def _by(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for n, labels, value in samples if n == f"fleet_auditor_{name}"}


def test_the_sample_run_parses_and_counts_every_outcome() -> None:
    run = sample_run()
    types, samples = parse(render(PromReporter(), run))
    assert set(types) >= {
        "fleet_auditor_url_readiness_ratio",
        "fleet_auditor_url_gate_readiness_ratio",
        "fleet_auditor_url_outcome_hosts",
        "fleet_auditor_hosts",
        "fleet_auditor_host_outcome_hosts",
        "fleet_auditor_run_duration_seconds",
        "fleet_auditor_last_run_timestamp_seconds",
    }
    inv = ("inventory", "inventories/prod.ini")
    hosts = _by(samples, "hosts")
    audited = hosts[(inv, ("state", "audited"))]
    not_audited = hosts[(inv, ("state", "not_audited"))]
    assert audited + not_audited == len(run.results)
    assert not_audited == len([o for o in HostOutcome if o is not HostOutcome.SKIPPED]) + 1
    cdn = (inv, ("url", TARGETS[0].url), ("name", "US3 CDN"))
    outcomes = _by(samples, "url_outcome_hosts")
    per_outcome = {o: outcomes[(*cdn, ("outcome", o.value))] for o in Outcome}
    assert sum(per_outcome.values()) == audited
    assert per_outcome[Outcome.TLS_FAILURE] == 2 and per_outcome[Outcome.TIMEOUT] == 2
    ready = per_outcome[Outcome.REACHABLE]
    assert math.isclose(_by(samples, "url_readiness_ratio")[cdn], ready / audited)
    gate = _by(samples, "url_gate_readiness_ratio")[cdn]
    assert math.isclose(gate, ready / len(run.results))
    assert _by(samples, "run_duration_seconds")[(inv,)] == 123.4
    # 2024-05-01T10:02:03Z
    assert _by(samples, "last_run_timestamp_seconds")[(inv,)] == 1714557723.0


@pytest.mark.parametrize(
    "hostile", ['a"b', "back\\slash", "line\nfeed", 'all \\" \n three', "\ud800 lone", "\\n"]
)
def test_label_values_are_escaped_and_read_back_exactly(hostile: str) -> None:
    run = sample_run()
    target = Target(url=f"https://x.example.com/{hostile}", name=hostile)
    info = run.info.__class__(
        **{**run.info.__dict__, "inventory": hostile, "targets": (target, *run.info.targets[1:])}
    )
    _, samples = parse(render(PromReporter(), AuditRun(info, run.results)))
    expected = hostile.replace("\ud800", "\ufffd")
    names = {dict(labels).get("name") for _, labels, _ in samples}
    assert expected in names
    assert all(dict(labels)["inventory"] == expected for _, labels, _ in samples)


def test_escape_label() -> None:
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
