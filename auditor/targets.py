"""Targets: the built-in vendor URL catalog, user URLs and targets files, all validated."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from auditor.errors import InputError
from auditor.models import Target

# Sources for the catalog (see docs/ in the README for the full references):
_SEED = "Qualys docs 'Download Cloud Agent Resources from CDN' (curl -v / iwr check URL)"
_PLATFORM_ID = "qualys.com/platform-identification"
_INSTALL = "Qualys Cloud Agent install scripts (public)"
_THIRD = "third-party published tables/scripts"
_DOWNLOADS = "Qualys public download links"
_INFERRED = "inferred from the naming pattern; no public source found"


@dataclass(frozen=True)
class QualysPlatform:
    """One Qualys platform: where its Cloud Agent server and its agent CDN live."""

    code: str
    portal: str
    agent_host: str | None
    agent_verified: bool
    agent_source: str
    cdn_host: str | None
    cdn_verified: bool
    cdn_source: str


# Facts from the vendor's platform identification page and the sources named per entry.
CATALOG: tuple[QualysPlatform, ...] = (
    QualysPlatform(
        "US1",
        "qualysguard.qualys.com",
        "qagpublic.qg1.apps.qualys.com",
        True,
        _INSTALL,
        "cask.qg1.apps.qualys.com",
        True,
        _DOWNLOADS,
    ),
    QualysPlatform(
        "US2",
        "qualysguard.qg2.apps.qualys.com",
        "qagpublic.qg2.apps.qualys.com",
        True,
        _THIRD,
        "cask.qg2.apps.qualys.com",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "US3",
        "qualysguard.qg3.apps.qualys.com",
        "qagpublic.qg3.apps.qualys.com",
        True,
        _THIRD,
        "cask.qg3.apps.qualys.com",
        True,
        _SEED,
    ),
    QualysPlatform(
        "US4",
        "qualysguard.qg4.apps.qualys.com",
        "qagpublic.qg4.apps.qualys.com",
        True,
        _THIRD,
        "cask.qg4.apps.qualys.com",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "GOV1", "qualysguard.gov1.qualys.us", None, False, "not found", None, False, "not found"
    ),
    QualysPlatform(
        "EU1",
        "qualysguard.qualys.eu",
        "qagpublic.qg1.apps.qualys.eu",
        True,
        _INSTALL,
        "cask.qg1.apps.qualys.eu",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "EU2",
        "qualysguard.qg2.apps.qualys.eu",
        "qagpublic.qg2.apps.qualys.eu",
        False,
        _INFERRED,
        "cask.qg2.apps.qualys.eu",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "EU3",
        "qualysguard.qg3.apps.qualys.it",
        "qagpublic.qg3.apps.qualys.it",
        False,
        _INFERRED,
        "cask.qg3.apps.qualys.it",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "IN1",
        "qualysguard.qg1.apps.qualys.in",
        "qagpublic.qg1.apps.qualys.in",
        False,
        _INFERRED,
        "cask.qg1.apps.qualys.in",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "CA1",
        "qualysguard.qg1.apps.qualys.ca",
        "qagpublic.qg1.apps.qualys.ca",
        False,
        _INFERRED,
        "cask.qg1.apps.qualys.ca",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "AE1",
        "qualysguard.qg1.apps.qualys.ae",
        "qagpublic.qg1.apps.qualys.ae",
        False,
        _INFERRED,
        "cask.qg1.apps.qualys.ae",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "UK1",
        "qualysguard.qg1.apps.qualys.co.uk",
        "qagpublic.qg1.apps.qualys.co.uk",
        False,
        _INFERRED,
        "cask.qg1.apps.qualys.co.uk",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "AU1",
        "qualysguard.qg1.apps.qualys.com.au",
        "qagpublic.qg1.apps.qualys.com.au",
        False,
        _INFERRED,
        "cask.qg1.apps.qualys.com.au",
        False,
        _INFERRED,
    ),
    QualysPlatform(
        "KSA1",
        "qualysguard.qg1.apps.qualysksa.com",
        "qagpublic.qg1.apps.qualysksa.com",
        False,
        _INFERRED,
        "cask.qg1.apps.qualysksa.com",
        False,
        _INFERRED,
    ),
)

DEFAULT_PLATFORM = "US3"
_PLATFORMS = {p.code: p for p in CATALOG}


def platform_targets(code: str) -> tuple[Target, ...]:
    """The CDN health URL and the Cloud Agent server URL for one platform."""
    platform = _PLATFORMS.get(code.strip().upper())
    if platform is None:
        known = ", ".join(_PLATFORMS)
        raise InputError(f"unknown platform {code!r} (known: {known})", "--platform")
    out = []
    if platform.cdn_host:
        out.append(
            Target(
                url=f"https://{platform.cdn_host}/status",
                name=f"{platform.code} agent CDN",
                category="CDN",
                platform=platform.code,
                verified=platform.cdn_verified,
                source=platform.cdn_source,
            )
        )
    if platform.agent_host:
        out.append(
            Target(
                url=f"https://{platform.agent_host}/CloudAgent/",
                name=f"{platform.code} Cloud Agent server",
                category="agent platform",
                # The agent endpoint answers bare GETs with a client error; any HTTP answer over
                # verified TLS proves the path is open.
                expected_status=tuple(range(200, 500)),
                platform=platform.code,
                verified=platform.agent_verified,
                source=platform.agent_source,
            )
        )
    if not out:
        raise InputError(f"platform {platform.code} has no known agent URLs", "--platform")
    return tuple(out)


def catalog_targets() -> tuple[Target, ...]:
    """Every catalog entry, for `auditor targets`."""
    return tuple(t for p in CATALOG if p.cdn_host or p.agent_host for t in platform_targets(p.code))


def default_targets() -> tuple[Target, ...]:
    """The vendor's own check: the US3 CDN status URL only."""
    return platform_targets(DEFAULT_PLATFORM)[:1]


