"""The Qualys agent's facts as a host reported them, parsed as hostile data.

A probe sends raw, bounded evidence: what the package database said, whether the daemon
runs, the agent's configuration file as bytes, whether its proxy CA bundle exists, and which
way the probe went. Nothing here runs or evaluates any of it: a configuration file is read
line by line as text (shell syntax stays literal text), every size is bounded, and every
credential is masked (`user:***@`) before a fact leaves this module. The raw proxy texts are
handed back separately, only so the caller can scrub their secrets from everything else the
host sent.

Facts and sources (see also `auditor.agent`):
- Package `qualys-cloud-agent`, daemon `qualys-cloud-agent`: verified, the vendor's Linux
  install guide ("Anti-Virus and HIPS Exclusion").
- `/etc/sysconfig/qualys-cloud-agent` (RPM family), `/etc/default/qualys-cloud-agent` (Debian
  family), keys `qualys_https_proxy=` (platform traffic) and `https_proxy=` (everything):
  verified, the vendor's Linux/Unix and macOS install guides ("Proxy configuration",
  https://docs.qualys.com/en/ca/install-guide/macos/proxy_configuration/proxy_configuration.htm).
- The list form (double quotes, ';', up to five, first tried first) and the CA bundle path:
  verified, https://docs.qualys.com/en/ca/install-guide/unix/proxy_config/multi_proxy.htm.
- Which key the agent uses for the CDN when both are set: unverified. The CDN is a Qualys
  service and the vendor recommends listing proxies in `qualys_https_proxy`, so that key is
  taken first, then `https_proxy` (inferred).
- The shape of credentials encrypted by the vendor's "Proxy Configuration Encryption
  Utility": not public. A credential that is one long run of base64 characters is taken as
  encrypted (inferred, unverified); it is never decrypted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from auditor.models import AgentFacts, ProbePath
from auditor.probes import Scrubber, escape_controls

# The bytes of one configuration file the probe sends (probe.sh AUDITOR_CONF_MAX); it sends
# one more when the file is longer, so the parser can say the copy was cut.
MAX_CONFIG_BYTES = 16384
# Verified: "You can have up to five proxy servers included in the proxy URL."
MAX_PROXIES = 5
_MAX_LINE = 4096
_MAX_TEXT = 200
_MAX_NOTES = 8
# Checked in this order: the first key that is set gives the agent's proxy list (inferred).
PROXY_KEYS = ("qualys_https_proxy", "https_proxy")
_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)(\s*)=(.*)$")
# Quotes a file may hold: ASCII, and the typographic ones the vendor's own pages show
# (copied from a web page into a file; whether the agent accepts those is unverified).
_OPEN_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u201d": "\u201d"}
# A credential the vendor's utility encrypted (inferred shape, see the module docstring).
_ENCRYPTED = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,15})://")
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]{1,253})(:\d{1,5})?/?$")


@dataclass(frozen=True)
class ProxyConfig:
    """The agent's proxy list read from one file: `raw` holds the secrets (for scrubbing
    only), `shown` the same list masked."""

    key: str = ""
    raw: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    encrypted: bool = False
    notes: tuple[str, ...] = ()


def _text(value: str) -> str:
    return escape_controls(value)[:_MAX_TEXT]


def _userinfo(proxy: str) -> tuple[str, str, str] | None:
    """(scheme prefix, userinfo, rest) when `proxy` holds credentials."""
    if "@" not in proxy:
        return None
    found = _SCHEME.match(proxy)
    prefix = found.group(0) if found else ""
    userinfo, _, rest = proxy[len(prefix) :].rpartition("@")
    return prefix, userinfo, rest


def looks_encrypted(proxy: str) -> bool:
    """True when the proxy's credentials look encrypted by the vendor's utility (inferred)."""
    parts = _userinfo(proxy)
    if parts is None:
        return False
    user, _, password = parts[1].partition(":")
    return any(_ENCRYPTED.fullmatch(p) for p in (user, password) if p)


def mask_proxy(proxy: str) -> str:
    """The proxy with its password shown as `***` (`user:***@host`); a lone token, or a
    user name that is itself encrypted, is masked whole. Control characters escaped."""
    parts = _userinfo(proxy)
    if parts is None:
        return _text(proxy)
    prefix, userinfo, rest = parts
    user, colon, _ = userinfo.partition(":")
    if not colon or _ENCRYPTED.fullmatch(user) or "%" in user:
        shown_user = "***"
    else:
        shown_user = f"{user[:64]}:***"
    return _text(f"{prefix}{shown_user}@{rest}")


def _check_proxy(proxy: str, where: str) -> str:
    """A note when `proxy` is not a URL a proxy can be reached by, else ""."""
    found = _SCHEME.match(proxy)
    if found and found.group(1).lower() not in ("http", "https", "socks5", "socks5h", "socks4"):
        return f"{where}: unsupported proxy scheme {_text(found.group(1))!r}"
    rest = proxy[found.end() if found else 0 :]
    hostport = rest.rpartition("@")[2]
    if not _HOSTPORT.match(hostport):
        return f"{where}: {mask_proxy(proxy)!r} is not a proxy address"
    return ""


def _value(text: str, where: str, notes: list[str]) -> str:
    """An assignment's value as a shell would read plain text: quoted or up to a blank.
    Never expanded: `$(...)`, backquotes and `${...}` stay literal (and are noted)."""
    text = text.strip()
    if text[:1] in _OPEN_QUOTES:
        close = _OPEN_QUOTES[text[0]]
        body = text[1:]
        end = body.find(close)
        if text[0] not in "\"'":
            notes.append(f"{where}: typographic quotes (the agent may not read them)")
        if end < 0:
            notes.append(f"{where}: unterminated quote; the rest of the line was taken")
            value = body
        else:
            value = body[:end]
    else:
        value = re.split(r"\s", text, maxsplit=1)[0]
    if "$" in value or "`" in value:
        notes.append(f"{where}: shell syntax taken as literal text (never evaluated)")
    return value


def parse_proxy_config(data: bytes, name: str) -> ProxyConfig:
    """The agent's proxy list from the configuration file `name`, sent as `data`.

    The last assignment of a key counts (as when the file is read as an environment file);
    `qualys_https_proxy` is taken before `https_proxy`. The list is split on ';' and cut to
    the documented five.
    """
    notes: list[str] = []
    if len(data) > MAX_CONFIG_BYTES:
        notes.append(f"{name}: longer than {MAX_CONFIG_BYTES} bytes; only its start was read")
        data = data[:MAX_CONFIG_BYTES]
    if b"\0" in data:
        notes.append(f"{name}: holds binary data")
    text = data.decode("utf-8", errors="replace").replace("\0", "")
    values: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{name} line {number}"
        line = line[:_MAX_LINE].strip()
        if not line or line.startswith("#"):
            continue
        found = _ASSIGNMENT.match(line)
        if found is None or found.group(1) not in PROXY_KEYS:
            continue
        if found.group(2):
            notes.append(f"{where}: blank before '=' (a shell would not assign this)")
            continue
        values[found.group(1)] = (_value(found.group(3), where, notes), where)
    for key in PROXY_KEYS:
        if key in values and values[key][0].strip():
            value, where = values[key]
            break
    else:
        return ProxyConfig(notes=tuple(notes[:_MAX_NOTES]))
    raw = tuple(p.strip() for p in value.split(";") if p.strip())
    if len(raw) > MAX_PROXIES:
        notes.append(f"{where}: {len(raw)} proxies; the agent uses at most {MAX_PROXIES}")
        raw = raw[:MAX_PROXIES]
    notes.extend(n for n in (_check_proxy(p, where) for p in raw) if n)
    return ProxyConfig(
        key=key,
        raw=raw,
        shown=tuple(mask_proxy(p) for p in raw),
        encrypted=any(looks_encrypted(p) for p in raw),
        notes=tuple(notes[:_MAX_NOTES]),
    )


@dataclass(frozen=True)
class PosixAgentRecords:
    """The agent's A and C records of one POSIX probe run, as the host sent them."""

    packages: tuple[tuple[str, str, str], ...] = ()
    """(manager, exit status, output) per package database asked."""
    service: tuple[str, str] = ("", "")
    files: tuple[tuple[str, bytes], ...] = ()
    ca_bundle: str = ""
    path: str = ""


