"""Which probe runs on which platform: the one place a platform is mapped to a `Probe`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from auditor.models import Platform
from auditor.probes import Probe
from auditor.probes.posix import PosixProbe
from auditor.probes.powershell import PowerShellProbe

PROBES: Mapping[Platform, Probe] = MappingProxyType(
    {Platform.LINUX: PosixProbe(), Platform.WINDOWS: PowerShellProbe()}
)


def probe_for(platform: Platform) -> Probe:
    """The probe for hosts of `platform`."""
    return PROBES[platform]
