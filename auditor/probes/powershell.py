"""The Windows probe: build the PowerShell job from targets, parse its records back.

The probe itself is `probe.ps1` beside this module. The builder never splices user data
into PowerShell source: the targets and settings become base64 of a JSON document that
replaces the script's single placeholder, and the base64 alphabet cannot end the quoted
literal it sits in. The script is then minified and deflated into a one-line bootstrap so
that the `-EncodedCommand` the WinRM transport sends stays well under CreateProcess's
32767-character limit: about 10.4k characters for one target and 11.9k for the built-in
catalog. That is over cmd.exe's 8191, which is why the transport skips cmd.exe (see
`auditor.transports.winrm` and docs/windows.md for the measurements).

The parser trusts nothing it reads: it keeps only lines that carry this run's nonce, caps
every field, and turns anything it does not understand into an `error` verdict or a
`HostLevelError`, never a crash. The records carry evidence only; `auditor.classify`
decides each verdict, with the rules every platform shares.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import math
import re
import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from auditor.classify import POWERSHELL_TOOL, Evidence, Tunnel, classify, tunnel_status
from auditor.errors import HostLevelError, InputError
from auditor.models import MAX_OUTPUT_BYTES, Observation, ProbeJob, RawOutput, Target
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import (
    Probe,
    ProbeResult,
    ProbeSettings,
    Scrubber,
    escape_controls,
    mask_userinfo,
)

RECORD_MARK = "AUDITOR-PS1"
DATA_PLACEHOLDER = "@@AUDITOR_DATA@@"
TOOL = POWERSHELL_TOOL

# Targets probed at once on the host. Ten runspaces keep a 20-URL catalog to two waves
# without loading a small VM; each runspace costs a few MB in powershell.exe.
MAX_PARALLEL = 10
# Slack on top of the request time budget for runspace start-up and the issuer re-connect.
DEADLINE_SLACK = 5.0

MAX_DETAIL = 400
_MAX_FIELD = 2000
# A record is a few hundred bytes; a far longer marked line is broken or hostile.
_MAX_RECORD_CHARS = 64 * 1024

_NONCE_RE = re.compile(r"[0-9A-Za-z]{1,64}")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_FACT_KEYS = ("hostname", "os", "os_version", "ps_version", "ps_edition")
_CLIXML_S_RE = re.compile(r"<S S=\"Error\">(.*?)</S>", re.DOTALL)
_CLIXML_ESCAPE_RE = re.compile(r"_x([0-9A-Fa-f]{4})_")

# Bootstrap: inflate the deflated, minified probe and run it. Written with New-Object so
# even PowerShell 2.0 gets as far as the probe's own "Invoke-WebRequest is missing" record.
_BOOTSTRAP = (
    "$ProgressPreference='SilentlyContinue';"
    "iex (New-Object IO.StreamReader((New-Object IO.Compression.DeflateStream("
    "(New-Object IO.MemoryStream(,[Convert]::FromBase64String('{payload}'))),"
    "[IO.Compression.CompressionMode]'Decompress')),[Text.Encoding]::UTF8)).ReadToEnd()"
)


@cache
def probe_source() -> str:
    """The probe as shipped (package data), placeholder and comments included."""
    return resources.files("auditor.probes").joinpath("probe.ps1").read_text(encoding="utf-8")


def minify(source: str) -> str:
    """Drop comment lines, blank lines and indentation.

    Safe only because probe.ps1 follows its build-time rules (no block comments, no
    here-strings, comments only on lines of their own); the tests hold it to them.
    """
    kept = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in kept if line and not line.startswith("#"))


def probe_deadline(n_targets: int, settings: ProbeSettings) -> float:
    """Seconds the probe gives all its targets on one host (the scheduler adds start-up)."""
    parallel = max(1, min(n_targets, MAX_PARALLEL))
    waves = math.ceil(max(1, n_targets) / parallel)
    return waves * _timeout_sec(settings) + DEADLINE_SLACK


def _timeout_sec(settings: ProbeSettings) -> int:
    # -TimeoutSec takes whole seconds; 0 would mean "no timeout", so never round down to it.
    return max(1, math.ceil(settings.max_time))


def status_ranges(statuses: Sequence[int]) -> list[int]:
    """Expected statuses as flat inclusive ranges: (200, 201, 202, 404) -> [200, 202, 404, 404].

    The catalog accepts whole bands (200-499 for an agent endpoint that answers anything);
    listed one by one they would cost thousands of command-line characters.
    """
    flat: list[int] = []
    for status in sorted(set(statuses)):
        if flat and status == flat[-1] + 1:
            flat[-1] = status
        else:
            flat += [status, status]
    return flat


def encode_data(targets: Sequence[Target], settings: ProbeSettings) -> str:
    """The base64 JSON literal that replaces the probe's placeholder."""
    if not _NONCE_RE.fullmatch(settings.nonce):
        raise ValueError("probe nonce must be 1-64 ASCII letters or digits")
    if not targets:
        raise InputError("no targets to probe")
    entries = []
    for target in targets:
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"not an http(s) URL: {target.url!r}")
        entries.append({"url": target.url, "expect": status_ranges(target.expected_status)})
    # "nonce" goes first: the probe finds it with a regex before it may parse JSON at all.
    doc = {
        "nonce": settings.nonce,
        "timeout": _timeout_sec(settings),
        "connect_ms": max(100, int(settings.connect_timeout * 1000)),
        "parallel": min(len(targets), MAX_PARALLEL),
        "deadline": probe_deadline(len(targets), settings),
        "targets": entries,
    }
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=True)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def substitute_data(source: str, data_b64: str) -> str:
    """Put the data literal in the one placeholder; refuse anything but base64."""
    if not _B64_RE.fullmatch(data_b64):
        raise ValueError("probe data must be base64")
    if source.count(DATA_PLACEHOLDER) != 1:
        raise ValueError("probe.ps1 must hold exactly one data placeholder")
    return source.replace(DATA_PLACEHOLDER, data_b64)