# The configuration files the probe may send, in the order the agent families use them.
CONFIG_FILES = ("/etc/sysconfig/qualys-cloud-agent", "/etc/default/qualys-cloud-agent")


def collect_posix(lines: Sequence[Sequence[str]]) -> PosixAgentRecords | None:
    """The agent records among a probe's records; None when the probe sent none (an older
    probe, or output cut before them)."""
    chunks: dict[str, dict[int, str]] = {}
    agent: Sequence[str] | None = None
    for fields in lines:
        kind = fields[0]
        # A mgr1 status1 answer1 mgr2 status2 answer2 svc_how svc_state ca path conf_files
        if kind == "A" and len(fields) == 12 and agent is None:
            agent = fields
        elif kind == "C" and len(fields) == 4 and fields[1] in CONFIG_FILES:
            seq = fields[2]
            # 16 KiB + 1 as hex, 400 characters a chunk: at most 82 chunks a file.
            if seq.isdigit() and len(seq) <= 3 and re.fullmatch(r"[0-9a-f]{0,400}", fields[3]):
                chunks.setdefault(fields[1], {}).setdefault(int(seq), fields[3])
    if agent is None:
        return None
    packages = tuple((m, r, o) for m, r, o in (agent[1:4], agent[4:7]) if m)
    service = (agent[7], agent[8])
    ca, path = agent[9], agent[10]
    sent = agent[11].split()
    files = []
    for name in CONFIG_FILES:
        if name in sent:
            parts = chunks.get(name, {})
            text = "".join(parts[i] for i in sorted(parts) if i <= 82)
            # A missing chunk leaves odd hex or a gap; bytes.fromhex takes what is whole.
            if len(text) % 2:
                text = text[:-1]
            files.append((name, bytes.fromhex(text)))
    return PosixAgentRecords(packages, service, tuple(files), ca, path)


