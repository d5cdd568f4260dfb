"""The one small interface every transport implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from auditor.models import Host

# A probe's records are a few hundred bytes per target; anything far beyond this is a
# hostile or broken host, and keeping it would let one host exhaust the auditor's memory.
MAX_OUTPUT_BYTES = 1 << 20


@dataclass(frozen=True)
class ProbeJob:
    """What to run on a host.

    `script` is fixed probe source (POSIX sh or PowerShell); user data (the URLs) travels in
    `stdin` for POSIX, or inside the script as an inert base64 literal for PowerShell.
    """

    script: str
    stdin: bytes = b""


@dataclass(frozen=True)
class RawOutput:
    """What came back from one probe session, cut at MAX_OUTPUT_BYTES."""

    stdout: bytes
    stderr: bytes
    exit_status: int | None
    truncated: bool = False


class Transport(ABC):
    """Runs one probe session on one host.

    Implementations raise `auditor.errors.HostLevelError` with a `HostOutcome` value when the
    host cannot be audited (unreachable, auth failed, host key, session timeout...), and must
    return or raise within `timeout` seconds.
    """

    name: str = "base"

    @abstractmethod
    async def run(self, host: Host, job: ProbeJob, timeout: float) -> RawOutput:
        """Run `job` on `host` in one session and return its bounded output."""

    async def close(self) -> None:  # noqa: B027 - optional hook; most transports hold nothing
        """Release shared resources (connection pools, jump-host connections)."""
