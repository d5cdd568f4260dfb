"""Agent truth: will the Qualys Cloud Agent on a host download from the CDN?

A probe reports what it found about the agent on the host (`AgentFacts`, every credential
already masked by its parser); `agent_verdict` turns those facts and the host's observations
of the CDN URLs into one `AgentVerdict`. Facts and their sources:

- Only Linux agents 6.4+ and Windows agents 5.7+ use the CDN; older agents keep using the
  platform, and an agent that cannot reach the CDN silently falls back to the platform.
  Verified: the vendor's "Download Cloud Agent Resources from CDN" page
  (https://docs.qualys.com/en/ca/latest/agents/cdn_resources.htm).
- Linux proxy list: up to five proxies in `qualys_https_proxy` (recommended) or
  `https_proxy`, in double quotes, separated by ';'; the agent always starts with the first.
  Proxy CA certificates go in /etc/qualys/cloud-agent/cert/ca-bundle.crt. Verified: the
  Linux/Unix install guide, "Multi Proxy Configuration"
  (https://docs.qualys.com/en/ca/install-guide/unix/proxy_config/multi_proxy.htm).
- Whether a Linux agent goes direct after every proxy failed: not stated for Linux
  (macOS: fail closed; Windows: fail open). Unverified; the verdict does not depend on it,
  since the probe checks the first proxy, the one the agent always tries first.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from auditor.models import (
    AgentFacts,
    AgentVerdict,
    AuditedHost,
    HostResult,
    Observation,
    Platform,
    Target,
)
from auditor.outcomes import Outcome

# Verified (see the module docstring): the first agent versions that download from the CDN.
CDN_MIN_VERSION: dict[Platform, tuple[int, int]] = {
    Platform.LINUX: (6, 4),
    Platform.WINDOWS: (5, 7),
}
# Targets of this category are the CDN (the built-in catalog's `cask` entries).
CDN_CATEGORY = "CDN"
# A URL given by hand counts as the CDN when its host is a `cask.` name: the vendor's CDN
# hosts are named so (verified for US1 and US3, the pattern inferred for the others).
_CDN_HOST = re.compile(r"^cask\.")


def is_cdn(target: Target) -> bool:
    """True for a target the agent downloads from: the catalog's CDN, or a `cask.` host."""
    return target.category == CDN_CATEGORY or bool(_CDN_HOST.match(target.hostname))


# "6.4.0.123", "1:6.4.0-12" (dpkg epoch), "6.4.0.123-1" (rpm release): major.minor leads.
_VERSION = re.compile(r"^(?:\d+:)?(\d{1,6})\.(\d{1,6})")


def version_key(version: str) -> tuple[int, int] | None:
    """(major, minor) of a package or file version; None when it does not start with one."""
    found = _VERSION.match(version.strip())
    return (int(found.group(1)), int(found.group(2))) if found else None


def uses_cdn(facts: AgentFacts | None, platform: Platform) -> bool | None:
    """True when the installed agent's version downloads from the CDN; None if unknown."""
    if facts is None or not facts.installed:
        return None if facts is None or facts.installed is None else False
    key = version_key(facts.version)
    if key is None:
        return None
    return key >= CDN_MIN_VERSION[platform]


def min_version_text(platform: Platform) -> str:
    major, minor = CDN_MIN_VERSION[platform]
    return f"{major}.{minor}"


