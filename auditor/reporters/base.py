"""The one small interface every report format implements."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from typing import TextIO

from auditor.models import AuditRun


class Reporter(ABC):
    """Writes a run's report into one file.

    `run.results` may be a source read lazily from the results file or the history: a
    reporter reads it as few times as it can (once, for every format here) and writes as it
    goes, so the report of a fleet of any size is written in bounded memory. The counts it
    needs come from the run's tally (`auditor.aggregate.tally_of`), not from another pass.
    """

    #: File name inside the report directory, e.g. "report.csv".
    filename: str = ""

    @abstractmethod
    def write(self, run: AuditRun, out: TextIO) -> None:
        """Write the whole report to `out`."""


def render(reporter: Reporter, run: AuditRun) -> str:
    """The whole report as one string (for a small run: it is held in memory)."""
    buffer = io.StringIO(newline="")
    reporter.write(run, buffer)
    return buffer.getvalue()
