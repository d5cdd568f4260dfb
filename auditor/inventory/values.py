"""Variable values that need more than a plain Python type, and their JSON form.

Ansible distinguishes strings it may template from strings it must not ("unsafe": YAML
`!unsafe`, bytes literals on INI host lines, `__ansible_unsafe` in JSON) and keeps vaulted
values encrypted. Both are plain data to the auditor, but `ansible-inventory --list` prints
them as `{"__ansible_unsafe": ...}` and `{"__ansible_vault": ...}`, so we keep the marks to
print the same.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class UnsafeStr(str):
    """A string Ansible would never template; otherwise an ordinary `str`."""

    __slots__ = ()


@dataclass(frozen=True)
class Vaulted:
    """An Ansible Vault value, kept encrypted: the auditor has no vault password.

    Deliberately not a `str`, so a vaulted password can never be sent as if it were the
    plain text.
    """

    ciphertext: str

    def __str__(self) -> str:
        return "<vaulted>"


def mark_unsafe(value: Any) -> Any:
    """`value` with every string in it (not mapping keys) made an UnsafeStr."""
    if isinstance(value, str):
        return UnsafeStr(value)
    if isinstance(value, list):
        return [mark_unsafe(item) for item in value]
    if isinstance(value, Mapping):
        return {key: mark_unsafe(item) for key, item in value.items()}
    return value


def to_json(value: Any) -> Any:
    """Return `value` as the JSON-ready data `ansible-inventory --list` would print."""
    if isinstance(value, UnsafeStr):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, Vaulted):
        return {"__ansible_vault": value.ciphertext}
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {_json_key(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        # YAML !!binary: Ansible cannot print it at all; its text is the closest we can offer.
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _json_key(key: Any) -> str:
    """Mapping keys as `json.dumps` writes them (Ansible keeps non-string keys as parsed)."""
    if isinstance(key, str):
        return str(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, float):
        if key != key:
            return "NaN"
        if key in (float("inf"), float("-inf")):
            return "Infinity" if key > 0 else "-Infinity"
        return repr(key)
    return str(key)
