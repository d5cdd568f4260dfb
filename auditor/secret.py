"""A wrapper that keeps passwords out of reprs, logs, tracebacks and reports."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from auditor.errors import InputError


class Secret:
    """Holds a secret string; every textual form of the object is redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def secret_from_env(name: str) -> Secret | None:
    value = os.environ.get(name)
    return Secret(value) if value else None


def secret_from_file(path: Path) -> Secret:
    """Read a secret from a file that only its owner can read (like ssh does for keys)."""
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InputError(
                "secret file must not be readable by group or others (chmod 600)", str(path)
            )
        return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise InputError(f"cannot read secret file: {exc.strerror}", str(path)) from None


def inventory_secret(host: str, hostvars: Mapping[str, Any], *names: str) -> Secret | None:
    """A password given in the inventory (first of `names` that is set), wrapped.

    Vault-encrypted values are refused: the auditor has no vault password, and sending the
    ciphertext as a password would only fill the host's auth log.
    """
    from auditor.inventory.values import Vaulted

    for name in names:
        value = hostvars.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, Vaulted):
            raise InputError(
                f"host {host}: {name} is vault-encrypted and the auditor cannot decrypt it; "
                "give the password in the environment or with --ask-pass instead"
            )
        return Secret(str(value))
    return None
