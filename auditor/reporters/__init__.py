"""The report formats, and writing a run's reports into a directory.

Each format is a `Reporter` that renders a whole `AuditRun` into one file's text;
`write_reports` renders the chosen formats and writes each file atomically (a temporary
file in the same directory, created with the requested mode, fsynced, then renamed over the
final name), so a reader never sees a half-written report. Making (or refusing) the
directory is the CLI's job.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from auditor.errors import InputError
from auditor.reporters.base import Reporter
from auditor.reporters.csv import CsvReporter
from auditor.reporters.html import HtmlReporter
from auditor.reporters.json import JsonReporter
from auditor.reporters.junit import JunitReporter
from auditor.results import AuditRun

REPORTERS: dict[str, type[Reporter]] = {
    "html": HtmlReporter,
    "csv": CsvReporter,
    "json": JsonReporter,
    "junit": JunitReporter,
}
"""Format name -> reporter class, in the order reports are usually listed."""


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` via a temporary file in the same directory and a rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_reports(
    run: AuditRun, out_dir: Path, formats: Sequence[str], mode: int = 0o600
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
        reporter = REPORTERS[name]()
        text = reporter.render(run)
        # Reporters already replace text UTF-8 cannot hold; "replace" is the last guard.
        rendered.append((out_dir / reporter.filename, text.encode("utf-8", "replace")))
    written: list[Path] = []
    for path, data in rendered:
        _write_atomic(path, data, mode)
        written.append(path)
    if written:
        _fsync_dir(out_dir)
    return written
