"""report.html: self-contained, autoescaped, and the host tables really work."""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from auditor.models import AuditedHost, AuditRun, RunInfo
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters import html as html_reporter
from auditor.reporters.html import HtmlReporter, environment
from tests.reporters.fleet import (
    FORMULA_NAME,
    HOSTILE_DETAIL,
    HOSTILE_NAME,
    TARGETS,
    all_reachable,
    blocked_on_first,
    host,
    sample_run,
)

SHIM = Path(__file__).with_name("dom_shim.js")


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
    return HtmlReporter().render(sample_run(interrupted=True))


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
    "button noscript dl dt dd footer script".split()
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
        assert "<!DOCTYPE html>" in HtmlReporter().render(sample_run())
    finally:
        environment.cache_clear()


def test_edge_runs() -> None:
    empty = HtmlReporter().render(AuditRun(RunInfo(run_id="r", started="s", options={}), ()))
    assert "No target URLs were audited." in empty
    only_ok = HtmlReporter().render(
        AuditRun(
            RunInfo(run_id="r", started="s", targets=TARGETS),
            (all_reachable(host("a")),),
        )
    )
    assert "100 %" in only_ok
    assert "Every host was audited." in only_ok
    assert 'id="unaudited-table"' not in only_ok


def test_noscript_fallback_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_reporter, "NOSCRIPT_ROWS", 2)
    document = HtmlReporter().render(sample_run())
    assert "and 9 more blocked verdicts (see report.csv)." in document
    assert "and 7 more (see report.csv)." in document


# --- the page's script, run under node with a minimal DOM ---------------------------------


def run_script(document: str, tmp_path: Path, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed")
    page = parse(document)
    roots: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for tag, attrs in page.tags:
        ident = attrs.get("id")
        if tag == "div" and ident in ("audited-table", "unaudited-table"):
            current = str(ident)
            roots[current] = {"inputs": [], "cols": []}
            continue
        if current is None:
            continue
        if tag in ("input", "select") and attrs.get("data-f"):
            roots[current]["inputs"].append([attrs["data-f"], ""])
        elif tag == "option" and "selected" in attrs:
            roots[current]["inputs"][-1][1] = attrs.get("value") or ""
        elif tag == "th" and attrs.get("data-col"):
            roots[current]["cols"].append(int(attrs["data-col"] or 0))
        elif tag == "section":
            current = None
    spec = {
        "script": next(c for a, c in page.scripts if not a),
        "data": next(c for a, c in page.scripts if a.get("type") == "application/json"),
        "roots": roots,
        "steps": steps,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = subprocess.run(
        [node, str(SHIM), str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    snapshots: list[dict[str, Any]] = json.loads(out.stdout)
    return snapshots


def test_script_renders_tables(document: str, tmp_path: Path) -> None:
    snaps = run_script(
        document,
        tmp_path,
        [
            {"table": "audited-table", "set": {"outcome": ""}, "fire": "outcome"},
            {"table": "audited-table", "set": {"q": "timeout"}, "fire": "q"},
            {"table": "audited-table", "set": {"q": "", "outcome": "ok"}, "fire": "outcome"},
            {"table": "audited-table", "set": {"outcome": "blocked", "url": "1"}, "fire": "url"},
            {"table": "audited-table", "set": {"outcome": "", "url": ""}, "fire": "url"},
            {"table": "audited-table", "head": 4},
            {"table": "audited-table", "set": {"outcome": "o3"}, "fire": "outcome"},
            {"table": "unaudited-table", "set": {"reason": "0"}, "fire": "reason"},
            {"table": "unaudited-table", "set": {"reason": "", "q": "hostile"}, "fire": "q"},
        ],
    )
    audited, unaudited = snaps[0], snaps[1]
    # Default view: the 9 blocked hosts out of 13 audited.
    assert audited["hidden"] is False
    assert audited["status"].startswith("1–9 of 9 (filtered from 13)")
    names = [row[0] for row in audited["rows"]]
    assert HOSTILE_NAME in names  # shown as text, via textContent
    hostile = audited["rows"][names.index(HOSTILE_NAME)]
    assert hostile[4:7] == ["tls_failure", "http_error 500", "refused"]
    assert hostile[7] == "3"
    assert "TLS issuer: " + HOSTILE_NAME in hostile[8]
    assert "Fix: " not in hostile[8]  # the prefix is CSS, not text
    assert "exempt cask.qg3.apps.qualys.com from TLS inspection" in hostile[8]
    assert unaudited["status"].startswith("1–9 of 9")
    assert all(len(row) == 8 for row in unaudited["rows"])

    everything, search, ok, on_url, _reset, sorted_desc, by_outcome, reason, query = snaps[2:]
    assert everything["status"].startswith("1–13 of 13")
    assert {row[0] for row in search["rows"]} == {"blk-timeout", FORMULA_NAME}
    assert {row[0] for row in ok["rows"]} == {"web-01", "web-02", "win-01", "lonely"}
    assert [row[0] for row in on_url["rows"]] == [HOSTILE_NAME]
    assert sorted_desc["sorted"][4] == "descending"
    assert sorted_desc["rows"][0][4] != "reachable 200"
    assert {row[0] for row in by_outcome["rows"]} == {"blk-timeout", FORMULA_NAME}
    assert [row[0] for row in reason["rows"]] == ["na-unreachable"]
    assert [row[5] for row in query["rows"]] == ["error"]
    assert "</script><script>alert('d')</script>" in query["rows"][0][6]


def test_script_paginates(tmp_path: Path) -> None:
    run = AuditRun(
        RunInfo(run_id="r", started="s", targets=TARGETS),
        tuple(all_reachable(host(f"h-{i}")) for i in range(120)),
    )
    snaps = run_script(
        HtmlReporter().render(run),
        tmp_path,
        [
            {"table": "audited-table", "page": "next"},
            {"table": "audited-table", "page": "next"},
            {"table": "audited-table", "set": {"size": "50"}, "fire": "size"},
            {"table": "audited-table", "page": "last"},
        ],
    )
    first, second, clamped, small, last = snaps
    assert first["status"] == "1–100 of 120 · page 1 of 2"
    assert [r[0] for r in first["rows"][:3]] == ["h-0", "h-1", "h-2"]  # natural order
    assert second["status"] == "101–120 of 120 · page 2 of 2"
    assert clamped["status"] == second["status"]
    assert small["status"] == "1–50 of 120 · page 1 of 3"
    assert last["status"] == "101–120 of 120 · page 3 of 3"


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
    document = HtmlReporter().render(run)
    assert not BIDI_AND_ZERO_WIDTH.search(document)
    page = parse(document)
    decoded = json.dumps(embedded(page), ensure_ascii=False)
    assert not BIDI_AND_ZERO_WIDTH.search(decoded)
    assert "invoicetxt.exe web01 x" in decoded
    assert "invoicetxt.exe web01 x" in "".join(page.text)
