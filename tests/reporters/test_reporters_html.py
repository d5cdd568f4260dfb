"""report.html: self-contained, autoescaped, a change board's page, prints on A4.

What the host tables show after filtering, sorting and paging is tested in a real browser
(tests/browser/).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.resources
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from auditor.models import AuditedHost, AuditRun, RunInfo, UnauditedHost
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters import html as html_reporter
from auditor.reporters.base import render
from auditor.reporters.html import (
    ChangeRow,
    HtmlExtras,
    HtmlReporter,
    TrendPoint,
    css_string,
    environment,
)
from tests.reporters.fleet import (
    FORMULA_NAME,
    HOSTILE_DETAIL,
    HOSTILE_NAME,
    TARGETS,
    all_reachable,
    blocked_on_first,
    host,
    observe,
    sample_run,
)


@dataclass
class Page:
    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    scripts: list[tuple[dict[str, str | None], str]] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._raw: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.page.tags.append((tag, attributes))
        if tag in ("script", "style"):
            self._raw = (tag, attributes)
            self._chunks: list[str] = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if self._raw and tag == self._raw[0]:
            content = "".join(self._chunks)
            if tag == "script":
                self.page.scripts.append((self._raw[1], content))
            else:
                self.page.styles.append(content)
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw:
            self._chunks.append(data)
        else:
            self.page.text.append(data)


def parse(document: str) -> Page:
    parser = PageParser()
    parser.feed(document)
    parser.close()
    return parser.page


@pytest.fixture(scope="module")
def document() -> str:
    return render(HtmlReporter(), sample_run(interrupted=True))


@pytest.fixture(scope="module")
def page(document: str) -> Page:
    return parse(document)


def embedded(page: Page) -> dict[str, Any]:
    data = [c for a, c in page.scripts if a.get("type") == "application/json"]
    assert len(data) == 1
    loaded: dict[str, Any] = json.loads(data[0])
    return loaded


def test_only_our_two_scripts(page: Page) -> None:
    assert len(page.scripts) == 2
    (data_attrs, data), (code_attrs, code) = page.scripts
    assert data_attrs == {"type": "application/json", "id": "audit-data"}
    assert code_attrs == {}
    assert "<" not in data and ">" not in data and "&" not in data
    assert "function Table(" in code


TEMPLATE_TAGS = set(
    "html head meta title style body svg defs pattern rect main header h1 h2 h3 p code nav a "
    "section ul li div span b table thead tbody tr th td small text select option input "
    "button noscript dl dt dd footer script line polyline circle".split()
)


def test_no_event_handlers_or_injected_elements(page: Page) -> None:
    used = {tag for tag, _ in page.tags}
    assert used <= TEMPLATE_TAGS, used - TEMPLATE_TAGS
    for tag, attrs in page.tags:
        for name in attrs:
            assert not name.lower().startswith("on"), (tag, name)
        assert "style" not in attrs, tag  # no inline style attributes (CSP forbids them)


def test_hostile_text_appears_only_as_text(page: Page) -> None:
    text = "".join(page.text)
    assert HOSTILE_NAME in text
    assert "</script><script>alert('d')</script> <b onmouseover=alert(3)>x</b>" in text
    assert FORMULA_NAME in text
    data = embedded(page)
    names = [row[0] for row in data["a"]]
    assert HOSTILE_NAME in names
    assert HOSTILE_DETAIL.replace("\x00", "").replace("\x01", "")[:30] in " ".join(data["s"])


def test_self_contained(document: str, page: Page) -> None:
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data", "xlink:href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith("#"), (tag, name, value)
    for style in page.styles:
        assert "@import" not in style
        assert not re.search(r"url\((?!#)", style)
    assert not [t for t, _ in page.tags if t == "link"]
    # Absolute URLs appear only as text, never as something the browser would load.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|javascript:)""", document, re.I)


