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


def secret_from_file(path: Path, setting: str = "--password-file") -> Secret:
    """Read a secret from a regular file that only its owner can read (like ssh does for
    keys): UTF-8 text without its final newline, bounded in size; a FIFO or device is
    refused."""
    from auditor.material import SECRET_LIMIT, MaterialError, read_material

    try:
        material = read_material(path, SECRET_LIMIT)
    except MaterialError as exc:
        raise InputError(f"{setting}: cannot read secret file: {exc.reason}", str(path)) from None
    if material.mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"{setting}: secret file must not be readable by group or others (chmod 600)",
            str(path),
        )
    try:
        text = material.data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{setting}: secret file is not UTF-8 text", str(path)) from None
    return Secret(text.rstrip("\r\n"))


# Inventory variables that hold a password, first match wins (Ansible's names and aliases).
SSH_PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass")
WINRM_PASSWORD_VARS = ("ansible_password", "ansible_winrm_password", "ansible_winrm_pass")
# Never sent by the auditor, but a host's password all the same: scrubbed like the others.
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass")


def inventory_secret(*names: str, hostvars: Mapping[str, Any]) -> Secret | None:
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
                f"{name} is vault-encrypted and the auditor cannot decrypt it; "
                "give the password in the environment or with --ask-pass instead"
            )
        return Secret(str(value))
    return None