def wrap_compressed(script: str) -> str:
    """A one-line bootstrap that inflates `script` (raw deflate) and runs it."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = packer.compress(script.encode("utf-8")) + packer.flush()
    return _BOOTSTRAP.replace("{payload}", base64.b64encode(packed).decode("ascii"))


def build_powershell_job(targets: Sequence[Target], settings: ProbeSettings) -> ProbeJob:
    """The PowerShell source that probes `targets` on a Windows host.

    `ProbeJob.script` is final PowerShell; the transport only encodes it. Raises
    `InputError` for a target that is not an http(s) URL or an empty target list.
    """
    script = substitute_data(minify(probe_source()), encode_data(targets, settings))
    return ProbeJob(script=wrap_compressed(script))


# --- parsing ---------------------------------------------------------------------------


def clean_text(text: str, limit: int = MAX_DETAIL) -> str:
    """One line, no control or format characters, at most `limit` characters."""
    chars = [" " if unicodedata.category(ch)[0] == "C" else ch for ch in text[: limit * 4]]
    line = mask_userinfo(" ".join("".join(chars).split()))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _field(rec: Mapping[str, Any], key: str) -> str:
    value = rec.get(key)
    if isinstance(value, str):
        return clean_text(value, _MAX_FIELD)
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


def _int_field(rec: Mapping[str, Any], key: str) -> int | None:
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return int(value)


def _records(stdout: bytes, nonce: str) -> list[dict[str, Any]]:
    prefix = f"{RECORD_MARK} {nonce} "
    text = stdout[:MAX_OUTPUT_BYTES].decode("utf-8", errors="replace")
    found: list[dict[str, Any]] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line.startswith(prefix) or len(line) > _MAX_RECORD_CHARS:
            continue
        try:
            body = base64.b64decode(line[len(prefix) :], validate=True)
            obj = json.loads(body.decode("utf-8"))
        except (ValueError, binascii.Error, RecursionError):
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


def stderr_text(stderr: bytes) -> str:
    """Readable stderr: the error lines of a CLIXML stream, or the bytes as text.

    PowerShell writes stderr as CLIXML when it runs an encoded command with redirected
    output; progress records ("Preparing modules for first use.") are noise, not errors.
    Parsed with a regex rather than an XML parser: this is untrusted input.
    """
    text = stderr[:MAX_OUTPUT_BYTES].decode("utf-8", errors="replace")
    if not text.startswith("#< CLIXML"):
        return text
    parts = []
    for match in _CLIXML_S_RE.finditer(text):
        unescaped = _CLIXML_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), match.group(1))
        parts.append(html.unescape(unescaped))
    return "".join(parts)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return clean_text(line, 200)
    return ""


def _no_records(raw: RawOutput) -> HostLevelError:
    """Why a run printed no record at all: PowerShell missing, blocked, or garbage."""
    out = raw.stdout[:MAX_OUTPUT_BYTES].decode("utf-8", errors="replace")
    err = stderr_text(raw.stderr)
    both = f"{err}\n{out}"
    said = _first_line(err) or _first_line(out)
    status = "none" if raw.exit_status is None else str(raw.exit_status)
    # cmd.exe's answer when powershell.exe is not on PATH; 9009 is its locale-free exit code.
    if raw.exit_status == 9009 or "is not recognized as an internal or external command" in both:
        return HostLevelError(
            HostOutcome.PROBE_UNAVAILABLE,
            clean_text(f"powershell.exe could not be started (exit status {status}): {said}"),
        )
    if "language mode" in both.lower():
        return HostLevelError(
            HostOutcome.PROBE_UNAVAILABLE,
            clean_text(f"PowerShell refused the probe (constrained language mode): {said}"),
        )
    if "The command line is too long" in both:
        return HostLevelError(
            HostOutcome.ERROR, clean_text(f"cmd.exe rejected the probe command: {said}")
        )
    return HostLevelError(
        HostOutcome.ERROR,
        clean_text(
            f"no probe records in the host's output (exit status {status}"
            f"{', output truncated' if raw.truncated else ''}): {said or 'no output'}"
        ),
    )


def _tunnel(rec: Mapping[str, Any]) -> Tunnel:
    value = rec.get("tunnel")
    try:
        return Tunnel(value) if isinstance(value, str) else Tunnel.NOT_ASKED
    except ValueError:
        return Tunnel.NOT_ASKED


def evidence(rec: Mapping[str, Any]) -> Evidence:
    """What one target record says, every field bounded and on one line; no verdict."""
    status = _int_field(rec, "status")
    if status is not None and not 100 <= status <= 999:
        status = None
    ms = _int_field(rec, "ms")
    return Evidence(
        tool=TOOL,
        http_status=status,
        message=_field(rec, "msg"),
        exception_type=_field(rec, "type"),
        reason=_field(rec, "reason"),
        socket_error=_field(rec, "sock"),
        inner=_field(rec, "inner"),
        tls_layer=rec.get("tls") is True,
        tunnel=_tunnel(rec),
        deadline=rec.get("deadline") is True,
        issuer=_field(rec, "issuer"),
        proxy=_field(rec, "proxy"),
        elapsed=None if ms is None or ms < 0 else ms / 1000.0,
    )


def _observation(target: Target, rec: Mapping[str, Any] | None, missing: str) -> Observation:
    if rec is None:
        return Observation(url=target.url, outcome=Outcome.ERROR, detail=missing, tool=TOOL)
    found = evidence(rec)
    outcome, detail = classify(found, target)
    return Observation(
        url=target.url,
        outcome=outcome,
        detail=clean_text(detail),
        http_status=tunnel_status(found, outcome),
        tool=TOOL,
        tls_issuer=_issuer(rec),
        proxy=clean_text(found.proxy, 300),
        time_total=found.elapsed,
    )


def _issuer(rec: Mapping[str, Any]) -> str:
    """The certificate issuer with its control characters escaped, not dropped: a name that
    holds them is itself a finding."""
    value = rec.get("issuer")
    if not isinstance(value, str):
        return ""
    return clean_text(escape_controls(value[: _MAX_FIELD * 4]), 300)


def _scrubbed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with every secret of the proxies they name removed from every text."""
    scrub = Scrubber.for_settings(r["proxy"] for r in records if isinstance(r.get("proxy"), str))
    if not scrub.secrets:
        return records
    return [{k: scrub(v) if isinstance(v, str) else v for k, v in r.items()} for r in records]