def agent_verdict(
    facts: AgentFacts | None,
    platform: Platform,
    targets: Sequence[Target],
    observations: Sequence[Observation],
) -> tuple[AgentVerdict, str]:
    """The host's agent verdict and a one-line reason.

    `observations` are the host's, in target order (empty for a host not audited). The CDN
    counts as reachable only when every CDN target of the run is reachable: the user picks
    the platform's CDN with the targets.
    """
    if facts is None:
        return AgentVerdict.UNKNOWN, "the host was not audited"
    if facts.installed is None:
        why = "; ".join(facts.notes) or "no package database or registry answered"
        return AgentVerdict.UNKNOWN, f"could not tell whether the agent is installed: {why}"
    if not facts.installed:
        return AgentVerdict.NO_AGENT, "no Qualys Cloud Agent is installed"
    eligible = uses_cdn(facts, platform)
    need = min_version_text(platform)
    if eligible is None:
        return AgentVerdict.UNKNOWN, f"agent version {facts.version or '(none)'} is not readable"
    if not eligible:
        return (
            AgentVerdict.TOO_OLD,
            f"agent {facts.version} predates the CDN ({need}+): it always uses the platform",
        )
    cdn = [(t, o) for t, o in zip(targets, observations, strict=False) if is_cdn(t)]
    if not cdn:
        return AgentVerdict.UNKNOWN, "no CDN URL was probed (add the platform's CDN target)"
    failed = [(t, o) for t, o in cdn if o.outcome is not Outcome.REACHABLE]
    if not failed:
        return AgentVerdict.CDN_READY, f"agent {facts.version} reaches the CDN"
    target, obs = failed[0]
    if (
        platform is Platform.WINDOWS
        and obs.proxy
        and obs.at_proxy
        and obs.outcome is not Outcome.PROXY_DENIED
    ):
        # The Windows agent fails open: a connection to its proxy that fails is followed by
        # a direct attempt (vendor's Windows guide, "Proxy Configuration"), which the agent's
        # path did not probe. A proxy that answers and refuses is not a failed connection.
        return (
            AgentVerdict.UNKNOWN,
            f"{target.hostname}: the agent's proxy failed ({obs.outcome}); the Windows agent "
            "then tries directly, which was not probed (run with --direct)",
        )
    if facts.credentials_encrypted and obs.outcome is Outcome.PROXY_DENIED:
        return (
            AgentVerdict.UNKNOWN,
            "the agent's proxy credentials are encrypted; the auditor cannot use them, so "
            "the proxy's refusal says nothing about the agent",
        )
    return (
        AgentVerdict.CDN_BLOCKED,
        f"{target.hostname}: {obs.outcome} (the agent falls back to the platform)",
    )


# Every reporter asks for each host's verdict, several times (fleet counts, per group, per
# row): about 14 times per host over the five reports. Each result's verdict is kept while
# the result lives, keyed by its identity (results hold mappings, so they cannot be hashed)
# and checked against the very targets tuple it was judged with.
_Verdict = tuple[AgentVerdict, str]
_VERDICTS: dict[int, tuple[weakref.ref[Any], Sequence[Target], _Verdict]] = {}


def host_verdict(result: HostResult, targets: Sequence[Target]) -> tuple[AgentVerdict, str]:
    """The agent verdict of one host's result (a host not audited is `unknown`); judged
    once per result and targets, then remembered while the result lives."""
    key = id(result)
    hit = _VERDICTS.get(key)
    if hit is not None and hit[0]() is result and hit[1] is targets:
        return hit[2]
    verdict = _judge(result, targets)

    def forget(_gone: weakref.ref[Any]) -> None:
        # The entry goes with its result (an id is reused only after that).
        _VERDICTS.pop(key, None)

    _VERDICTS[key] = (weakref.ref(result, forget), targets, verdict)
    return verdict


def _judge(result: HostResult, targets: Sequence[Target]) -> tuple[AgentVerdict, str]:
    if isinstance(result, AuditedHost):
        if result.agent is None:
            return AgentVerdict.UNKNOWN, "the probe did not report the agent"
        return agent_verdict(result.agent, result.host.platform, targets, result.observations)
    return AgentVerdict.UNKNOWN, f"host not audited ({result.outcome})"


@dataclass(frozen=True)
class AgentCounts:
    """How many hosts have each agent verdict."""

    hosts: int
    counts: Mapping[AgentVerdict, int]

    def __getitem__(self, verdict: AgentVerdict) -> int:
        return self.counts.get(verdict, 0)