def test_content_security_policy_pins_our_own_style_and_script(page: Page) -> None:
    csp = next(
        a["content"] or ""
        for t, a in page.tags
        if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp

    def source(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    code = next(c for a, c in page.scripts if not a)
    assert f"script-src {source(code)}" in csp
    assert len(page.styles) == 1
    assert f"style-src {source(page.styles[0])}" in csp
    assert "unsafe-inline" not in csp


def test_headline_and_counts(page: Page) -> None:
    text = " ".join(" ".join(page.text).split())
    assert f"30.8 % of audited hosts reach {TARGETS[0].url}" in text
    assert "4 reachable · 9 blocked · 9 not audited (of 22 hosts)" in text
    assert f"92.3 % of audited hosts reach {TARGETS[1].url}" in text
    assert "unverified URL" in text


def test_warnings_and_run_metadata(page: Page) -> None:
    text = " ".join(" ".join(page.text).split())
    assert "Warnings" in text
    assert "host key checking was disabled (--insecure-host-keys)" in text
    assert "The run was interrupted: 1 host(s) were never tried" in text
    assert "inventories/prod.ini" in text
    assert "run-2024-0001" in text
    assert "2 min 03 s" in text
    assert "https://docs.example.com/qualys-urls" in text
    assert "concurrency" in text
    assert "fleet-auditor 0.1.0" in text
    sections = [a.get("id") for t, a in page.tags if t == "section"]
    assert sections.index("warnings") < sections.index("readiness")


def test_breakdowns(page: Page) -> None:
    text = " ".join(page.text)
    for outcome in Outcome:
        assert outcome.value in text
    for reason in HostOutcome:
        if reason is not HostOutcome.SKIPPED:  # the sample run has none (see fleet.py)
            assert reason.value in text
    for group in ("web", "db", "dc2", "dmz", "prod", "ungrouped"):
        assert group in text
    assert "linux" in text and "windows" in text
    # The host-level outcomes live in their own section, apart from blocked hosts.
    sections = [a.get("id") for t, a in page.tags if t == "section"]
    assert "not-audited" in sections and "audited" in sections


def test_charts_are_inline_svg(page: Page) -> None:
    svgs = [a for t, a in page.tags if t == "svg"]
    assert len(svgs) >= 3
    rects = [a for t, a in page.tags if t == "rect"]
    assert any(a.get("fill") == "url(#hatch)" for a in rects)


def test_embedded_rows(page: Page) -> None:
    data = embedded(page)
    run = sample_run()
    assert len(data["a"]) + len(data["u"]) == len(run.results)
    assert data["o"] == [o.value for o in Outcome]
    assert data["ho"] == [o.value for o in HostOutcome]
    assert [t["url"] for t in data["t"]] == [t.url for t in TARGETS]
    audited = [r for r in run.results if isinstance(r, AuditedHost)]
    for row, result in zip(data["a"], audited, strict=True):
        assert [data["o"][o[0]] for o in row[6]] == [o.outcome.value for o in result.observations]
    assert "s3cret" not in json.dumps(data)


def test_escaping_cannot_be_turned_off() -> None:
    env = environment()
    assert env.autoescape is True
    source = (importlib.resources.files("auditor.templates") / "report.html.j2").read_text()
    code = re.sub(r"\{#.*?#\}", "", source, flags=re.S)
    assert not re.search(r"\|\s*safe\b", code)
    assert "autoescape" not in code
    assert "Markup" not in code


def test_renders_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    environment.cache_clear()
    try:
        assert "<!DOCTYPE html>" in render(HtmlReporter(), sample_run())
    finally:
        environment.cache_clear()


def test_edge_runs() -> None:
    empty = render(HtmlReporter(), AuditRun(RunInfo(run_id="r", started="s", options={}), ()))
    assert "No target URLs were audited." in empty
    only_ok = render(
        HtmlReporter(),
        AuditRun(
            RunInfo(run_id="r", started="s", targets=TARGETS),
            (all_reachable(host("a")),),
        ),
    )
    assert "100 %" in only_ok
    assert "Every host was audited." in only_ok
    assert 'id="unaudited-table"' not in only_ok


def test_noscript_fallback_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_reporter, "NOSCRIPT_ROWS", 2)
    document = render(HtmlReporter(), sample_run())
    assert "and 9 more blocked verdicts (see report.csv)." in document
    assert "and 7 more (see report.csv)." in document


BIDI_AND_ZERO_WIDTH = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def test_bidi_and_zero_width_characters_never_reach_the_page() -> None:
    # "exe.txt" written right-to-left, a zero-width space in a host name, an isolate in a
    # detail: each could make the page show something other than what the host sent.
    tricky = "invoice\u202etxt.exe\u202c web\u200b01 \u2067x\u2069 \u061c\u200e\u200f"
    run = AuditRun(
        RunInfo(
            run_id="r",
            started="s",
            targets=TARGETS,
            inventory=tricky,
            warnings=(tricky,),
        ),
        (
            all_reachable(host(tricky, groups=(tricky,))),
            blocked_on_first(host("b"), Outcome.TLS_FAILURE, tricky, tls_issuer=tricky),
        ),
    )
    document = render(HtmlReporter(), run)
    assert not BIDI_AND_ZERO_WIDTH.search(document)
    page = parse(document)
    decoded = json.dumps(embedded(page), ensure_ascii=False)
    assert not BIDI_AND_ZERO_WIDTH.search(decoded)
    assert "invoicetxt.exe web01 x" in decoded
    assert "invoicetxt.exe web01 x" in "".join(page.text)


# --- a change board's page: the answer first, then blocked hosts by cause and by group -------


def flat(document: str) -> str:
    """The page's text as a reader sees it (whitespace collapsed)."""
    return " ".join("".join(parse(document).text).split())


def section_order(document: str) -> list[str]:
    return [str(a.get("id")) for t, a in parse(document).tags if t == "section"]


def test_the_page_opens_with_the_answer_then_blocked_hosts_then_the_table(document: str) -> None:
    order = section_order(document)
    assert order[0] == "answer"
    assert order.index("blocked") < order.index("audited") < order.index("readiness")
    assert order.index("answer") < order.index("warnings") < order.index("blocked")
    text = flat(document)
    # Ready over every host in scope: the 9 not audited are not ready (and not blocked).
    assert "US3 CDN: 4 of 22 hosts ready (18.2 %); 9 not audited" in text
    assert "US3 platform: 12 of 22 hosts ready (54.5 %); 9 not audited" in text


def test_headline_numbers_have_thousands_separators() -> None:
    # The example: 1,204 of 1,312 ready, 71 blocked, 37 not audited.
    results: list[Any] = [all_reachable(host(f"ok-{i}"), TARGETS[:1]) for i in range(1204)]
    results += [
        AuditedHost(host(f"blk-{i}", ("dc2",)), (observe(TARGETS[0], Outcome.TIMEOUT),))
        for i in range(71)
    ]
    results += [UnauditedHost(host(f"na-{i}"), HostOutcome.UNREACHABLE) for i in range(37)]
    results += [UnauditedHost(host(f"sw-{i}"), HostOutcome.SKIPPED) for i in range(5)]
    run = AuditRun(RunInfo(run_id="r", started="s", targets=TARGETS[:1]), tuple(results))
    document = render(HtmlReporter(), run)
    text = flat(document)
    assert "US3 CDN: 1,204 of 1,312 hosts ready (91.8 %); 37 not audited; 5 skipped" in text
    assert "1,317 hosts · 1,275 audited · 37 not audited · 5 skipped" in text
    assert "71 hosts cannot reach US3 CDN" in text
    assert "71 of 71" in text  # dc2: every host of the group is blocked
    assert "1,204" in text and "1204" not in text.replace("ok-1204", "")


def test_blocked_hosts_grouped_by_cause_with_remediation(document: str) -> None:
    page = parse(document)
    text = flat(document)
    # One cause per URL x outcome x issuer/proxy, each with its fix and its hosts.
    assert (
        "tls_failure 1 host cannot reach US3 CDN https://cask.qg3.apps.qualys.com/status · "
        "TLS issuer: CN=Corp Interception CA, O=BlueCoat" in text
    )
    assert "exempt cask.qg3.apps.qualys.com from TLS inspection" in text
    assert "proxy: http://proxy.dc2.example.com:3128" in text
    assert "timeout 2 hosts cannot reach US3 CDN" in text
    assert f"blk-timeout, {FORMULA_NAME}" in text or f"{FORMULA_NAME}, blk-timeout" in text
    # The not-audited hosts are named apart, never as blocked.
    assert "9 hosts could not be audited (not counted as blocked)" in text
    items = [a for t, a in page.tags if t == "ul" and a.get("class") == "causes"]
    assert len(items) == 1


def test_blocked_hosts_grouped_by_inventory_group(document: str) -> None:
    text = flat(document)
    # dc2 holds blk-dns_failure, blk-timeout, blk-proxy_denied and blk-error (and six
    # not-audited hosts, counted in its size, never as blocked): one row per cause.
    assert re.search(
        r'<td rowspan="4"><b>dc2</b></td><td class="n" rowspan="4">4 of 10</td>', document
    )
    assert "allow cask.qg3.apps.qualys.com on the proxy (CONNECT to port 443)" in text


def test_causes_and_names_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_reporter, "CAUSE_GROUPS", 2)
    monkeypatch.setattr(html_reporter, "NAMES_SHOWN", 1)
    monkeypatch.setattr(html_reporter, "GROUP_ROWS", 1)
    text = flat(render(HtmlReporter(), sample_run()))
    assert "and 8 more causes" in text
    assert "and 1 more" in text  # the 2-host timeout cause lists one name
    assert "more groups with blocked hosts" in text


