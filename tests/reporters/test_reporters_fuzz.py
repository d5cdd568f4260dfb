"""Property tests: whatever text a host sends back, every report stays well-formed and inert."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.models import AuditedHost, AuditRun, RunInfo, UnauditedHost
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters.base import render
from auditor.reporters.csv import CsvReporter
from auditor.reporters.html import HtmlReporter
from auditor.reporters.json import JsonReporter
from auditor.reporters.junit import JunitReporter
from auditor.reporters.terminal import render_summary
from auditor.textsafe import for_text
from tests.reporters.fleet import TARGETS, host, observe
from tests.reporters.test_reporters_html import TEMPLATE_TAGS, parse

SNIPPETS = [
    "\x1b[",
    "\x1b]0;",
    "\x9b",
    "\x07",
    "<",
    ">",
    "&",
    "'",
    '"',
    "=",
    "+",
    "-",
    "@",
    "\t",
    "\r",
    "\n",
    "\x00",
    "]]>",
    "</script>",
    "<img onerror=x>",
    "\u2028",
    "\ufeff",
    "\u200b",
    "\u2060",
    "\u034f",
    "\u180e",
    "\u061c",
    "\u202e",
    "\u2067",
    ";",
]
BIDI_AND_ZERO_WIDTH = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
INVISIBLE = "\u200b\u200c\u200d\ufeff\u180e\u061c\u034f\u2060"
hostile = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(exclude_categories=()), max_size=4),
        st.sampled_from(SNIPPETS),
    ),
    max_size=10,
).map("".join)
XML_FORBIDDEN = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def make_run(name: str, detail: str, extra: str) -> AuditRun:
    results = (
        AuditedHost(
            host(name, (extra or "g",), address=extra),
            (
                observe(TARGETS[0], Outcome.TLS_FAILURE, detail, tls_issuer=extra),
                observe(TARGETS[1], Outcome.PROXY_DENIED, extra, proxy=detail),
                observe(TARGETS[2], Outcome.REACHABLE),
            ),
            runner=extra,
        ),
        UnauditedHost(host(name + "-na", ()), HostOutcome.ERROR, detail, runner=extra),
    )
    info = RunInfo(
        run_id=extra,
        started=detail,
        inventory=name,
        targets=TARGETS,
        options={extra: detail},
        warnings=(detail,),
    )
    return AuditRun(info, results)


def strict(name: str) -> Any:
    raise AssertionError(name)


@settings(deadline=None)
@given(name=hostile, detail=hostile, extra=hostile)
def test_fuzz_reports_stay_well_formed(name: str, detail: str, extra: str) -> None:
    run = make_run(name, detail, extra)

    text = render(CsvReporter(), run)
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert len(rows) == 1 + 2 * len(TARGETS)
    # ";" (the separator of many locales) appears only inside quoted cells.
    assert ";" not in re.sub(r'"[^"]*"', "", text)
    for row in rows[1:]:
        for value in row:
            visible = [c for c in value if not (c.isspace() or c in INVISIBLE)][:1]
            assert visible not in (["="], ["+"], ["-"], ["@"]), value
            assert value.lstrip()[:1] not in ("=", "+", "-", "@"), value
            assert value[:1] not in ("\t", "\r"), value
            assert not [c for c in value if (ord(c) < 32 and c not in "\t\n") or c == "\x7f"]
            assert not BIDI_AND_ZERO_WIDTH.search(value), value

    root = ET.fromstring(render(JunitReporter(), run).encode("utf-8"))
    first = root.findall("testsuite")[0].findall("testcase")[0]
    assert first.get("name") == XML_FORBIDDEN.sub("", for_text(name))
    assert not BIDI_AND_ZERO_WIDTH.search(first.get("name") or "")

    doc = json.loads(render(JsonReporter(), run), parse_constant=strict)
    assert len(doc["hosts"]) == 2

    for color in (False, True):
        text = re.sub(r"\x1b\[[0-9;]*m", "", render_summary(run, color=color))
        assert not [c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0]
        assert not BIDI_AND_ZERO_WIDTH.search(text)

    page = parse(render(HtmlReporter(), run))
    assert len(page.scripts) == 2
    data = page.scripts[0][1]
    assert "<" not in data
    assert len(json.loads(data)["a"]) == 1
    assert not BIDI_AND_ZERO_WIDTH.search(json.dumps(json.loads(data), ensure_ascii=False))
    for tag, attrs in page.tags:
        assert tag in TEMPLATE_TAGS
        assert not any(a.lower().startswith("on") for a in attrs)
