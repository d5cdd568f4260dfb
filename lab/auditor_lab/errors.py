"""The lab's one error type."""

from __future__ import annotations

from auditor.errors import AuditorError


class LabError(AuditorError):
    """The lab could not be brought up or down (not root, a missing tool, a failed step)."""