def test_history_sections_are_absent_without_extras(document: str) -> None:
    order = section_order(document)
    assert "changes" not in order and "trends" not in order
    assert 'id="gate"' not in document
    assert "polyline" not in document


def test_changes_since_the_last_run() -> None:
    evil = "<b onmouseover=alert(1)>db-9</b>"
    rows = [
        ChangeRow("web-02", TARGETS[0].url, "refused", "reachable", "fix"),
        ChangeRow(evil, TARGETS[0].url, "reachable", "timeout", "regression"),
        ChangeRow("web-01", TARGETS[1].url, "reachable", "proxy_denied", "regression"),
        ChangeRow("new-1", TARGETS[0].url, None, "reachable", "host_added"),
        ChangeRow("old-1", TARGETS[0].url, "timeout", None, "host_removed"),
        ChangeRow("x", "https://elsewhere.example.com/", "a", "b", "some_future_kind"),
        ChangeRow(
            "blk-tls",
            TARGETS[0].url,
            "tls_failure",
            "tls_failure",
            "changed",
            "TLS issuer CN=Old -> CN=New",
        ),
    ]
    extras = HtmlExtras(changes=tuple(rows), previous_run_id="run-2024-0000")
    document = render(HtmlReporter(extras), sample_run())
    text = flat(document)
    assert (
        "Changed since the last run run run-2024-0000 → run-2024-0001; 7 host × URL changes" in text
    )
    assert (
        "2 regression · 1 changed · 1 host_removed · 1 host_added · 1 fix · 1 some_future_kind"
        in text
    )
    assert (
        '<td>tls_failure</td><td>tls_failure<div class="muted">TLS issuer CN=Old -&gt; CN=New'
        in document
    )
    # Regressions first, then the rest in the order a change board acts on them.
    kinds = re.findall(r'<h3 class="chg-(\w+)">(\w+)', document)
    assert [k for _, k in kinds] == [
        "regression",
        "changed",
        "host_removed",
        "host_added",
        "fix",
        "some_future_kind",
    ]
    assert ("bad", "regression") in kinds and ("none", "some_future_kind") in kinds
    assert "not in that run" in text and "not in this run" in text
    assert evil in text  # as text only
    assert evil not in document
    assert "US3 platform https://qagpublic.qg3.apps.qualys.com/status" in text
    assert [a.get("id") for t, a in parse(document).tags if t == "section"][:3] == [
        "answer",
        "warnings",
        "changes",
    ]