def count_verdicts(results: Iterable[HostResult], targets: Sequence[Target]) -> AgentCounts:
    """Verdict counts over `results`; hosts skipped by design are not counted."""
    counts: dict[AgentVerdict, int] = dict.fromkeys(AgentVerdict, 0)
    hosts = 0
    for result in results:
        if result.skipped:
            continue
        hosts += 1
        counts[host_verdict(result, targets)[0]] += 1
    return AgentCounts(hosts, MappingProxyType(counts))


def by_group(
    results: Iterable[HostResult], targets: Sequence[Target]
) -> list[tuple[str, AgentCounts]]:
    """Verdict counts per inventory group (a host counts in each of its groups), by name;
    counted as the results go by, never kept."""
    counts: dict[str, dict[AgentVerdict, int]] = {}
    hosts: dict[str, int] = {}
    for result in results:
        groups = result.host.groups or ("ungrouped",)
        for group in groups:
            counts.setdefault(group, dict.fromkeys(AgentVerdict, 0))
            hosts.setdefault(group, 0)
        if result.skipped:
            continue
        verdict = host_verdict(result, targets)[0]
        for group in groups:
            hosts[group] += 1
            counts[group][verdict] += 1
    return [(g, AgentCounts(hosts[g], MappingProxyType(counts[g]))) for g in sorted(counts)]


def _n(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def fleet_sentence(counts: AgentCounts) -> str:
    """The fleet answer in one line: "Of 1,312 hosts: 1,040 agents will use the CDN, 88
    agents are blocked from it (they fall back to the platform), 151 agents are too old to
    use it, 33 hosts have no agent" (and how many could not be told, when any)."""
    c = counts
    parts = [
        f"{_n(c[AgentVerdict.CDN_READY], 'agent', 'agents')} will use the CDN",
        f"{_n(c[AgentVerdict.CDN_BLOCKED], 'agent is', 'agents are')} blocked from it "
        "(they fall back to the platform)",
        f"{_n(c[AgentVerdict.TOO_OLD], 'agent is', 'agents are')} too old to use it",
        f"{_n(c[AgentVerdict.NO_AGENT], 'host has', 'hosts have')} no agent",
    ]
    if c[AgentVerdict.UNKNOWN]:
        parts.append(f"{_n(c[AgentVerdict.UNKNOWN], 'host', 'hosts')} could not be told")
    return f"Of {_n(c.hosts, 'host', 'hosts')}: " + ", ".join(parts)


def agent_report(result: HostResult, targets: Sequence[Target]) -> dict[str, Any]:
    """The `"agent"` object of one host in report.json (every proxy already masked).

    Its shape is the same for every host, audited or not. `installed` is always a bool: true
    only where the agent was found. Where that could not be told (a host not audited, no
    package database or registry answer) it is false, `verdict` is `unknown` with the
    `reason`, and `version`, `uses_cdn` and `running` are null: an unknown is never a bool.
    """
    verdict, reason = host_verdict(result, targets)
    facts = result.agent if isinstance(result, AuditedHost) else None
    return {
        "installed": facts is not None and facts.installed is True,
        "version": facts.version or None if facts is not None else None,
        "uses_cdn": uses_cdn(facts, result.host.platform),
        "proxy": facts.proxy if facts is not None else "",
        "proxies": list(facts.proxies) if facts is not None else [],
        "ca_bundle": facts.ca_bundle if facts is not None else False,
        "running": facts.running if facts is not None else None,
        "verdict": verdict.value,
        "reason": reason,
        "path": facts.path.value if facts is not None else "",
        "credentials_encrypted": facts.credentials_encrypted if facts is not None else False,
        "source": facts.source if facts is not None else "",
        "config": facts.config if facts is not None else "",
        "proxy_key": facts.proxy_key if facts is not None else "",
        "notes": list(facts.notes) if facts is not None else [],
    }


def require_agent_failures(results: Iterable[HostResult], targets: Sequence[Target]) -> int:
    """Hosts that fail `--require-agent`: no agent, or one too old to use the CDN."""
    return sum(
        1
        for r in results
        if not r.skipped
        and host_verdict(r, targets)[0] in (AgentVerdict.NO_AGENT, AgentVerdict.TOO_OLD)
    )
