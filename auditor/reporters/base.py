"""The one small interface every report format implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from auditor.models import AuditRun


class Reporter(ABC):
    """Renders a run into one report file's content."""

    #: File name inside the report directory, e.g. "report.csv".
    filename: str = ""

    @abstractmethod
    def render(self, run: AuditRun) -> str:
        """The whole report as text."""
