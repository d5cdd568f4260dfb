"""The report formats, and writing a run's reports into a directory.

Each format is a `Reporter` that writes a whole `AuditRun` into one file as it reads the
results; `write_reports` writes the chosen formats, each atomically (a temporary file
created relative to the verified directory with the requested mode, written, fsynced, then
renamed over the final name), so a reader never sees a half-written report and a planted
link is replaced, never followed. Making (or refusing) the directory is
`auditor.reportdir.prepare`'s job.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from auditor.aggregate import tally_of
from auditor.errors import InputError
from auditor.models import AuditRun
from auditor.reportdir import DirIdentity, ReportDir
from auditor.reporters.base import Reporter, render
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
    """Write `formats` of `run` into `out_dir` (which must exist); return the paths written.

    Unknown format names raise InputError before anything is written; a format named twice
    is written once. Every report is written (to its temporary file) before the first file
    is replaced, so a failure leaves the directory as it was.
    """
    names = list(dict.fromkeys(formats))
    unknown = [f for f in names if f not in REPORTERS]
    if unknown:
        raise InputError(
            f"unknown report format {unknown[0]!r} (choose from {', '.join(REPORTERS)})",
            "--format",
        )
    # Counted once for every format (a run read back is counted here, in one pass).
    run = _counted(run)
    written: list[Path] = []
    with ReportDir.open(out_dir, expect) as directory:
        pending: list[tuple[str, str]] = []
        try:
            for name in names:
                # What the run history adds (changes, trends, the gate's line) is the HTML
                # page's.
                reporter = HtmlReporter(html_extras) if name == "html" else REPORTERS[name]()
                tmp, fd = directory.create_temporary(reporter.filename, mode)
                pending.append((tmp, reporter.filename))
                with os.fdopen(fd, "wb") as raw:
                    # "replace": the last guard for text UTF-8 cannot hold (reporters already
                    # replace it); newline="": the formats choose their own line ends.
                    with io.TextIOWrapper(
                        raw, encoding="utf-8", errors="replace", newline="", write_through=False
                    ) as out:
                        reporter.write(run, out)
                        out.flush()
                        os.fsync(raw.fileno())
            # Every report is complete before the first one is put in place.
            for tmp, final in pending:
                directory.commit(tmp, final)
                written.append(out_dir / final)
        except BaseException:
            for tmp, _ in pending[len(written) :]:
                directory.discard(tmp)
            raise
        if written:
            directory.fsync()
    return written


def _counted(run: AuditRun) -> AuditRun:
    from dataclasses import replace

    return replace(run, totals=tally_of(run))


__all__ = ["REPORTERS", "HtmlExtras", "Reporter", "render", "write_reports"]
