"""Probe scripts (real files beside this module) and the parsers of their records.

Each platform has a builder that turns targets into a `ProbeJob` (script + data, user data
never spliced into source) and a parser that turns the `RawOutput` back into exactly one
`Observation` per target, or raises `HostLevelError` when the host could not run the probe.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from auditor.models import Observation


@dataclass(frozen=True)
class ProbeSettings:
    """Knobs shared by every platform's probe."""

    connect_timeout: float = 5.0
    max_time: float = 10.0
    # Probe through the proxy the Qualys agent itself is configured with, when one is set.
    agent_proxy: bool = False
    # A per-run random marker: a record must carry it to count, so text printed by a hostile
    # tool on the host cannot forge a record.
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass(frozen=True)
class ProbeResult:
    """One observation per target (in target order) and what the host said about itself."""

    observations: tuple[Observation, ...]
    facts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


# user:password@ in any URL a host prints (curl quotes a proxy URL it cannot parse); greedy
# up to the authority's last '@', since a password may hold one.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s'\"]*@")


def mask_userinfo(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text
