"""The POSIX probe: build the job for `/bin/sh -s`, parse its records, classify curl results."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from types import MappingProxyType

from auditor.errors import HostLevelError
from auditor.models import Observation, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import ProbeResult, ProbeSettings, Scrubber, escape_controls, mask_userinfo
from auditor.transports.base import ProbeJob, RawOutput

COMMAND = "/bin/sh -s"
_NO_SECRETS = Scrubber()
_MAX_FIELD = 400


@cache
def probe_source() -> str:
    return resources.files("auditor.probes").joinpath("probe.sh").read_text(encoding="utf-8")


def build_posix_job(targets: Sequence[Target], settings: ProbeSettings) -> ProbeJob:
    """The probe script followed by its data as a quoted here-document on stdin.

    URLs were validated to hold no whitespace or control characters, so no data line can
    end the here-document early, and the quoted delimiter stops every expansion.
    """
    if not re.fullmatch(r"[0-9a-f]{8,64}", settings.nonce):
        raise ValueError("nonce must be lowercase hex")
    lines = [
        f"nonce {settings.nonce}",
        f"connect_timeout {_seconds(settings.connect_timeout)}",
        f"max_time {_seconds(settings.max_time)}",
        f"agent_proxy {1 if settings.agent_proxy else 0}",
    ]
    for index, target in enumerate(targets):
        if any(c.isspace() or ord(c) < 32 for c in target.url):
            raise ValueError(f"unvalidated URL reached the probe: {target.url!r}")
        lines.append(f"target {index} {target.url}")
    end = f"AUDITOR_END_{settings.nonce}"
    data = "\n".join(lines)
    stdin = f"{probe_source()}\nauditor_main <<'{end}'\n{data}\n{end}\nexit 0\n"
    return ProbeJob(script=COMMAND, stdin=stdin.encode())


def _seconds(value: float) -> str:
    return f"{max(value, 0.1):.3f}".rstrip("0").rstrip(".")


def _clean(text: str, scrub: Scrubber) -> str:
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", scrub(text))
    return mask_userinfo(text).strip()[:_MAX_FIELD]


def _issuer(field: str, scrub: Scrubber) -> str:
    """The issuer the probe sent as hex (any byte a certificate holds), shown with every
    control character escaped. A field that is not hex is taken as text."""
    text = field
    if re.fullmatch(r"(?:[0-9a-f]{2})*", field):
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
    scrub = Scrubber.for_settings([*proxies.values(), *shown_proxies])
    records: dict[int, list[str]] = {}
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
            if index is not None and index < len(targets) and index not in records:
                records[index] = fields[2:]
        elif kind == "D":
            done = True
    if not records and not facts:
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
        if record is None:
            why = "output was cut off" if not done or raw.truncated else "no record"
            observations.append(
                Observation(
                    url=target.url,
                    outcome=Outcome.ERROR,
                    detail=f"probe output ended before this target's record ({why})",
                )
            )
        else:
            observations.append(observation_from_fields(target, record, scrub))
    return ProbeResult(observations=tuple(observations), facts=MappingProxyType(facts))


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
    outcome, detail = classify(
        tool, exit_code, http, connect, err, issuer, proxy, target, _float(total)
    )
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
        time_dns=_float(dns),
        time_connect=_float(conn),
        time_tls=_float(tls),
        time_total=_float(total),
    )


# curl exit codes (see curl's libcurl-errors): TLS handshake and certificate problems.
_TLS_CODES = {35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91}


def classify(
    tool: str,
    exit_code: int | None,
    http: int | None,
    connect: int | None,
    err: str,
    issuer: str,
    proxy: str,
    target: Target,
    elapsed: float | None = None,
) -> tuple[Outcome, str]:
    """Map one tool result onto the target-level taxonomy, with a one-line detail."""
    if tool == "wget":
        exit_code, err = _wget_as_curl(exit_code, http, err, elapsed)
    lowered = err.lower()
    via = f" via proxy {proxy}" if proxy else ""
    if exit_code == 0 or (exit_code is None and http):
        # Through a proxy, a 407 is the proxy's, even where the target accepts any 4xx.
        if http is not None and http in target.expected_status and not (http == 407 and proxy):
            return Outcome.REACHABLE, f"HTTP {http}{via}"
        if http == 407:
            return (
                Outcome.PROXY_DENIED,
                f"proxy {proxy or '(unknown)'} answered 407 Proxy Authentication Required",
            )
        expected = _expected_text(target.expected_status)
        return Outcome.HTTP_ERROR, f"HTTP {http} (expected {expected}){via}"
    if exit_code in (5, 6):
        return Outcome.DNS_FAILURE, err or (
            "could not resolve the proxy's name"
            if exit_code == 5
            else f"could not resolve host {target.hostname}"
        )
    if exit_code == 56 and (
        connect in (403, 407) or "connect tunnel failed" in lowered or "proxy connect" in lowered
    ):
        code = f" {connect}" if connect else ""
        return Outcome.PROXY_DENIED, f"proxy {proxy or '(unknown)'} refused CONNECT{code}: {err}"
    if "connection reset" in lowered and exit_code in (35, 56):
        return (
            Outcome.REFUSED,
            f"connection reset during the TLS handshake (a firewall or "
            f"proxy filtering by name is likely): {err}",
        )
    if exit_code == 7:
        if "timed out" in lowered:
            return Outcome.TIMEOUT, err
        return Outcome.REFUSED, err or "connection refused"
    if exit_code == 28:
        return Outcome.TIMEOUT, err or "timed out"
    if exit_code in _TLS_CODES:
        shown = f" (issuer: {issuer})" if issuer else ""
        return Outcome.TLS_FAILURE, f"{err or 'TLS failure'}{shown}"
    return Outcome.ERROR, f"{tool or 'probe'} exit {exit_code}: {err or 'no message'}"


def _expected_text(statuses: tuple[int, ...]) -> str:
    if len(statuses) <= 3:
        return "/".join(map(str, statuses))
    return f"{statuses[0]}-{statuses[-1]}"


def _wget_as_curl(
    exit_code: int | None, http: int | None, err: str, elapsed: float | None
) -> tuple[int | None, str]:
    """GNU wget reports through messages more than exit codes; translate to curl's codes."""
    lowered = err.lower()
    if exit_code == 8 and http:  # the server answered with an error status
        return 0, err
    if exit_code == 0:
        return 0, err
    if (
        "unable to resolve" in lowered
        or "name or service not known" in lowered
        or "temporary failure in name resolution" in lowered
    ):
        return 6, err
    if "connection refused" in lowered or "no route to host" in lowered:
        return 7, err
    if "timed out" in lowered:
        return 28, err
    if "proxy tunneling failed" in lowered:
        return 56, f"CONNECT tunnel failed: {err}"
    if "unable to establish ssl connection" in lowered:
        # Said alike for a handshake that failed and one that stalled; only time tells.
        if elapsed is not None and elapsed >= 1.5:
            return 28, f"TLS handshake stalled ({elapsed:g} s): {err}"
        return 35, err
    if exit_code == 5 or "certificate" in lowered:
        return 60, err
    return exit_code, err
