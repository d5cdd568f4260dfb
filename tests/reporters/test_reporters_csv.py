"""report.csv: one row per host x URL, RFC 4180, no formulas, no control characters."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter

from auditor.models import AuditedHost, AuditRun, RunInfo, UnauditedHost
from auditor.outcomes import Outcome, host_hint
from auditor.reporters.base import render
from auditor.reporters.csv import COLUMNS, CsvReporter, cell
from tests.reporters.fleet import (
    FORMULA_NAME,
    HOSTILE_NAME,
    TARGETS,
    all_reachable,
    blocked_on_first,
    host,
    sample_run,
)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def parse(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = next(reader)
    assert tuple(header) == COLUMNS
    return [dict(zip(header, row, strict=True)) for row in reader]


def test_column_order_is_stable() -> None:
    required = (
        "host,address,groups,transport,platform,audited,host_outcome,url,outcome,http_status,"
        "detail,remediation,tls_issuer,proxy,remote_ip,tool,time_dns,time_connect,time_tls,"
        "time_total,runner"
    ).split(",")
    assert list(COLUMNS[: len(required)]) == required
    text = render(CsvReporter(), sample_run())
    assert text.startswith(",".join(COLUMNS) + "\r\n")


def test_every_host_and_url_exactly_once() -> None:
    run = sample_run()
    rows = parse(render(CsvReporter(), run))
    assert len(rows) == len(run.results) * len(TARGETS)
    pairs = Counter((r["host"], r["url"]) for r in rows)
    expected = {(cell(res.host.name), t.url) for res in run.results for t in TARGETS}
    assert set(pairs) == expected
    assert set(pairs.values()) == {1}


def test_rfc4180_line_endings() -> None:
    text = render(CsvReporter(), sample_run())
    assert text.endswith("\r\n")
    # Every record ends in CRLF; a bare LF only ever appears inside a quoted cell.
    assert text.count("\r\n") >= len(sample_run().results) * len(TARGETS) + 1


def test_not_audited_hosts_carry_their_host_outcome() -> None:
    run = sample_run()
    rows = parse(render(CsvReporter(), run))
    by_host: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_host.setdefault(row["host"], []).append(row)
    for result in run.results:
        mine = by_host[cell(result.host.name)]
        assert [r["url"] for r in mine] == [t.url for t in TARGETS]
        if isinstance(result, UnauditedHost):
            for row in mine:
                assert row["audited"] == "false"
                assert row["host_outcome"] == result.outcome.value
                assert row["outcome"] == ""  # no verdict: never counted as blocked
                assert row["remediation"] == host_hint(result.outcome)
        else:
            assert isinstance(result, AuditedHost)
            for row, obs in zip(mine, result.observations, strict=True):
                assert row["audited"] == "true"
                assert row["host_outcome"] == ""
                assert row["outcome"] == obs.outcome.value
                if obs.outcome is Outcome.REACHABLE:
                    assert row["remediation"] == ""
                else:
                    assert row["remediation"]


def test_evidence_round_trips() -> None:
    rows = parse(render(CsvReporter(), sample_run()))
    tls = next(r for r in rows if r["host"] == "blk-tls_failure" and r["url"] == TARGETS[0].url)
    assert tls["outcome"] == "tls_failure"
    assert tls["tls_issuer"] == "CN=Corp Interception CA, O=BlueCoat"
    assert tls["detail"] == "SSL certificate problem: unable to get local issuer certificate"
    assert tls["remediation"].startswith("exempt cask.qg3.apps.qualys.com")
    proxy = next(r for r in rows if r["host"] == "blk-proxy_denied" and r["url"] == TARGETS[0].url)
    assert proxy["http_status"] == "403"
    assert proxy["proxy"] == "http://proxy.dc2.example.com:3128"
    ok = next(r for r in rows if r["host"] == "web-01")
    assert ok["time_total"] == "0.052000"
    assert ok["groups"] == "web;prod"
    assert ok["transport"] == "ssh"
    assert ok["platform"] == "linux"


def test_formula_cells_are_neutralised() -> None:
    rows = parse(render(CsvReporter(), sample_run()))
    for row in rows:
        for value in row.values():
            assert not value.startswith(FORMULA_STARTS), value
            assert not value.lstrip().startswith(FORMULA_STARTS), value
    names = {r["host"] for r in rows}
    assert "'" + FORMULA_NAME in names
    details = {r["detail"] for r in rows}
    assert "'=cmd|' /C calc'!A0" in details
    assert "'-2+3" in details
    assert "'+1-1" in details
    assert "'@SUM(1+1)" in {r["proxy"] for r in rows}
    assert "'@runner" in {r["runner"] for r in rows}


def test_hostile_text_loses_control_characters() -> None:
    rows = parse(render(CsvReporter(), sample_run()))
    for row in rows:
        for value in row.values():
            bad = [c for c in value if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0]
            assert not bad, (value, bad)
            assert not any(0xD800 <= ord(c) < 0xE000 for c in value)
    hostile = [r for r in rows if HOSTILE_NAME in r["host"]]
    assert len(hostile) == len(TARGETS)
    assert hostile[0]["address"] == "[31m10.6.6.6"
    # Non-finite timings become empty cells, never "nan"/"inf".
    assert hostile[1]["time_total"] == ""
    assert hostile[1]["time_dns"] == ""


def test_cell_rules() -> None:
    assert cell("=1+1") == "'=1+1"
    assert cell("  =1+1") == "'  =1+1"
    assert cell("\t=1") == "'\t=1"
    assert cell("\r=1") == "'\n=1"
    assert cell("\x00=1") == "'=1"
    assert cell("@x") == "'@x"
    assert cell("-x") == "'-x"
    assert cell("+x") == "'+x"
    assert cell("\uff1dSUM(A1)") == "'\uff1dSUM(A1)"
    assert cell("a=b") == "a=b"
    assert cell("plain\x1b[31m") == "plain[31m"
    assert cell("line1\r\nline2") == "line1\nline2"
    assert cell("") == ""


INVISIBLE_PREFIXES = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\ufeff",
    "\u180e",
    "\u061c",
    "\u034f",
    "\u2060",
]


def _run_with_details(details: list[str]) -> AuditRun:
    hosts = tuple(
        blocked_on_first(host(f"h{i}"), Outcome.HTTP_ERROR, detail)
        for i, detail in enumerate(details)
    )
    return AuditRun(RunInfo(run_id="r", started="s", targets=TARGETS), hosts)


def test_formulas_behind_invisible_characters_are_neutralised() -> None:
    details = [f'{p}=HYPERLINK("http://evil.example.com")' for p in INVISIBLE_PREFIXES]
    details += [" \u2060 \ufeff+1-1", "\u3000@SUM(1)", "\u034f\uff1d1", "\u200b\u200b-2"]
    rows = parse(render(CsvReporter(), _run_with_details(details)))
    shown = [r["detail"] for r in rows if r["target"] == TARGETS[0].name]
    assert len(shown) == len(details)
    for value in shown:
        assert value.startswith("'"), value
        first = [c for c in value[1:] if not c.isspace() and c not in INVISIBLE_PREFIXES][:1]
        assert first and first[0] in FORMULA_STARTS, value


def test_bidi_and_zero_width_characters_are_removed_from_cells() -> None:
    detail = "a\u202eb\u2066c\u2069d\u200be\u200ff\u061cg"
    rows = parse(render(CsvReporter(), _run_with_details([detail])))
    assert rows[0]["detail"] == "abcdefg"


def test_cells_with_semicolons_are_quoted() -> None:
    run = AuditRun(
        RunInfo(run_id="r", started="s", targets=TARGETS),
        (all_reachable(host("web;01", groups=("a", "b"))),),
    )
    text = render(CsvReporter(), run)
    line = text.split("\r\n")[1]
    assert line.startswith('"web;01",')
    assert ',"a;b",' in line
    # A reader that guesses ";" as the separator finds it only inside quoted cells.
    assert all(";" not in part for part in re.sub(r'"[^"]*"', "", text).split(","))
    rows = parse(text)
    assert rows[0]["host"] == "web;01" and rows[0]["groups"] == "a;b"
