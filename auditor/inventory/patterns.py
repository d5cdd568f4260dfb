"""Ansible host patterns, as `--limit` takes them (ansible-core `inventory/manager.py`).

Forms: `all`, a group (its hosts and its descendants'), a host, a glob (`web*`), a regex
(`~web\\d+`), a subscript (`web[0]`, `web[1:3]`, `web[2:]`), unions `a:b` / `a,b`,
intersections `a:&b`, exclusions `a:!b`, and `@file` (one pattern per line).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from auditor.errors import InputError
from auditor.inventory.addresses import parse_address

if TYPE_CHECKING:
    from auditor.inventory.model import Inventory

# `expr[3]`, `expr[-1]`, `expr[1:3]`, `expr[2:]` (and the old `expr[1-3]`).
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
# With no comma, ':' separates patterns, except inside [...] (ranges, globs).
_COLON_PART = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_GLOB_CHARS = (".", "?", "*", "[")


def split_patterns(text: str) -> list[str]:
    """Split a pattern string at commas or, failing that, at colons (not inside [...]).

    A string that reads as one address (`host:22`, an IPv6 address) is one pattern.
    """
    if "," in text:
        parts = text.split(",")
    else:
        try:
            parse_address(text)
            parts = [text]
        except ValueError:
            parts = _COLON_PART.findall(text)
    return [part.strip() for part in parts if part.strip()]


def apply_limit(inventory: Inventory, pattern: str) -> Inventory:
    """The part of `inventory` that `--limit pattern` selects; InputError if nothing."""
    patterns: list[str] = []
    for part in split_patterns(pattern):
        if part.startswith("@"):
            patterns.extend(_read_limit_file(part[1:]))
        else:
            patterns.append(part)
    if not any(patterns):
        # Ansible ignores an empty limit.
        return inventory
    selected = set(select_hosts(inventory, patterns))
    if not selected:
        raise InputError(f"--limit {pattern!r} matched no hosts in {inventory.source}")
    groups = {
        name: dataclasses.replace(group, hosts=tuple(h for h in group.hosts if h in selected))
        for name, group in inventory.groups.items()
    }
    return dataclasses.replace(
        inventory,
        hosts=tuple(h for h in inventory.hosts if h.name in selected),
        groups=MappingProxyType(groups),
        warnings=tuple(w for w in inventory.warnings if not w.host or w.host in selected),
    )


def select_hosts(inventory: Inventory, patterns: list[str]) -> list[str]:
    """Names of the hosts the patterns select: unions first, then `&`, then `!`."""
    plain = [p for p in patterns if p and p[0] not in "&!"]
    intersect = [p for p in patterns if p and p[0] == "&"]
    exclude = [p for p in patterns if p and p[0] == "!"]
    host_names = {host.name for host in inventory.hosts}
    selected: list[str] = []
    chosen: set[str] = set()
    for pattern in plain or ["all"]:
        # A pattern naming a host is that host, even if a group has the same name.
        matches = [pattern] if pattern in host_names else _match_one(inventory, pattern)
        for name in matches:
            if name not in chosen:
                chosen.add(name)
                selected.append(name)
    for pattern in intersect:
        keep = set(_match_one(inventory, pattern[1:]))
        selected = [name for name in selected if name in keep]
    for pattern in exclude:
        drop = set(_match_one(inventory, pattern[1:]))
        selected = [name for name in selected if name not in drop]
    return selected


def _match_one(inventory: Inventory, pattern: str) -> list[str]:
    if not pattern:
        raise InputError("--limit: '&' and '!' must be followed by a pattern")
    expression, subscript = _split_subscript(pattern)
    hosts = _enumerate(inventory, expression)
    if not hosts or subscript is None:
        return hosts
    start, end = subscript
    try:
        if end is None or end == 0:
            # Ansible reads `[n:0]` like `[n]`.
            return [hosts[start]]
        last = len(hosts) - 1 if end == -1 else end
        return hosts[start : last + 1]
    except IndexError:
        raise InputError(f"--limit: no hosts matched the subscripted pattern {pattern!r}") from None


def _split_subscript(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    if pattern.startswith("~"):
        return pattern, None
    match = _SUBSCRIPT.match(pattern)
    if not match:
        return pattern, None
    expression, index, start, _sep, end = match.groups()
    if index:
        return expression, (int(index), None)
    return expression, (int(start), int(end) if end else -1)


def _enumerate(inventory: Inventory, pattern: str) -> list[str]:
    """Hosts of every group the pattern names, then (if none, or a glob) matching hosts."""
    try:
        regex = re.compile(pattern[1:] if pattern.startswith("~") else fnmatch.translate(pattern))
    except re.error as exc:
        raise InputError(f"--limit: invalid pattern {pattern!r}: {exc}") from None
    results: list[str] = []
    groups = [name for name in inventory.groups if regex.match(name)]
    for name in groups:
        results.extend(inventory.group_hosts(name))
    if not groups or pattern.startswith("~") or any(c in pattern for c in _GLOB_CHARS):
        results.extend(host.name for host in inventory.hosts if regex.match(host.name))
    return results


def _read_limit_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read limit file: {exc}", source=path) from None
    return [line.strip() for line in text.split("\n")]
