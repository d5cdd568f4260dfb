"""The POSIX probe: build the job for `/bin/sh -s` and turn its records into evidence.

The verdicts themselves are `auditor.classify`'s, shared with every platform.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from importlib import resources
from types import MappingProxyType

from auditor.classify import Evidence, classify, failed_at_proxy
from auditor.errors import HostLevelError
from auditor.models import Observation, ProbeJob, RawOutput, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import (
    Probe,
    ProbeResult,
    ProbeSettings,
    Scrubber,
    escape_controls,
    mask_userinfo,
)
from auditor.probes.agentfacts import (
    collect_posix,
    config_secrets,
    failover_note,
    posix_agent_facts,
)

COMMAND = "/bin/sh -s"
_NO_SECRETS = Scrubber()
_MAX_FIELD = 400


@cache
def probe_source() -> str:
    return resources.files("auditor.probes").joinpath("probe.sh").read_text(encoding="utf-8")


@cache
def sent_source() -> str:
    """probe.sh as it is sent: without its comment and blank lines, a third of its bytes,
    which every host would otherwise read and parse. Only whole lines go: no line of the
    probe that starts with '#' lies inside a quoted string (a test holds them so)."""
    return "\n".join(
        line
        for line in probe_source().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


def build_posix_job(targets: Sequence[Target], settings: ProbeSettings) -> ProbeJob:
    """The probe script followed by its data as a quoted here-document, for the transport
    to pipe to `/bin/sh -s` (the job's `command`).

    URLs were validated to hold no whitespace or control characters, so no data line can
    end the here-document early, and the quoted delimiter stops every expansion.
    """
    if not re.fullmatch(r"[0-9a-f]{8,64}", settings.nonce):
        raise ValueError("nonce must be lowercase hex")
    lines = [
        f"nonce {settings.nonce}",
        f"connect_timeout {_seconds(settings.connect_timeout)}",
        f"max_time {_seconds(settings.max_time)}",
        f"agent_proxy {0 if settings.direct else 1}",
    ]
    if settings.per_url:
        lines.append("per_url 1")
    for index, target in enumerate(targets):
        if any(c.isspace() or ord(c) < 32 for c in target.url):
            raise ValueError(f"unvalidated URL reached the probe: {target.url!r}")
        lines.append(f"target {index} {target.url}")
    end = f"AUDITOR_END_{settings.nonce}"
    data = "\n".join(lines)
    script = f"{sent_source()}\nauditor_main <<'{end}'\n{data}\n{end}\nexit 0\n"
    return ProbeJob(script=script, command=COMMAND)


def _seconds(value: float) -> str:
    return f"{max(value, 0.1):.3f}".rstrip("0").rstrip(".")


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean(text: str, scrub: Scrubber) -> str:
    if not text:
        return ""
    text = _CONTROLS.sub(" ", scrub(text))
    return mask_userinfo(text).strip()[:_MAX_FIELD]


_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def _issuer(field: str, scrub: Scrubber) -> str:
    """The issuer the probe sent as hex (any byte a certificate holds), shown with every
    control character escaped. A field that is not hex is taken as text."""
    text = field
    if _HEX.fullmatch(field):
        text = bytes.fromhex(field).decode("utf-8", errors="replace").strip()
    shown = escape_controls(scrub(text))
    return mask_userinfo(shown)[:_MAX_FIELD]


# Proxy settings a host reports, in the order they are shown among its facts.
_PROXY_NAMES = (
    "agent",
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < 1e6 else None


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 6 else None


def parse_posix(raw: RawOutput, targets: Sequence[Target], nonce: str) -> ProbeResult:
    """Turn the probe's output into one observation per target.

    Only lines carrying this run's nonce count; anything else a host prints is ignored.
    Raises HostLevelError when the host had no HTTP client or printed no record at all.
    """
    prefix = f"AUD1 {nonce}\t"
    lines = [
        line[len(prefix) :].split("\t")
        for line in raw.stdout.decode("utf-8", errors="replace").splitlines()
        if line.startswith(prefix)
    ]
    # The host's proxy settings come first: every secret in them is removed from every
    # field below, whatever form a tool printed it in.
    proxies: dict[str, str] = {}
    for fields in lines:
        if fields[0] == "P" and len(fields) == 3 and fields[1] in _PROXY_NAMES:
            proxies.setdefault(fields[1], fields[2])
    shown_proxies = [f[12] for f in lines if f[0] == "T" and len(f) == 14]
    agent_records = collect_posix(lines)
    agent_proxies = config_secrets(agent_records) if agent_records else ()
    scrub = Scrubber.for_settings([*proxies.values(), *shown_proxies, *agent_proxies])
    agent = posix_agent_facts(agent_records, scrub)[0] if agent_records else None
    records: dict[int, list[str]] = {}
    # A target the host reported twice: no record of it can be believed.
    doubled: set[int] = set()
    facts: dict[str, str] = {}
    done = False
    for fields in lines:
        kind = fields[0]
        if kind == "U":
            reason = _clean(" ".join(fields[1:]), scrub) or "no HTTP client on the host"
            raise HostLevelError(HostOutcome.PROBE_UNAVAILABLE, reason)
        if kind == "H" and len(fields) >= 5:
            facts = {
                "hostname": _clean(fields[1], scrub),
                "os": _clean(fields[2], scrub),
                "tool": _clean(fields[3], scrub),
                "tool_version": _clean(fields[4], scrub),
            }
        elif kind == "T" and len(fields) == 14:
            index = _int(fields[1])
            if index is None or index >= len(targets):
                continue
            if index in records:
                doubled.add(index)
            else:
                records[index] = fields[2:]
        elif kind == "D":
            done = True
    # Any record of this run's means the probe ran: a target whose own record is missing is
    # that target's error, not the host's (the host facts now come after the targets').
    if not lines:
        status = raw.exit_status
        stderr = _clean(raw.stderr.decode("utf-8", errors="replace"), scrub)
        if status == 127 or "not found" in stderr:
            raise HostLevelError(HostOutcome.PROBE_UNAVAILABLE, f"cannot run {COMMAND}: {stderr}")
        raise HostLevelError(
            HostOutcome.ERROR,
            f"probe printed no records (exit status {status}){': ' + stderr if stderr else ''}",
        )
    if proxies:
        shown = (
            f"{name}={_clean(proxies[name], scrub)}" for name in _PROXY_NAMES if name in proxies
        )
        facts["proxy_settings"] = _clean(" ".join(shown), scrub)
    observations = []
    for index, target in enumerate(targets):
        record = records.get(index)
        if index in doubled:
            observations.append(
                Observation(
                    url=target.url,
                    outcome=Outcome.ERROR,
                    detail="the probe output held more than one record for this target",
                )
            )
        elif record is None:
            why = "output was cut off" if not done or raw.truncated else "no record"
            observations.append(
                Observation(
                    url=target.url,
                    outcome=Outcome.ERROR,
                    detail=f"probe output ended before this target's record ({why})",
                )
            )
        else:
            observation = observation_from_fields(target, record, scrub)
            note = failover_note(agent, observation.proxy)
            if note:
                observation = replace(observation, detail=f"{observation.detail} ({note})")
            observations.append(observation)
    return ProbeResult(observations=tuple(observations), facts=MappingProxyType(facts), agent=agent)


def observation_from_fields(
    target: Target, fields: Sequence[str], scrub: Scrubber = _NO_SECRETS
) -> Observation:
    """Fields after the index: tool exit http connect ip dns conn tls total proxy issuer err.

    `scrub` removes the secrets the host's proxy settings hold from every field.
    """
    tool, exit_s, http_s, connect_s, ip, dns, conn, tls, total, proxy, _, err = (
        _clean(f, scrub) for f in fields
    )
    issuer = _issuer(fields[10], scrub)
    exit_code = _int(exit_s)
    http = _int(http_s) or None
    connect = _int(connect_s) or None
    evidence = Evidence(
        tool=tool,
        exit_code=exit_code,
        http_status=http,
        connect_status=connect,
        message=err,
        issuer=issuer,
        proxy=proxy,
        elapsed=_float(total),
        connect_time=_float(conn),
    )
    outcome, detail = classify(evidence, target)
    return Observation(
        url=target.url,
        outcome=outcome,
        detail=detail,
        http_status=http,
        remote_ip=ip if re.fullmatch(r"[0-9A-Fa-f:.]{0,45}", ip) else "",
        tool=tool,
        tls_issuer=issuer,
        proxy=proxy,
        exit_code=exit_code,
        at_proxy=failed_at_proxy(evidence, outcome),
        time_dns=_float(dns),
        time_connect=_float(conn),
        time_tls=_float(tls),
        time_total=_float(total),
    )


class PosixProbe(Probe):
    """POSIX sh with curl (or wget, or python3), for Linux and other Unix hosts."""

    def build_job(self, targets: Sequence[Target], settings: ProbeSettings) -> ProbeJob:
        return build_posix_job(targets, settings)

    def parse(self, raw: RawOutput, targets: Sequence[Target], nonce: str) -> ProbeResult:
        return parse_posix(raw, targets, nonce)
