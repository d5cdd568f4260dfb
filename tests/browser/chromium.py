"""Debian's headless Chromium, started and stopped by its PID, driven with Playwright.

The browser is the system package (`apt-get install chromium`); nothing here downloads a
browser. We start the process ourselves rather than letting Playwright launch it, so the
test owns its PID: it runs in a session of its own, and `stop()` ends that process group
(terminate, then kill after a deadline) whatever happened in the test. Playwright connects
to it over the DevTools protocol on loopback.

Everything waits on events (the DevTools line on stderr, page selectors), with deadlines
sized for a busy two-core machine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("AUDITOR_CHROMIUM", "/usr/bin/chromium"))
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0

FLAGS = (
    "--headless",
    # The tests run as root, and Chromium refuses to start its sandbox as root: --no-sandbox
    # is required there. The pages it opens are the reports under test, never the web.
    "--no-sandbox",
    "--disable-gpu",
    # Containers often have a small /dev/shm; the renderer would crash on a big report.
    "--disable-dev-shm-usage",
    # DevTools on an ephemeral loopback port; the address is read from stderr.
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--no-first-run",
    "--no-default-browser-check",
    # The browser's own background traffic (updates, sync, safe browsing...) is switched
    # off, and no name resolves: nothing but loopback is ever contacted.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--mute-audio",
    "--hide-scrollbars",
)
_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright is not installed here."""


def available() -> str:
    """Empty when the browser tests can run; else why not."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[test]')"
    return ""


@dataclass
class Chromium:
    """One headless Chromium process and the Playwright connection to it."""

    profile: Path
    process: subprocess.Popen[bytes] | None = None
    endpoint: str = ""
    log: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _playwright: Any = None
    browser: Any = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> Chromium:
        """Start the browser and connect to it; on any failure, nothing is left running."""
        problem = available()
        if problem:
            raise BrowserUnavailable(problem)
        self.profile.mkdir(parents=True, exist_ok=True)
        try:
            self.process = subprocess.Popen(
                [str(CHROMIUM), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
            threading.Thread(target=self._drain, daemon=True).start()
            if not self._ready.wait(START_TIMEOUT) or not self.endpoint:
                raise RuntimeError(
                    "chromium did not open its DevTools endpoint:\n" + "".join(self.log[-30:])
                )
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self.browser = self._playwright.chromium.connect_over_cdp(
                self.endpoint, timeout=START_TIMEOUT * 1000
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _drain(self) -> None:
        """Read stderr to its end (a full pipe would stall the browser); note the endpoint."""
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace")
            if len(self.log) < 2000:
                self.log.append(line)
            found = _DEVTOOLS.search(line)
            if found and not self.endpoint:
                self.endpoint = found.group(1)
                self._ready.set()
        self._ready.set()  # exited: wake start() so it fails at once

    def stop(self) -> None:
        """Disconnect, then end the browser's process group by its PID. Idempotent."""
        try:
            if self.browser is not None:
                self.browser.close()
        except Exception:
            pass  # a dead or hung connection: the process is ended below either way
        finally:
            self.browser = None
        try:
            if self._playwright is not None:
                self._playwright.stop()
        finally:
            self._playwright = None
            self._end_process()

    def _end_process(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
        # The group leader is gone; its children (zygote, renderers) share the group.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if process.poll() is None:
            process.wait(STOP_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()


def pdf_pages(pdf: bytes) -> int:
    """Pages in a PDF: from pdfinfo where installed, else from the page objects."""
    pdfinfo = shutil.which("pdfinfo")
    if pdfinfo:
        out = subprocess.run(
            [pdfinfo, "-"], input=pdf, capture_output=True, timeout=60, check=True
        ).stdout.decode("utf-8", "replace")
        found = re.search(r"^Pages:\s+(\d+)", out, re.M)
        if found:
            return int(found.group(1))
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


def pdf_text_pages(pdf: bytes) -> list[str] | None:
    """The text of each page (pdftotext), or None when poppler-utils is not installed."""
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        return None
    out = subprocess.run(
        [pdftotext, "-layout", "-", "-"], input=pdf, capture_output=True, timeout=60, check=True
    ).stdout.decode("utf-8", "replace")
    pages = out.split("\f")
    if pages and not pages[-1].strip():
        pages.pop()
    return pages