def config_secrets(records: PosixAgentRecords) -> tuple[str, ...]:
    """Every proxy setting of the agent's files as the host holds it, credentials and all:
    for the scrubber only, so no form of them survives anywhere in what the host sent."""
    found: list[str] = []
    for name, data in records.files:
        found.extend(parse_proxy_config(data, name).raw)
    return tuple(found)


def _package(packages: Sequence[tuple[str, str, str]]) -> tuple[bool | None, str, str, str]:
    """(installed, version, source, note) from the package databases' answers."""
    answered = False
    for manager, status, output in packages:
        if manager == "dpkg":
            # "install ok installed|6.4.0.123"; exit 1 "no packages found matching ...".
            state, _, version = output.partition("|")
            if status == "0" and state.split()[-1:] == ["installed"]:
                return True, version.strip(), "dpkg", ""
            answered = answered or status in ("0", "1")
        elif manager == "rpm":
            if status == "0" and output.strip():
                return True, output.strip(), "rpm", ""
            answered = answered or status == "1"
    if answered:
        return False, "", "+".join(m for m, _, _ in packages), ""
    if not packages or all(m == "none" for m, _, _ in packages):
        return None, "", "", "neither dpkg-query nor rpm on the host"
    return None, "", "", "the package database did not answer"


def _running(service: tuple[str, str]) -> bool | None:
    how, state = service
    if how == "systemd":
        return state.strip() == "active" if state.strip() else None
    if how == "proc":
        return {"1": True, "0": False}.get(state)
    return None


