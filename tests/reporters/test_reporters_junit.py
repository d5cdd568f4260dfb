"""junit.xml: a suite per URL, a case per host; not-audited hosts fail, never skip."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from auditor.models import AuditedHost, UnauditedHost
from auditor.outcomes import Outcome
from auditor.reporters.base import render
from auditor.reporters.junit import JunitReporter, xml_attr, xml_text
from tests.reporters.fleet import HOSTILE_DETAIL, HOSTILE_NAME, TARGETS, sample_run


def parse() -> ET.Element:
    text = render(JunitReporter(), sample_run())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(text.encode("utf-8"))


def test_one_suite_per_url_one_case_per_host() -> None:
    run = sample_run()
    root = parse()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [t.url for t in TARGETS]
    for suite in suites:
        cases = suite.findall("testcase")
        assert len(cases) == len(run.results)
        assert int(suite.get("tests", "")) == len(run.results)
    assert int(root.get("tests", "")) == len(run.results) * len(TARGETS)


def test_failures_are_counted_right() -> None:
    run = sample_run()
    root = parse()
    unaudited = sum(1 for r in run.results if isinstance(r, UnauditedHost))
    total_failures = 0
    for index, suite in enumerate(root.findall("testsuite")):
        blocked = sum(
            1
            for r in run.results
            if isinstance(r, AuditedHost) and r.observations[index].outcome is not Outcome.REACHABLE
        )
        failures = suite.findall("testcase/failure")
        assert len(failures) == blocked + unaudited
        assert int(suite.get("failures", "")) == blocked + unaudited
        assert suite.findall("testcase/skipped") == []
        assert suite.get("skipped") == "0"
        total_failures += blocked + unaudited
    assert int(root.get("failures", "")) == total_failures


def test_failure_types_and_classnames() -> None:
    run = sample_run()
    suite = parse().findall("testsuite")[0]
    cases = suite.findall("testcase")
    for result, case in zip(run.results, cases, strict=True):
        assert case.get("name") == result.host.name.replace("\x1b", "").replace("\x07", "")
        expected_class = result.host.groups[0] if result.host.groups else result.host.name
        assert case.get("classname") == expected_class
        failure = case.find("failure")
        if isinstance(result, UnauditedHost):
            assert failure is not None
            assert failure.get("type") == result.outcome.value
            assert "not audited" in (failure.get("message") or "")
            assert "remediation:" in (failure.text or "")
        elif result.observations[0].outcome is Outcome.REACHABLE:
            assert failure is None
        else:
            assert failure is not None
            assert failure.get("type") == result.observations[0].outcome.value
            assert result.observations[0].detail.replace("\x00", "")[:10] in (
                failure.get("message") or ""
            )
            assert "remediation:" in (failure.text or "")
    lonely = next(c for c in cases if c.get("name") == "lonely")
    assert lonely.get("classname") == "lonely"


def test_hostile_text_is_escaped_not_interpreted() -> None:
    suite = parse().findall("testsuite")[0]
    hostile = next(c for c in suite.findall("testcase") if c.get("name") == HOSTILE_NAME)
    failure = hostile.find("failure")
    assert failure is not None
    text = failure.text or ""
    assert "</script><script>alert('d')</script>" in text
    assert "]]>" in text
    assert "\x00" not in text and "\x01" not in text and "\ud800" not in text
    assert "tls issuer: " + HOSTILE_NAME in text
    # The message attribute survives newlines and quotes.
    assert "'quote\"" in (failure.get("message") or "")


def test_escaping_helpers() -> None:
    assert xml_text("a<b>&c\x00\x0b\ud800\r") == "a&lt;b&gt;&amp;c&#13;"
    assert xml_attr('"x"\n\t<') == "&quot;x&quot;&#10;&#9;&lt;"
    ET.fromstring(f'<a b="{xml_attr(HOSTILE_DETAIL)}">{xml_text(HOSTILE_DETAIL)}</a>')