# Printable ASCII minus space, quotes, backslash, backtick and angle brackets: the URL must
# pass untouched through any shell, PowerShell, CSV or HTML it meets. IDNs go in as punycode.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+")
_HOSTNAME = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)
MAX_URL_LENGTH = 2048


def validate_url(url: str, source: str = "--url", line: int | None = None) -> str:
    """Return `url` if it is an absolute http(s) URL safe to hand to any probe."""
    shown = url if len(url) <= 80 else url[:77] + "..."

    def bad(why: str) -> InputError:
        return InputError(f"bad URL {shown!r}: {why}", source, line)

    if not url:
        raise bad("empty")
    if len(url) > MAX_URL_LENGTH:
        raise bad(f"longer than {MAX_URL_LENGTH} characters")
    if not _URL_CHARS.fullmatch(url):
        raise bad(
            "contains whitespace, quotes, control or non-ASCII characters "
            "(percent-encode them; use punycode for international names)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme not in ("http", "https"):
        raise bad("only http:// and https:// URLs can be probed")
    host = parts.hostname or ""
    if not host:
        raise bad("no host")
    if parts.username is not None or parts.password is not None:
        raise bad("credentials in URLs are not allowed")
    if not (_HOSTNAME.match(host) or _is_ip_literal(host)):
        raise bad(f"host {host!r} is not a valid name or address")
    if port == 0:
        raise bad("port 0")
    return url


def _is_ip_literal(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def url_targets(urls: Iterable[str]) -> tuple[Target, ...]:
    return tuple(Target(url=validate_url(u), name=u, category="custom") for u in urls)


# A targets file is a short list a person writes; these bound what a hostile or mistaken
# one costs (the probe runs every target on every host).
MAX_TARGETS_FILE_BYTES = 1024 * 1024
MAX_TARGETS = 1000


@dataclass(frozen=True)
class TargetLimits:
    """How large a targets file, and the whole selection of targets, may be."""

    max_file_bytes: int = MAX_TARGETS_FILE_BYTES
    max_targets: int = MAX_TARGETS

    @classmethod
    def of(cls, max_file_bytes: int | None = None, max_targets: int | None = None) -> TargetLimits:
        """Limits with the defaults for what is not given."""
        return cls(max_file_bytes or MAX_TARGETS_FILE_BYTES, max_targets or MAX_TARGETS)


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; InputError if it is not a regular file or is larger than allowed."""
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError("not a regular file", source)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise InputError(
            f"larger than {max_bytes} bytes (raise the limit with --max-targets-file-size)",
            source,
        )
    return data


def load_targets_file(path: Path, limits: TargetLimits | None = None) -> tuple[Target, ...]:
    """Load a YAML targets file: a list of {name, url, category, expected_status}.

    A top-level mapping with a `targets:` list is accepted too. Raises InputError for a
    file over the size limit, more targets than allowed, or YAML whose aliases expand
    it far beyond its size (see `auditor.yamlbound`).
    """
    import yaml

    from auditor.yamlbound import AliasBombError, check_expansion

    limits = limits or TargetLimits()
    source = str(path)
    try:
        text = _read_bounded(path, limits.max_file_bytes).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", source) from None
    loader_class: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        # Composed and measured first, then built: the nodes also give each item's line.
        nodes = loader.get_single_node()
        if nodes is not None:
            check_expansion(nodes)
        data = loader.construct_document(nodes) if nodes is not None else None
    except AliasBombError as exc:
        raise InputError(f"not valid YAML: {exc}", source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(f"not valid YAML: {getattr(exc, 'problem', exc)}", source, line) from None
    except RecursionError:
        raise InputError("YAML nested too deeply", source) from None
    except ValueError as exc:  # PyYAML lets some escape (e.g. an impossible date)
        raise InputError(f"not valid YAML: {exc}", source) from None
    finally:
        loader.dispose()
    items: Any = data
    item_nodes: Any = nodes
    if isinstance(data, dict) and "targets" in data:
        items = data["targets"]
        mapping: Any = nodes
        # A repeated key: like the constructor, the last one wins.
        found = [v for k, v in mapping.value if getattr(k, "value", None) == "targets"]
        item_nodes = found[-1] if found else None
    if not isinstance(items, list) or not items:
        raise InputError("expected a non-empty list of targets", source)
    if len(items) > limits.max_targets:
        raise InputError(
            f"more than {limits.max_targets} targets (raise the limit with --max-targets)",
            source,
        )
    targets = []
    for index, item in enumerate(items):
        node = item_nodes.value[index] if isinstance(item_nodes, yaml.SequenceNode) else None
        line = node.start_mark.line + 1 if node is not None else None
        targets.append(_target_from_item(item, source, line))
    return tuple(targets)


def _target_from_item(item: Any, source: str, line: int | None) -> Target:
    if isinstance(item, str):
        return Target(url=validate_url(item, source, line), name=item)
    if not isinstance(item, dict):
        raise InputError("each target must be a URL or a mapping with a 'url'", source, line)
    unknown = set(item) - {"name", "url", "category", "expected_status", "expect"}
    if unknown:
        raise InputError(
            f"unknown target field(s): {_preview(', '.join(sorted(map(repr, unknown))))}",
            source,
            line,
        )
    url = item.get("url")
    if not isinstance(url, str):
        raise InputError("target has no 'url' string", source, line)
    validate_url(url, source, line)
    name = item.get("name", url)
    category = item.get("category", "custom")
    if not isinstance(name, str) or not isinstance(category, str):
        raise InputError("'name' and 'category' must be strings", source, line)
    if _UNSAFE_TEXT.search(name) or _UNSAFE_TEXT.search(category):
        raise InputError("'name' and 'category' must not contain control characters", source, line)
    expected = _expected_statuses(
        item.get("expected_status", item.get("expect", [200])), source, line
    )
    return Target(url=url, name=name[:200], category=category[:100], expected_status=expected)


def _preview(text: str, limit: int = 80) -> str:
    """A message's quote of the user's input, cut short: an error stays one short line."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f]")


def _expected_statuses(value: Any, source: str, line: int | None) -> tuple[int, ...]:
    """Accept 200, [200, 204], "2xx" or "200-399"."""
    values = value if isinstance(value, list) else [value]
    out: list[int] = []
    for v in values:
        if isinstance(v, bool):
            raise InputError(f"bad expected status {_preview(repr(v))}", source, line)
        if isinstance(v, int) and 100 <= v <= 599:
            out.append(v)
            continue
        text = str(v).strip().lower()
        if re.fullmatch(r"[1-5]xx", text):
            base = int(text[0]) * 100
            out.extend(range(base, base + 100))
        elif m := re.fullmatch(r"([1-5]\d\d)\s*-\s*([1-5]\d\d)", text):
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise InputError(f"bad expected status range {_preview(repr(text))}", source, line)
            out.extend(range(lo, hi + 1))
        else:
            raise InputError(
                f"bad expected status {_preview(repr(v))} (use 200, '2xx' or '200-399')",
                source,
                line,
            )
    return tuple(sorted(set(out)))


def select_targets(
    platforms: Sequence[str],
    urls: Sequence[str],
    files: Sequence[Path],
    limits: TargetLimits | None = None,
) -> tuple[Target, ...]:
    """Combine the selections in order, dropping repeated URLs; the default when none given.

    Raises InputError if more than `limits.max_targets` distinct URLs are chosen.
    """
    limits = limits or TargetLimits()
    chosen: list[Target] = []
    for code in platforms:
        chosen.extend(platform_targets(code))
    chosen.extend(url_targets(urls))
    for path in files:
        chosen.extend(load_targets_file(path, limits))
    if not chosen:
        return default_targets()
    seen: dict[str, Target] = {}
    for t in chosen:
        seen.setdefault(t.url, t)
    if len(seen) > limits.max_targets:
        raise InputError(
            f"{len(seen)} targets chosen; at most {limits.max_targets} "
            "(raise the limit with --max-targets)"
        )
    return tuple(seen.values())
