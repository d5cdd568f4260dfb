"""report.html in Debian's headless Chromium: it renders cleanly, loads nothing, its host
tables filter, sort and page, a 10,000-host report works, and it prints sanely on A4.

Each assertion is on what the page shows after an action (the rows of the table body and
its status line), waited for by event, never by sleeping.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

import pytest

from auditor.models import AuditedHost, AuditRun, RunInfo, UnauditedHost
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters.base import render
from auditor.reporters.html import ChangeRow, HtmlExtras, HtmlReporter, TrendPoint
from tests.browser.chromium import pdf_pages, pdf_text_pages
from tests.browser.conftest import PAGE_TIMEOUT_MS, Tab, expect, in_ci
from tests.reporters.fleet import (
    FORMULA_NAME,
    HOSTILE_NAME,
    TARGETS,
    all_reachable,
    big_run,
    host,
    sample_run,
)

AUDITED = "#audited-table"
UNAUDITED = "#unaudited-table"


def write(tmp_path: Path, run: AuditRun, extras: HtmlExtras | None = None) -> Path:
    path = tmp_path / "report.html"
    path.write_text(render(HtmlReporter(extras), run), encoding="utf-8")
    return path


def history_extras() -> HtmlExtras:
    return HtmlExtras(
        changes=(
            ChangeRow("blk-timeout", TARGETS[0].url, "reachable", "timeout", "regression"),
            ChangeRow("web-01", TARGETS[0].url, "refused", "reachable", "fix"),
        ),
        previous_run_id="run-2024-0000",
        trends={
            TARGETS[0].url: (
                TrendPoint("run-2024-0000", "2024-04-30T10:00:00Z", 5, 21),
                TrendPoint("run-2024-0001", "2024-05-01T10:00:00Z", 4, 22),
            )
        },
        gate_line="gate 95 %: FAILED — US3 CDN 18.2 % (4 of 22 hosts)",
        gate_passed=False,
    )


def cells(tab: Tab, table: str) -> list[list[str]]:
    """The text of every cell of the table body, as the page shows it now."""
    rows: list[list[str]] = tab.page.eval_on_selector_all(
        f"{table} tbody tr", "trs => trs.map(tr => Array.from(tr.cells, td => td.textContent))"
    )
    return rows


def names(tab: Tab, table: str = AUDITED) -> list[str]:
    return [row[0] for row in cells(tab, table)]


def status(tab: Tab, table: str, text: str) -> None:
    """Wait until the table's status line reads `text` (the draw after an action)."""
    expect(tab.page.locator(f"{table} .pager [data-role=status]").first).to_have_text(
        text, timeout=PAGE_TIMEOUT_MS
    )


def choose(tab: Tab, table: str, control: str, value: str) -> None:
    tab.page.select_option(f"{table} select[data-f={control}]", value=value)


def audited(run: AuditRun) -> list[AuditedHost]:
    return [r for r in run.results if isinstance(r, AuditedHost)]


# --- renders cleanly, loads nothing -----------------------------------------------------------


def test_renders_without_console_errors_and_requests_only_itself(tab: Tab, tmp_path: Path) -> None:
    path = write(tmp_path, sample_run(interrupted=True), history_extras())
    tab.open(path)
    # Every section drew, including the history's (inline SVG trend, changes, gate line).
    for section in ("answer", "blocked", "changes", "trends", "audited", "not-audited", "run"):
        expect(tab.page.locator(f"section#{section}")).to_be_visible()
    expect(tab.page.locator("#gate")).to_have_text(re.compile("gate 95 %: FAILED"))
    assert tab.page.locator("#trends svg polyline").count() == 1
    # The hostile host name is text in a cell: no element was injected, no dialog opened.
    assert HOSTILE_NAME in names(tab)
    assert tab.page.locator("main img, main iframe, main script").count() == 0
    assert tab.recorded.dialogs == []
    assert tab.recorded.errors == []
    assert tab.recorded.console_errors == []
    assert tab.recorded.requests == [path.as_uri()]