def posix_agent_facts(
    records: PosixAgentRecords, scrub: Scrubber
) -> tuple[AgentFacts, ProxyConfig]:
    """The agent's facts (masked, scrubbed with `scrub`) and the proxy list they came from."""
    installed, version, source, note = _package(records.packages)
    notes = [note] if note else []
    config = ProxyConfig()
    config_name = ""
    for name, data in records.files:
        parsed = parse_proxy_config(data, name)
        notes.extend(parsed.notes)
        if parsed.raw and not config.raw:
            config, config_name = parsed, name
    if not config_name and records.files:
        config_name = records.files[0][0]
    try:
        path = ProbePath(records.path)
    except ValueError:
        path = ProbePath.SESSION
    facts = AgentFacts(
        installed=installed,
        version=_text(scrub(version)),
        running=_running(records.service) if installed else None,
        source=source,
        config=config_name,
        proxy_key=config.key,
        proxies=tuple(scrub(p) for p in config.shown),
        credentials_encrypted=config.encrypted,
        ca_bundle=records.ca_bundle == "1",
        path=path,
        notes=tuple(_text(scrub(n)) for n in notes[:_MAX_NOTES]),
    )
    return facts, config


def _address(proxy: str) -> str:
    """A proxy's host and port, whatever its scheme or (masked) credentials."""
    found = _SCHEME.match(proxy)
    return proxy[found.end() if found else 0 :].rpartition("@")[2].rstrip("/").lower()


def failover_note(agent: AgentFacts | None, proxy: str) -> str:
    """When the probe went through one of the agent's fail-over proxies, which one and why
    ("" when it used the first, or no agent proxy)."""
    if agent is None or agent.path is not ProbePath.AGENT_PROXY or not proxy:
        return ""
    addresses = [_address(p) for p in agent.proxies]
    used = _address(proxy)
    if not addresses or used == addresses[0] or used not in addresses:
        return ""
    n = addresses.index(used) + 1
    return (
        f"through the agent's proxy {n} of {len(addresses)}: the one(s) before it could not be used"
    )


# --- Windows -------------------------------------------------------------------------------
# Verified: the service is QualysAgent and the agent's settings live under HKLM\SOFTWARE\Qualys
# (vendor's Windows "Anti-Virus and HIPS Exclusions" page); its proxy is set there with
# QualysProxy.exe, which alone can encrypt the proxy credentials, and otherwise the system
# (WinHTTP) proxy, a PAC URL or WPAD applies; a failed proxy is followed by a direct attempt
# (fail open) (https://docs.qualys.com/en/ca/install-guide/windows/configuration/configure_proxy.htm).
# Unverified: the registry value names QualysProxy.exe writes. Values are recognised by name
# (proxy / PAC / WPAD / credential words) and by shape (host:port), so a guess at exact
# names never decides. The WinHTTP blob layout (size, counter, flags, length-prefixed proxy
# and bypass lists) is the one `netsh winhttp` stores, read here from public descriptions
# (unverified against a real host in this project).
_CREDENTIAL_NAME = re.compile(r"user|pass|cred|auth", re.IGNORECASE)
_PAC_NAME = re.compile(r"pac|wpad", re.IGNORECASE)
_PROXY_VALUE = re.compile(r"^\s*(?:https?://)?[^\s;/]+:\d{1,5}")
_MAX_VALUES = 20


def _values(rec: dict[str, Any]) -> list[tuple[str, str, str]]:
    raw = rec.get("values")
    if isinstance(raw, dict):  # ConvertTo-Json unwraps a one-element array
        raw = [raw]
    out: list[tuple[str, str, str]] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and len(out) < _MAX_VALUES:
            key, name, value = (str(item.get(k, ""))[:2000] for k in ("key", "name", "value"))
            out.append((key, name, value))
    return out


def winhttp_proxy(hex_blob: str) -> str:
    """The proxy list of a WinHttpSettings blob (hex), "" when it says direct or is broken."""
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2}){0,4096}", hex_blob):
        return ""
    blob = bytes.fromhex(hex_blob)
    if len(blob) < 16 or not blob[8] & 2:
        return ""
    length = int.from_bytes(blob[12:16], "little")
    if length <= 0 or 16 + length > len(blob):
        return ""
    return blob[16 : 16 + length].decode("ascii", errors="replace")


# Verified: a WinHTTP proxy list holds entries `[<scheme>=][<scheme>://]<server>[:<port>]`
# separated by semicolons or whitespace (learn.microsoft.com, "WINHTTP_PROXY_INFO structure").
# So `http=p1:80;https=p2:443` names one proxy per scheme, not two to try in turn. Inferred: an
# `https=` entry is used for an https:// URL before an entry without a scheme; an entry for
# another scheme never is (the probe picks the same way).
_SCHEME_ENTRY = re.compile(r"^(\w+)=(.*)$")