def test_no_change_and_capped_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    nothing = render(HtmlReporter(HtmlExtras(changes=())), sample_run())
    assert "Nothing changed since the last run" in flat(nothing)
    monkeypatch.setattr(html_reporter, "CHANGE_ROWS", 2)
    many = tuple(
        ChangeRow(f"h-{i}", TARGETS[0].url, "reachable", "refused", "regression") for i in range(5)
    )
    text = flat(render(HtmlReporter(HtmlExtras(changes=many)), sample_run()))
    assert "and 3 more (regression)." in text


def test_readiness_trend_is_inline_svg() -> None:
    points = (
        TrendPoint("run-1", "2024-04-29T10:00:00Z", 1_100, 1_300),
        TrendPoint("run-empty", "2024-04-30T10:00:00Z", 0, 0),  # nothing in scope: no point
        TrendPoint("run-2", "2024-05-01T10:00:00Z", 1_204, 1_312),
    )
    extras = HtmlExtras(
        trends={TARGETS[0].url: points, TARGETS[1].url: (points[0],), TARGETS[2].url: ()}
    )
    document = render(HtmlReporter(extras), sample_run())
    page = parse(document)
    svgs = [a for t, a in page.tags if t == "svg" and a.get("class") == "trend"]
    assert len(svgs) == 2  # a URL without points has no chart
    assert "Readiness of US3 CDN over 2 runs: from 84.6 % to 91.8 %" in (
        svgs[0].get("aria-label") or ""
    )
    lines = [a for t, a in page.tags if t == "polyline"]
    assert len(lines) == 1  # one run alone is a dot, not a line
    xs = [float(p.split(",")[0]) for p in (lines[0].get("points") or "").split()]
    ys = [float(p.split(",")[1]) for p in (lines[0].get("points") or "").split()]
    assert len(xs) == 2 and xs[0] < xs[1]
    assert ys[1] < ys[0]  # readiness went up: the line rises
    text = flat(document)
    assert "run-2 · 2024-05-01T10:00:00Z: 1,204 of 1,312 ready (91.8 %)" in text
    assert "run-empty" not in text
    assert "84.6 % (1,100 of 1,300, run run-1) → 91.8 % (1,204 of 1,312, run run-2)" in text
    # The axis starts under the lowest figure (70 % here), labelled, so small moves show.
    assert re.findall(r'text-anchor="end">(\d+) %</text>', document)[:4] == [
        "70",
        "80",
        "90",
        "100",
    ]
    assert "1 run: 84.6 % (1,100 of 1,300, run run-1)" in text  # one run: no arrow