def test_recorders_catch_a_request_and_a_policy_violation(tab: Tab, tmp_path: Path) -> None:
    # The checks above must be able to fail: a planted image is refused by the page's own
    # Content-Security-Policy (a console error), and without that policy it is requested.
    document = render(HtmlReporter(), sample_run())
    planted = '<img id="planted" src="http://127.0.0.1:9/pixel.png" alt="">'
    with_csp = tmp_path / "with-csp.html"
    with_csp.write_text(document.replace("<main>", planted + "<main>", 1), encoding="utf-8")
    with tab.page.expect_console_message(
        predicate=lambda m: "Content Security Policy" in m.text, timeout=PAGE_TIMEOUT_MS
    ):
        tab.open(with_csp)
    assert any("Content Security Policy" in text for text in tab.recorded.console_errors)
    # The attempt is recorded, and the policy stopped it before it left the browser.
    assert tab.recorded.requests == [with_csp.as_uri(), "http://127.0.0.1:9/pixel.png"]
    assert tab.recorded.failed == [("http://127.0.0.1:9/pixel.png", "csp")]

    without_csp = tmp_path / "without-csp.html"
    stripped = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", document)
    assert stripped != document
    without_csp.write_text(stripped.replace("<main>", planted + "<main>", 1), encoding="utf-8")
    tab.recorded.requests.clear()
    tab.recorded.failed.clear()
    with tab.page.expect_event(
        "requestfailed", predicate=lambda r: "pixel.png" in r.url, timeout=PAGE_TIMEOUT_MS
    ):
        tab.open(without_csp)
    assert tab.recorded.requests == [without_csp.as_uri(), "http://127.0.0.1:9/pixel.png"]
    # Without the policy the browser really tried to connect (nothing listens there).
    assert tab.recorded.failed[0][1] not in ("csp", "")


def test_hostile_text_is_shown_as_text(tab: Tab, tmp_path: Path) -> None:
    tab.open(write(tmp_path, sample_run()))
    rows = cells(tab, AUDITED)
    hostile = rows[names(tab).index(HOSTILE_NAME)]
    assert hostile[4:7] == ["tls_failure", "http_error 500", "refused"]
    assert hostile[7] == "3"
    assert "TLS issuer: " + HOSTILE_NAME in hostile[8]
    assert "exempt cask.qg3.apps.qualys.com from TLS inspection" in hostile[8]
    assert "Fix: " not in hostile[8]  # the prefix is CSS, not text
    tab.page.fill(f"{UNAUDITED} input[data-f=q]", "hostile")
    status(tab, UNAUDITED, "1–1 of 1 (filtered from 9) · page 1 of 1")
    (row,) = cells(tab, UNAUDITED)
    assert len(row) == 8 and row[5] == "error"
    assert "</script><script>alert('d')</script>" in row[6]
    assert tab.page.locator("main img, main iframe, main script, main b[onmouseover]").count() == 0
    assert tab.recorded.dialogs == [] and tab.recorded.errors == []


# --- filtering, sorting, paging ------------------------------------------------------------


def test_filter_by_outcome_group_and_text(tab: Tab, tmp_path: Path) -> None:
    run = sample_run()
    hosts = audited(run)
    blocked = {
        r.host.name
        for r in hosts
        if any(o.outcome is not Outcome.REACHABLE for o in r.observations)
    }
    tab.open(write(tmp_path, run))

    # Default view: the blocked hosts only.
    status(
        tab,
        AUDITED,
        f"1–{len(blocked)} of {len(blocked)} (filtered from {len(hosts)}) · page 1 of 1",
    )
    assert set(names(tab)) == blocked

    choose(tab, AUDITED, "outcome", "")
    status(tab, AUDITED, f"1–{len(hosts)} of {len(hosts)} · page 1 of 1")
    assert set(names(tab)) == {r.host.name for r in hosts}

    choose(tab, AUDITED, "outcome", "ok")
    ok = {r.host.name for r in hosts} - blocked
    status(tab, AUDITED, f"1–{len(ok)} of {len(ok)} (filtered from {len(hosts)}) · page 1 of 1")
    assert set(names(tab)) == ok == {"web-01", "web-02", "win-01", "lonely"}

    # One outcome, chosen by its label as a user would.
    tab.page.select_option(f"{AUDITED} select[data-f=outcome]", label="timeout")
    status(tab, AUDITED, "1–2 of 2 (filtered from 13) · page 1 of 1")
    assert set(names(tab)) == {"blk-timeout", FORMULA_NAME}
    row = cells(tab, AUDITED)[names(tab).index("blk-timeout")]
    assert row[4] == "timeout"
    assert "allow TCP 443 to cask.qg3.apps.qualys.com on the egress firewall" in row[-1]

    # Blocked on one URL only: the second URL fails on the hostile host alone.
    choose(tab, AUDITED, "outcome", "blocked")
    choose(tab, AUDITED, "url", "1")
    status(tab, AUDITED, "1–1 of 1 (filtered from 13) · page 1 of 1")
    assert names(tab) == [HOSTILE_NAME]
    choose(tab, AUDITED, "url", "")

    # By inventory group (any outcome).
    choose(tab, AUDITED, "outcome", "")
    tab.page.select_option(f"{AUDITED} select[data-f=group]", label="dc2")
    dc2 = {r.host.name for r in hosts if "dc2" in r.host.groups}
    status(tab, AUDITED, f"1–{len(dc2)} of {len(dc2)} (filtered from 13) · page 1 of 1")
    assert set(names(tab)) == dc2 and len(dc2) == 4

    # Text search over details and evidence: the TLS issuer names the interception product.
    tab.page.select_option(f"{AUDITED} select[data-f=group]", value="")
    tab.page.fill(f"{AUDITED} input[data-f=q]", "bluecoat")
    status(tab, AUDITED, "1–1 of 1 (filtered from 13) · page 1 of 1")
    assert names(tab) == ["blk-tls_failure"]
    tab.page.fill(f"{AUDITED} input[data-f=q]", "no such host anywhere")
    status(tab, AUDITED, "0 of 0 (filtered from 13) · page 1 of 1")
    assert cells(tab, AUDITED) == [["No host matches these filters."]]

    # The not-audited table: by reason, and by text.
    na = [r for r in run.results if isinstance(r, UnauditedHost)]
    status(tab, UNAUDITED, f"1–{len(na)} of {len(na)} · page 1 of 1")
    tab.page.select_option(f"{UNAUDITED} select[data-f=reason]", label="unreachable")
    status(tab, UNAUDITED, f"1–1 of 1 (filtered from {len(na)}) · page 1 of 1")
    assert names(tab, UNAUDITED) == ["na-unreachable"]
    assert HostOutcome.UNREACHABLE.value in cells(tab, UNAUDITED)[0]