def winhttp_https_proxies(proxy_list: str) -> tuple[str, ...]:
    """The entries of a WinHTTP proxy list that apply to https:// URLs, in the order the
    probe picks them (it uses the first): `https=` entries (the prefix removed), then entries
    without a scheme."""
    specific: list[str] = []
    generic: list[str] = []
    for entry in re.split(r"[;\s]+", proxy_list):
        found = _SCHEME_ENTRY.match(entry)
        if found is None:
            if entry:
                generic.append(entry)
        elif found.group(1).lower() == "https" and found.group(2):
            specific.append(found.group(2))
    return (*specific, *generic)[:MAX_PROXIES]


def _windows_proxies(rec: dict[str, Any]) -> tuple[str, str, tuple[str, ...], list[str]]:
    """(config, key, raw proxies, notes) from the agent record, as the probe chose them."""
    notes: list[str] = []
    chosen: tuple[str, str, tuple[str, ...]] | None = None
    for key, name, value in _values(rec):
        if _PAC_NAME.search(name) and value.strip():
            notes.append(f"{_text(name)}: {_text(value)} (PAC/WPAD is not evaluated by the probe)")
        elif chosen is None and not _CREDENTIAL_NAME.search(name) and _PROXY_VALUE.match(value):
            found = tuple(p.strip() for p in value.split(";") if p.strip())[:MAX_PROXIES]
            chosen = (_text(key), _text(name), found)
    if chosen is not None:
        return (*chosen, notes)
    system = winhttp_proxy(str(rec.get("winhttp", "")))
    found = winhttp_https_proxies(system)
    if found:
        return "WinHTTP", "WinHttpSettings", found, notes
    if system:
        notes.append("the WinHTTP proxy list names no proxy for https:// URLs")
    return "", "", (), notes


def windows_agent_secrets(rec: dict[str, Any]) -> tuple[str, ...]:
    """The proxy settings and credential values of the agent record, for the scrubber only
    (a credential value is given as a URL's password so the scrubber takes it whole)."""
    proxies = list(_windows_proxies(rec)[2])
    # Every entry of the WinHTTP list, those for other schemes too (their prefix removed).
    system = winhttp_proxy(str(rec.get("winhttp", "")))
    proxies += [_SCHEME_ENTRY.sub(r"\2", e) for e in re.split(r"[;\s]+", system) if e]
    for _, name, value in _values(rec):
        if _CREDENTIAL_NAME.search(name) and value:
            proxies.append(f"http://user:{value}@credential")
    return tuple(proxies)


def windows_agent_facts(rec: dict[str, Any], scrub: Scrubber) -> AgentFacts:
    """The agent's facts from the Windows probe's agent record (masked, scrubbed)."""
    installed = {"yes": True, "no": False}.get(str(rec.get("installed", "")))
    service = str(rec.get("service", ""))[:40]
    config, key, proxies, notes = _windows_proxies(rec)
    encrypted = any(_CREDENTIAL_NAME.search(n) and v for _, n, v in _values(rec))
    if encrypted:
        notes.append("proxy credentials are set (QualysProxy.exe stores them encrypted)")
    if installed is None:
        notes.append("neither an uninstall entry nor the QualysAgent service could be read")
    try:
        path = ProbePath(str(rec.get("path", "")))
    except ValueError:
        path = ProbePath.SESSION
    source = str(rec.get("source", ""))
    return AgentFacts(
        installed=installed,
        version=_text(scrub(str(rec.get("version", "")))),
        running=(service == "Running") if service and installed else None,
        source=source if source in ("uninstall", "service") else "",
        config=scrub(config),
        proxy_key=scrub(key),
        proxies=tuple(scrub(mask_proxy(p)) for p in proxies),
        credentials_encrypted=encrypted,
        ca_bundle=False,
        path=path,
        notes=tuple(_text(scrub(n)) for n in notes[:_MAX_NOTES]),
    )
