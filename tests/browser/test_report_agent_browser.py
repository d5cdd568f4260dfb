"""report.html's host table and the Qualys agent, in Debian's headless Chromium: each audited
host shows its agent's version and verdict, the table filters by them together with the
other filters (exactly the right rows show), and a hostile version string is only text.

Each assertion is on what the page shows after an action (the rows of the table body and
its status line), waited for by event, never by sleeping.
"""

from __future__ import annotations

from pathlib import Path

from auditor.models import (
    AgentFacts,
    AuditedHost,
    AuditRun,
    Platform,
    RunInfo,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome, Outcome
from auditor.reporters.html import HtmlReporter
from tests.browser.conftest import Tab, expect
from tests.reporters.fleet import TARGETS, host, observe

AUDITED = "#audited-table"
HOSTILE_VERSION = "<img src=x onerror=\"alert('agent')\">6.4"
# Columns of the audited table when the run has agents: host, address, groups, platform,
# agent version, agent verdict, one per URL, failing, detail.
VERSION, VERDICT = 4, 5


def _audited(
    name: str,
    agent: AgentFacts | None,
    *,
    groups: tuple[str, ...] = ("dc1",),
    platform: Platform = Platform.LINUX,
    cdn: Outcome = Outcome.REACHABLE,
) -> AuditedHost:
    outcomes = (cdn, Outcome.REACHABLE, Outcome.REACHABLE)
    return AuditedHost(
        host=host(name, groups, platform),
        observations=tuple(observe(t, o) for t, o in zip(TARGETS, outcomes, strict=True)),
        agent=agent,
    )


def _agent(version: str) -> AgentFacts:
    return AgentFacts(installed=True, version=version, source="dpkg")


def agent_run() -> AuditRun:
    results = (
        _audited("ready-a", _agent("6.4.1.2")),
        _audited("ready-b", _agent("7.0.0.3"), groups=("dc2",)),
        _audited("blocked-a", _agent("6.5.0.1"), cdn=Outcome.TIMEOUT),
        _audited("old-a", _agent("6.3.0.9")),
        _audited("old-b", _agent("5.1.0.2"), groups=("dc2",)),
        _audited("win-old", _agent("5.6.1.8"), groups=("dc2",), platform=Platform.WINDOWS),
        _audited("none-a", AgentFacts(installed=False)),
        _audited("unread-a", AgentFacts(installed=None, notes=("dpkg-query: exit 2",))),
        _audited("hostile-a", _agent(HOSTILE_VERSION), groups=("dc2",)),
        UnauditedHost(host("down-a", ("dc1",)), HostOutcome.UNREACHABLE, "no route"),
    )
    return AuditRun(RunInfo(run_id="agents", started="s", targets=TARGETS), results)


def write(tmp_path: Path, run: AuditRun) -> Path:
    path = tmp_path / "report.html"
    path.write_text(HtmlReporter().render(run), encoding="utf-8")
    return path


def cells(tab: Tab) -> list[list[str]]:
    rows: list[list[str]] = tab.page.eval_on_selector_all(
        f"{AUDITED} tbody tr", "trs => trs.map(tr => Array.from(tr.cells, td => td.textContent))"
    )
    return rows


def shown(tab: Tab) -> set[str]:
    return {row[0] for row in cells(tab)}


def verdicts(tab: Tab) -> list[str]:
    """The verdict badge of each row shown, in order."""
    found: list[str] = tab.page.eval_on_selector_all(
        f"{AUDITED} tbody td.agent .badge", "bs => bs.map(b => b.textContent)"
    )
    return found


def status(tab: Tab, text: str) -> None:
    expect(tab.page.locator(f"{AUDITED} .pager [data-role=status]").first).to_have_text(text)


def verdict(tab: Tab, label: str) -> None:
    tab.page.select_option(f"{AUDITED} select[data-f=agent]", label=label)


def test_the_host_table_shows_and_filters_by_agent_verdict(
    tab: Tab, tmp_path: Path, artifacts: Path
) -> None:
    path = write(tmp_path, agent_run())
    tab.open(path)
    heads = tab.page.eval_on_selector_all(f"{AUDITED} thead th", "ths => ths.map(t => t.innerText)")
    assert heads[VERSION : VERDICT + 1] == ["Agent version", "Agent verdict"]
    tab.page.select_option(f"{AUDITED} select[data-f=outcome]", value="")
    status(tab, "1–9 of 9 · page 1 of 1")
    rows = {row[0]: row for row in cells(tab)}
    assert (rows["ready-a"][VERSION], rows["ready-a"][VERDICT]) == ("6.4.1.2", "cdn_ready")
    assert rows["old-b"][VERSION : VERDICT + 1] == [
        "5.1.0.2",
        "too_oldagent 5.1.0.2 predates the CDN (6.4+): it always uses the platform",
    ]
    assert rows["none-a"][VERSION : VERDICT + 1] == ["", "no_agent"]
    # A verdict that needs its reason shows it under the badge.
    assert rows["unread-a"][VERDICT] == (
        "unknowncould not tell whether the agent is installed: dpkg-query: exit 2"
    )

    # Each verdict shows exactly its hosts.
    expected = {
        "agent cdn_ready": {"ready-a", "ready-b"},
        "agent cdn_blocked": {"blocked-a"},
        "agent too_old": {"old-a", "old-b", "win-old"},
        "agent no_agent": {"none-a"},
        "agent unknown": {"unread-a", "hostile-a"},
    }
    for label, names in expected.items():
        verdict(tab, label)
        status(tab, f"1–{len(names)} of {len(names)} (filtered from 9) · page 1 of 1")
        assert shown(tab) == names, label
        assert set(verdicts(tab)) == {label.removeprefix("agent ")}

    # Combined with the other filters: too old on Windows; too old in dc2; blocked URL.
    verdict(tab, "agent too_old")
    tab.page.select_option(f"{AUDITED} select[data-f=platform]", value="windows")
    status(tab, "1–1 of 1 (filtered from 9) · page 1 of 1")
    assert shown(tab) == {"win-old"}
    tab.page.locator(AUDITED).screenshot(path=str(artifacts / "agent-filter-too-old-windows.png"))
    tab.page.select_option(f"{AUDITED} select[data-f=platform]", value="")
    tab.page.select_option(f"{AUDITED} select[data-f=group]", label="dc2")
    status(tab, "1–2 of 2 (filtered from 9) · page 1 of 1")
    assert shown(tab) == {"old-b", "win-old"}
    tab.page.select_option(f"{AUDITED} select[data-f=group]", value="")
    verdict(tab, "any agent verdict")
    tab.page.select_option(f"{AUDITED} select[data-f=outcome]", value="blocked")
    status(tab, "1–1 of 1 (filtered from 9) · page 1 of 1")
    assert shown(tab) == {"blocked-a"}
    verdict(tab, "agent cdn_ready")
    status(tab, "0 of 0 (filtered from 9) · page 1 of 1")
    tab.page.select_option(f"{AUDITED} select[data-f=outcome]", value="")
    verdict(tab, "any agent verdict")

    # The version box matches from the start of the version: "6." finds 6.x, not 7.0 or 5.x.
    tab.page.fill(f"{AUDITED} input[data-f=av]", "6.")
    status(tab, "1–3 of 3 (filtered from 9) · page 1 of 1")
    assert shown(tab) == {"ready-a", "blocked-a", "old-a"}
    tab.page.fill(f"{AUDITED} input[data-f=av]", "5")
    status(tab, "1–2 of 2 (filtered from 9) · page 1 of 1")
    assert shown(tab) == {"old-b", "win-old"}
    tab.page.fill(f"{AUDITED} input[data-f=av]", "")
    # The text search knows the verdict too.
    tab.page.fill(f"{AUDITED} input[data-f=q]", "cdn_blocked")
    status(tab, "1–1 of 1 (filtered from 9) · page 1 of 1")
    assert shown(tab) == {"blocked-a"}
    tab.page.fill(f"{AUDITED} input[data-f=q]", "")
    status(tab, "1–9 of 9 · page 1 of 1")

    # Sorting by verdict groups them in the verdict order (ready first).
    tab.page.locator(f"{AUDITED} th[data-col='{VERDICT}'] button").click()
    expect(tab.page.locator(f"{AUDITED} th[data-col='{VERDICT}']")).to_have_attribute(
        "aria-sort", "ascending"
    )
    assert verdicts(tab) == [
        "cdn_ready",
        "cdn_ready",
        "cdn_blocked",
        *["too_old"] * 3,
        "no_agent",
        "unknown",
        "unknown",
    ]

    assert tab.recorded.errors == [] and tab.recorded.console_errors == []
    assert tab.recorded.requests == [path.as_uri()]


def test_a_hostile_agent_version_is_shown_as_text(tab: Tab, tmp_path: Path) -> None:
    tab.open(write(tmp_path, agent_run()))
    tab.page.select_option(f"{AUDITED} select[data-f=outcome]", value="")
    verdict(tab, "agent unknown")
    status(tab, "1–2 of 2 (filtered from 9) · page 1 of 1")
    row = next(r for r in cells(tab) if r[0] == "hostile-a")
    assert row[VERSION] == HOSTILE_VERSION
    assert row[VERDICT] == f"unknownagent version {HOSTILE_VERSION} is not readable"
    badge = tab.page.locator(f"{AUDITED} tbody tr", has_text="hostile-a").locator("td.agent .badge")
    title = badge.get_attribute("title")
    assert HOSTILE_VERSION in (title or "")
    # Typed into the version box, the markup is matched as text.
    tab.page.fill(f"{AUDITED} input[data-f=av]", "<img src=x")
    status(tab, "1–1 of 1 (filtered from 9) · page 1 of 1")
    assert shown(tab) == {"hostile-a"}
    assert tab.page.locator("main img, main iframe, main script").count() == 0
    assert tab.recorded.dialogs == [] and tab.recorded.errors == []
    assert tab.recorded.console_errors == []


def test_a_run_without_agents_has_no_agent_columns_or_filters(tab: Tab, tmp_path: Path) -> None:
    run = AuditRun(
        RunInfo(run_id="plain", started="s", targets=TARGETS),
        (_audited("plain-a", None), _audited("plain-b", None)),
    )
    tab.open(write(tmp_path, run))
    heads = tab.page.eval_on_selector_all(f"{AUDITED} thead th", "ths => ths.map(t => t.innerText)")
    assert "Agent verdict" not in heads and heads[4] == "US3 CDN"
    assert tab.page.locator(f"{AUDITED} select[data-f=agent]").count() == 0
    tab.page.select_option(f"{AUDITED} select[data-f=outcome]", value="")
    status(tab, "1–2 of 2 · page 1 of 1")
    assert cells(tab)[0][4] == "reachable 200"