def test_sort_and_page(tab: Tab, tmp_path: Path) -> None:
    run = AuditRun(
        RunInfo(run_id="r", started="s", targets=TARGETS),
        tuple(all_reachable(host(f"h-{i}")) for i in range(120)),
    )
    tab.open(write(tmp_path, run))
    status(tab, AUDITED, "1–100 of 120 · page 1 of 2")
    assert names(tab)[:3] == ["h-0", "h-1", "h-2"]  # natural order, not h-0, h-1, h-10
    assert len(names(tab)) == 100

    tab.page.locator(f"{AUDITED} .pager button[data-p=next]").first.click()
    status(tab, AUDITED, "101–120 of 120 · page 2 of 2")
    assert names(tab) == [f"h-{i}" for i in range(100, 120)]

    choose(tab, AUDITED, "size", "50")
    status(tab, AUDITED, "1–50 of 120 · page 1 of 3")
    tab.page.locator(f"{AUDITED} .pager button[data-p=last]").first.click()
    status(tab, AUDITED, "101–120 of 120 · page 3 of 3")
    tab.page.locator(f"{AUDITED} .pager button[data-p=prev]").first.click()
    status(tab, AUDITED, "51–100 of 120 · page 2 of 3")

    # Sorting by host name again turns the order round and goes back to page 1.
    host_head = tab.page.locator(f"{AUDITED} th[data-col='0']")
    host_head.locator("button").click()
    status(tab, AUDITED, "1–50 of 120 · page 1 of 3")
    expect(host_head).to_have_attribute("aria-sort", "descending")
    assert names(tab)[:3] == ["h-119", "h-118", "h-117"]


def test_sort_by_failing_count(tab: Tab, tmp_path: Path) -> None:
    run = sample_run()
    tab.open(write(tmp_path, run))
    choose(tab, AUDITED, "outcome", "")
    status(tab, AUDITED, "1–13 of 13 · page 1 of 1")
    failing_head = tab.page.locator(f"{AUDITED} th[data-col='{4 + len(TARGETS)}']")
    failing_head.locator("button").click()
    expect(failing_head).to_have_attribute("aria-sort", "descending")
    rows = cells(tab, AUDITED)
    counts = [int(row[4 + len(TARGETS)]) for row in rows]
    assert counts == sorted(counts, reverse=True)
    assert rows[0][0] == HOSTILE_NAME and counts[0] == 3
    # A URL column sorts failures first (outcomes in taxonomy order, reachable last).
    url_head = tab.page.locator(f"{AUDITED} th[data-col='4']")
    url_head.locator("button").click()
    expect(url_head).to_have_attribute("aria-sort", "descending")
    first_url = [row[4] for row in cells(tab, AUDITED)]
    assert first_url[0] == "error"
    assert first_url[-4:] == ["reachable 200"] * 4


