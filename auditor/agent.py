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
from collections.abc import Sequence

from auditor.models import AgentFacts, AgentVerdict, Observation, Platform, Target
from auditor.outcomes import Outcome

# Verified (see the module docstring): the first agent versions that download from the CDN.
CDN_MIN_VERSION: dict[Platform, tuple[int, int]] = {
    Platform.LINUX: (6, 4),
    Platform.WINDOWS: (5, 7),
}
# Targets of this category are the CDN (the built-in catalog's `cask` entries).
CDN_CATEGORY = "CDN"
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
    cdn = [
        (t, o) for t, o in zip(targets, observations, strict=False) if t.category == CDN_CATEGORY
    ]
    if not cdn:
        return AgentVerdict.UNKNOWN, "no CDN URL was probed (add the platform's CDN target)"
    failed = [(t, o) for t, o in cdn if o.outcome is not Outcome.REACHABLE]
    if not failed:
        return AgentVerdict.CDN_READY, f"agent {facts.version} reaches the CDN"
    target, obs = failed[0]
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
