"""Fixtures for the report tests in a real browser (Debian's headless Chromium).

The tests skip only where Chromium (or Playwright) is truly absent and this is not CI; with
CI=true a missing browser fails them, since `make test` installs it (make sysdeps).
Artifacts (the first-screen screenshot, the printed PDF) go to test-artifacts/browser/ at
the top of the repository, or to $AUDITOR_TEST_ARTIFACTS/browser/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chromium import Chromium, available

try:
    from playwright.sync_api import expect
except ImportError:  # without the test extras: the `chromium` fixture skips (fails in CI)
    expect = None

ROOT = Path(__file__).resolve().parents[2]
PAGE_TIMEOUT_MS = 60_000
"""Every wait on the page (selectors, text): generous, for a busy two-core machine."""
if expect is not None:
    expect.set_options(timeout=PAGE_TIMEOUT_MS)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(problem: str) -> None:
    """Skip for a missing tool, except in CI, where it is a failure."""
    if problem:
        if in_ci():
            pytest.fail(f"CI=true and the browser tests cannot run: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    base = Path(os.environ.get("AUDITOR_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    path = base / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    need(available())
    browser = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser.start()
    finally:
        browser.stop()  # ends the process group by its PID, even when a test failed


@dataclass
class Recorded:
    """What a page did: every request it made or tried (one refused by the page's policy
    included), the requests that failed and why, console messages, uncaught errors, dialogs."""

    requests: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind in ("error", "warning", "assert")]


@dataclass
class Tab:
    page: Any
    recorded: Recorded

    def open(self, path: Path) -> None:
        """Load a report file and wait until its script has drawn the host table."""
        self.page.goto(path.as_uri(), wait_until="load", timeout=PAGE_TIMEOUT_MS * 3)
        self.page.wait_for_selector(
            "#audited-table:not([hidden]) tbody tr", timeout=PAGE_TIMEOUT_MS * 3
        )


@pytest.fixture
def tab(chromium: Chromium) -> Iterator[Tab]:
    """A fresh browser context and page (no state shared between tests), recording all."""
    context = chromium.browser.new_context(
        viewport={"width": 1366, "height": 900}, java_script_enabled=True
    )
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    recorded = Recorded()
    page.on("request", lambda r: recorded.requests.append(r.url))
    page.on("requestfailed", lambda r: recorded.failed.append((r.url, str(r.failure))))
    page.on("console", lambda m: recorded.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: recorded.errors.append(str(e)))

    def on_dialog(dialog: Any) -> None:
        recorded.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield Tab(page, recorded)
    finally:
        context.close()
