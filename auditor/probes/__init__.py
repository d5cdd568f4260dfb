"""Probe scripts (real files beside this module) and the parsers of their records.

Every platform's probe implements one interface, `Probe`: `build_job` turns targets into a
`ProbeJob` (the complete probe program, user data never spliced into source), and `parse`
turns the `RawOutput` back into exactly one `Observation` per target, or raises
`HostLevelError` when the host could not run the probe. A parser only reads evidence out of
what the host printed; `auditor.classify` decides every verdict. `auditor.probes.registry`
picks the implementation for a host's platform.
"""

from __future__ import annotations

import base64
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote

from auditor.models import AgentFacts, Observation, ProbeJob, RawOutput, Target


@dataclass(frozen=True)
class ProbeSettings:
    """Knobs shared by every platform's probe."""

    connect_timeout: float = 5.0
    max_time: float = 10.0
    # By default a host with the Qualys agent is probed the way its agent goes (the agent's
    # first proxy, its CA bundle); direct probes as the login session would (`--direct`).
    direct: bool = False
    per_url: bool = False
    """One HTTP client process per URL even where one process could fetch them all (the
    POSIX probe's path for curl older than 7.75; set to compare the two paths)."""
    # A per-run random marker: a record must carry it to count, so text printed by a hostile
    # tool on the host cannot forge a record.
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass(frozen=True)
class ProbeResult:
    """One observation per target (in target order) and what the host said about itself."""

    observations: tuple[Observation, ...]
    facts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    agent: AgentFacts | None = None
    """What the probe found about the Qualys agent; None when the probe does not ask."""


class Probe(ABC):
    """One platform's probe: what to run on a host, and what its output says."""

    @abstractmethod
    def build_job(self, targets: Sequence[Target], settings: ProbeSettings) -> ProbeJob:
        """The job that probes every target in one session on the host.

        Raises `InputError` (or `ValueError` for a programming error) for targets or
        settings the probe cannot carry safely.
        """

    @abstractmethod
    def parse(self, raw: RawOutput, targets: Sequence[Target], nonce: str) -> ProbeResult:
        """One observation per target, in target order, from the host's output.

        Only records carrying `nonce` count. Raises `HostLevelError` when the host could not
        run the probe at all.
        """


# user:password@ in any URL a host prints (curl quotes a proxy URL it cannot parse); greedy
# up to the authority's last '@', since a password may hold one.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s'\"]*@")


def mask_userinfo(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text


def escape_controls(text: str) -> str:
    """`text` with every non-printable character shown as an escape (`\\x01`, `\\u202e`):
    visible, and unable to drive a terminal or break a line."""
    return "".join(
        ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"
        for ch in text
    )


# A scheme followed by at least one slash or backslash ("http://", and the typos "http:/" and
# "http:\\"): without one, "user:password@host" would pass its user name for a scheme.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[/\\]+")
# A password's pieces between URL delimiters: a tool that misparses the setting may print
# any one of them alone ("http://u:Pw0rd/x@h" can be cut at the "/").
_DELIMITERS = re.compile(r"[/\\?#@:;]")
# Shorter pieces would mask ordinary words everywhere; what they leak is two or three
# characters of a password that is masked whole wherever it appears whole.
_MIN_PIECE = 4
MASK = "***"


def proxy_secrets(setting: str) -> frozenset[str]:
    """The secrets in one proxy setting as a host holds it (URL, typo or scheme-less).

    Everything before the setting's last '@' (after any scheme) is credentials: the
    password is what follows the first ':' there, or the whole user part when there is no
    ':' (a token). Returned: the password as written, percent-decoded, its longer pieces, and
    the Basic credentials a tool would send. Empty when the setting holds no '@'.
    """
    setting = setting.strip()
    if "@" not in setting:
        return frozenset()
    userinfo = _SCHEME.sub("", setting.rpartition("@")[0], count=1)
    user, colon, password = userinfo.partition(":")
    secret = password if colon else user
    if not secret:
        return frozenset()
    found = {secret, unquote(secret)}
    for value in list(found):
        found.update(p for p in _DELIMITERS.split(value) if len(p) >= _MIN_PIECE)
    if colon:
        basic = f"{unquote(user)}:{unquote(password)}".encode()
        found.add(base64.b64encode(basic).decode("ascii"))
    return frozenset(s for s in found if s)


@dataclass(frozen=True)
class Scrubber:
    """Removes known secrets, raw or URL-encoded, from text a host sent back."""

    secrets: frozenset[str] = frozenset()

    @classmethod
    def for_settings(cls, settings: Iterable[str]) -> Scrubber:
        found: set[str] = set()
        for setting in settings:
            found |= proxy_secrets(setting)
        return cls(frozenset(found))

    def __call__(self, text: str) -> str:
        """`text` with every occurrence of every secret replaced by `***`.

        Occurrences are looked for in the text as it is and in its percent-decoded views
        ('+' read literally and as a space), so `%2F`, `%2f` and a mix of encoded and plain
        characters are all found; the mask covers the encoded span in the original.
        """
        if not self.secrets or not text:
            return text
        # Without '%' or '+' the decoded views are the text itself: one plain search decides.
        if "%" not in text and "+" not in text and not any(s in text for s in self.secrets):
            return text
        raw = text.encode("utf-8", errors="surrogateescape")
        hidden = bytearray(len(raw))
        views = [(raw, [(i, i + 1) for i in range(len(raw))])]
        views += [_decoded_view(raw, plus_space) for plus_space in (False, True)]
        for decoded, spans in views:
            for secret in self.secrets:
                needle = secret.encode("utf-8", errors="surrogateescape")
                start = decoded.find(needle)
                while start >= 0:
                    first, last = spans[start][0], spans[start + len(needle) - 1][1]
                    hidden[first:last] = b"\x01" * (last - first)
                    start = decoded.find(needle, start + 1)
        if not any(hidden):
            return text
        out = bytearray()
        i = 0
        while i < len(raw):
            if hidden[i]:
                while i < len(raw) and hidden[i]:
                    i += 1
                out += MASK.encode()
            else:
                out.append(raw[i])
                i += 1
        return out.decode("utf-8", errors="replace")


def _decoded_view(raw: bytes, plus_space: bool) -> tuple[bytes, list[tuple[int, int]]]:
    """`raw` percent-decoded once, with the span in `raw` of every decoded byte."""
    out = bytearray()
    spans: list[tuple[int, int]] = []
    i = 0
    hexdigits = b"0123456789abcdefABCDEF"
    while i < len(raw):
        byte = raw[i]
        if (
            byte == 0x25
            and i + 2 < len(raw)
            and raw[i + 1] in hexdigits
            and raw[i + 2] in hexdigits
        ):
            out.append(int(raw[i + 1 : i + 3], 16))
            spans.append((i, i + 3))
            i += 3
            continue
        out.append(0x20 if plus_space and byte == 0x2B else byte)
        spans.append((i, i + 1))
        i += 1
    return bytes(out), spans