def parse_powershell(raw: RawOutput, targets: Sequence[Target], nonce: str) -> ProbeResult:
    """One observation per target from the probe's output, or a `HostLevelError`.

    Raises `HostLevelError(PROBE_UNAVAILABLE)` when PowerShell or Invoke-WebRequest is not
    there, `HostLevelError(ERROR)` when the output holds no record of this run at all.
    A target whose record is missing (truncated output, killed probe) gets `Outcome.ERROR`.
    """
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("probe nonce must be 1-64 ASCII letters or digits")
    records = _scrubbed(_records(raw.stdout, nonce))
    if not records:
        raise _no_records(raw)
    facts: dict[str, str] = {}
    by_index: dict[int, dict[str, Any]] = {}
    fatal = ""
    for rec in records:
        kind = rec.get("kind")
        if kind == "unavailable":
            version = clean_text(_field(rec, "ps"), 40) or "unknown"
            raise HostLevelError(
                HostOutcome.PROBE_UNAVAILABLE,
                f"Invoke-WebRequest is not available (PowerShell {version}); "
                "the probe needs PowerShell 3.0 or later",
            )
        if kind == "facts" and not facts:
            facts = {k: clean_text(_field(rec, k), 200) for k in _FACT_KEYS if _field(rec, k)}
        elif kind == "target":
            index = _int_field(rec, "i")
            if index is not None and 0 <= index < len(targets) and index not in by_index:
                by_index[index] = rec
        elif kind == "fatal" and not fatal:
            fatal = _field(rec, "msg") or "no message"
    missing = "probe output ended before this target's record"
    if fatal:
        missing = clean_text(f"{missing} (the probe failed: {fatal})")
    elif raw.truncated:
        missing = f"{missing} (output was cut at {MAX_OUTPUT_BYTES} bytes)"
    observations = tuple(
        _observation(target, by_index.get(i), missing) for i, target in enumerate(targets)
    )
    return ProbeResult(observations=observations, facts=MappingProxyType(facts))


class PowerShellProbe(Probe):
    """Invoke-WebRequest under Windows PowerShell 5.1 or PowerShell 7, for Windows hosts."""

    def build_job(self, targets: Sequence[Target], settings: ProbeSettings) -> ProbeJob:
        return build_powershell_job(targets, settings)

    def parse(self, raw: RawOutput, targets: Sequence[Target], nonce: str) -> ProbeResult:
        return parse_powershell(raw, targets, nonce)
