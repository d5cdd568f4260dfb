"""The few typed exceptions the CLI turns into messages and exit statuses.

Nothing below the CLI prints or exits: layers raise these, `auditor.cli` reports them.
"""

from __future__ import annotations


class AuditorError(Exception):
    """Base of every error the tool raises on purpose."""


class InputError(AuditorError):
    """Bad input from the user: an inventory, targets file, URL or flag. Exit status 2.

    `source` names the file (or flag) and `line` the 1-based line, when known, so the
    message reads ``file:line: message``.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.source and self.line:
            return f"{self.source}:{self.line}: {self.message}"
        if self.source:
            return f"{self.source}: {self.message}"
        return self.message


class HostLevelError(AuditorError):
    """A transport could not audit a host; carries the host-level outcome and its detail."""

    def __init__(self, outcome: str, detail: str) -> None:
        self.outcome = outcome
        self.detail = detail
        super().__init__(f"{outcome}: {detail}")
