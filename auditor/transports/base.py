"""The one small interface every transport implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from auditor.errors import InputError
from auditor.models import Host, ProbeJob, RawOutput


def _no_lines() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True)
class SettingsSource:
    """Where the hosts' settings came from, so a bad one is named as `file:line: host X: ...`.

    `lines` maps a host name to the inventory line that first defines it."""

    inventory: str = ""
    lines: Mapping[str, int] = field(default_factory=_no_lines)

    def error(self, host: Host, message: str) -> InputError:
        return InputError(
            f"host {host.name}: {message}", self.inventory or None, self.lines.get(host.name)
        )


class Transport(ABC):
    """Runs one probe session on one host.

    `prepare` is called once with every host the run will give the transport, before any
    connection is made; `run_job` is then called per host. Implementations raise
    `auditor.errors.HostLevelError` with a `HostOutcome` value when the host cannot be
    audited (unreachable, auth failed, host key, session timeout...), and must return or
    raise within `timeout` seconds.
    """

    name: str = "base"

    def prepare(self, hosts: Sequence[Host], source: SettingsSource) -> None:  # noqa: B027
        """Check and load every setting `hosts` need (files, credentials, endpoints), before
        any host is contacted; raises `InputError` naming the setting, host and inventory.

        Loaded state is built whole and assigned once, after every check has passed: a
        transport is either fully prepared or not prepared at all. The default has nothing
        to prepare."""

    def host_warnings(self, host: Host) -> tuple[str, ...]:
        """Trust this run weakened for `host` on the user's explicit say-so (shown per host
        in every report). Valid after `prepare`."""
        return ()

    @abstractmethod
    async def run_job(self, host: Host, job: ProbeJob, timeout: float) -> RawOutput:
        """Run `job` on `host` in one session and return its bounded output."""

    async def close(self) -> None:  # noqa: B027 - optional hook; most transports hold nothing
        """Release shared resources (connection pools, jump-host connections)."""