def test_a_low_readiness_trend_starts_at_zero() -> None:
    low = (TrendPoint("a", "t1", 10, 100), TrendPoint("b", "t2", 52, 100))
    document = render(HtmlReporter(HtmlExtras(trends={TARGETS[0].url: low})), sample_run())
    assert re.findall(r'text-anchor="end">(\d+) %</text>', document) == [
        "0",
        "25",
        "50",
        "75",
        "100",
    ]


def test_gate_line() -> None:
    line = "gate 95 %: FAILED — US3 CDN 91.8 % (1,204 of 1,312 hosts)"
    failed = render(HtmlReporter(HtmlExtras(gate_line=line, gate_passed=False)), sample_run())
    assert f'<p class="gate lvl-bad" id="gate">{line}</p>' in failed
    passed = HtmlReporter(HtmlExtras(gate_line="gate 10 %: passed", gate_passed=True))
    assert '<p class="gate lvl-good" id="gate">gate 10 %: passed</p>' in render(
        passed, sample_run()
    )
    neutral = render(HtmlReporter(HtmlExtras(gate_line="<gate>")), sample_run())
    assert '<p class="gate lvl-none" id="gate">&lt;gate&gt;</p>' in neutral


# --- print -----------------------------------------------------------------------------------


def test_css_string_leaves_only_letters_digits_and_escapes() -> None:
    assert str(css_string('r"1 </style>\\')) == (
        '"r\\000022' + '1 \\00003c\\00002fstyle\\00003e\\00005c"'
    )
    assert str(css_string("run 42")) == '"run 42"'


def test_print_footer_carries_run_id_and_time_and_cannot_break_the_style() -> None:
    hostile = '"}</style><script>alert(1)</script>'
    run = sample_run()
    run = AuditRun(dataclasses.replace(run.info, run_id=hostile), run.results)
    document = render(HtmlReporter(), run)
    page = parse(document)
    assert len(page.styles) == 1 and len(page.scripts) == 2
    style = page.styles[0]
    assert "<" not in style
    footer = re.search(r"@bottom-left\{content:(.*?);", style)
    assert footer is not None
    assert footer.group(1).startswith('"run " "\\000022\\00007d\\00003c')
    assert 'started " "2024\\00002d05\\00002d01T10\\00003a00\\00003a00Z"' in footer.group(1)
    assert "counter(page)" in style and "counter(pages)" in style
    print_rules = style[style.index("@media print") :]
    assert ".controls,.pager button,nav.toc" in print_rules
    assert "break-inside:avoid" in print_rules


def test_the_script_writes_text_only() -> None:
    # The browser tests show what the tables display; this pins how: never as markup.
    code = next(c for a, c in parse(render(HtmlReporter(), sample_run())).scripts if not a)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code
    assert "new Function" not in code and 'setAttribute("on' not in code