# --- a large report ---------------------------------------------------------------------------


def test_ten_thousand_hosts_open_and_filter(tab: Tab, tmp_path: Path) -> None:
    run = big_run(10_000)
    hosts = audited(run)
    path = write(tmp_path, run)
    tab.open(path)
    choose(tab, AUDITED, "outcome", "")
    status(tab, AUDITED, f"1–100 of {len(hosts):,} · page 1 of {-(-len(hosts) // 100)}")
    wanted = "host-09999.site-39.corp.example.com"
    tab.page.fill(f"{AUDITED} input[data-f=q]", "host-09999.")
    status(tab, AUDITED, f"1–1 of 1 (filtered from {len(hosts):,}) · page 1 of 1")
    assert wanted in {r.host.name for r in hosts}
    assert names(tab) == [wanted]
    tab.page.fill(f"{AUDITED} input[data-f=q]", "")
    tab.page.select_option(f"{AUDITED} select[data-f=outcome]", label="timeout")
    timeouts = [r for r in hosts if any(o.outcome is Outcome.TIMEOUT for o in r.observations)]
    status(
        tab,
        AUDITED,
        f"1–{min(100, len(timeouts))} of {len(timeouts):,} (filtered from {len(hosts):,}) · "
        f"page 1 of {-(-len(timeouts) // 100)}",
    )
    assert all("timeout" in row for row in cells(tab, AUDITED))
    assert tab.recorded.errors == [] and tab.recorded.console_errors == []
    assert tab.recorded.requests == [path.as_uri()]


# --- print and screenshot ---------------------------------------------------------------------


def test_print_stylesheet_applies(tab: Tab, tmp_path: Path, artifacts: Path) -> None:
    base = big_run(50)
    run = AuditRun(dataclasses.replace(base.info, run_id="print-run-0042"), base.results)
    tab.open(write(tmp_path, run, history_extras()))
    tab.page.emulate_media(media="print")
    # No interactive controls on paper; table rows are never cut across pages.
    for selector in (f"{AUDITED} .controls", f"{AUDITED} input[data-f=q]", "nav.toc"):
        expect(tab.page.locator(selector).first).to_be_hidden()
    expect(tab.page.locator(f"{AUDITED} .pager button").first).to_be_hidden()
    inside = tab.page.eval_on_selector(
        f"{AUDITED} tbody tr", "tr => getComputedStyle(tr).breakInside"
    )
    assert inside == "avoid"

    pdf = tab.page.pdf(prefer_css_page_size=True, print_background=True)
    (artifacts / "report-50-hosts.pdf").write_bytes(pdf)
    pages = pdf_pages(pdf)
    assert 2 <= pages <= 12, pages
    text = pdf_text_pages(pdf)
    if text is None:
        if in_ci():
            pytest.fail("CI=true and pdftotext (poppler-utils) is not installed")
        return
    assert len(text) == pages
    for number, page_text in enumerate(text, start=1):
        flat = " ".join(page_text.split())
        # The footer closes every page: run id, start time, page n of N.
        footer = f"run print-run-0042 · started 2024-05-01T10:00:00Z page {number} of {pages}"
        assert flat.endswith(footer), (number, flat[-300:])
        assert "« First" not in flat and "Next ›" not in flat
    first = " ".join(text[0].split())
    assert "US3 CDN: 40 of 50 hosts ready (80 %); 4 not audited" in first
    assert "gate 95 %: FAILED" in first
    everything = " ".join(" ".join(text).split())
    assert "Readiness over the last runs" in everything  # the trend prints too
    assert "Changed since the last run" in everything


def test_first_screen_screenshot(tab: Tab, tmp_path: Path, artifacts: Path) -> None:
    tab.open(write(tmp_path, sample_run(interrupted=True), history_extras()))
    # The first screen opens with the answer: every URL's headline is above the fold.
    answers = tab.page.locator("#answer ul.answers li")
    assert answers.count() == len(TARGETS)
    box = answers.last.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 900
    expect(answers.first).to_contain_text("US3 CDN: 4 of 22 hosts ready (18.2 %); 9 not audited")
    shot = artifacts / "first-screen.png"
    shot.unlink(missing_ok=True)
    tab.page.screenshot(path=str(shot), full_page=False)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1366, 900)
    assert len(data) > 20_000  # a drawn page, not a blank one
