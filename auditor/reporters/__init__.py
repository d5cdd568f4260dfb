"""The report formats, and writing a run's reports into a directory.

Each format is a `Reporter` that renders a whole `AuditRun` into one file's text;
`write_reports` renders the chosen formats and writes each file atomically (a temporary
file created relative to the verified directory with the requested mode, fsynced, then
renamed over the final name), so a reader never sees a half-written report and a planted
link is replaced, never followed. Making (or refusing) the directory is
`auditor.reportdir.prepare`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from auditor.errors import InputError
from auditor.models import AuditRun
from auditor.reportdir import DirIdentity, ReportDir
from auditor.reporters.base import Reporter
from auditor.reporters.csv import CsvReporter
from auditor.reporters.html import HtmlExtras, HtmlReporter
from auditor.reporters.json import JsonReporter
from auditor.reporters.junit import JunitReporter
from auditor.reporters.prom import PromReporter

REPORTERS: dict[str, type[Reporter]] = {
    "html": HtmlReporter,
    "csv": CsvReporter,
    "json": JsonReporter,
    "junit": JunitReporter,
    "prom": PromReporter,
}
"""Format name -> reporter class, in the order reports are usually listed."""


def write_reports(
    run: AuditRun,
    out_dir: Path,
    formats: Sequence[str],
    mode: int = 0o600,
    expect: DirIdentity | None = None,
    html_extras: HtmlExtras | None = None,
) -> list[Path]:
    """Render `formats` of `run` into `out_dir` (which must exist); return the paths written.

    Unknown format names raise InputError before anything is written; a format named twice
    is written once. Every report is rendered before the first file is replaced, so a
    rendering failure leaves the directory as it was.
    """
    names = list(dict.fromkeys(formats))
    unknown = [f for f in names if f not in REPORTERS]
    if unknown:
        raise InputError(
            f"unknown report format {unknown[0]!r} (choose from {', '.join(REPORTERS)})",
            "--format",
        )
    rendered: list[tuple[Path, bytes]] = []
    for name in names:
        # What the run history adds (changes, trends, the gate's line) is the HTML page's.
        reporter = HtmlReporter(html_extras) if name == "html" else REPORTERS[name]()
        text = reporter.render(run)
        # Reporters already replace text UTF-8 cannot hold; "replace" is the last guard.
        rendered.append((out_dir / reporter.filename, text.encode("utf-8", "replace")))
    written: list[Path] = []
    with ReportDir.open(out_dir, expect) as directory:
        for path, data in rendered:
            directory.write_atomic(path.name, data, mode)
            written.append(path)
        if written:
            directory.fsync()
    return written
