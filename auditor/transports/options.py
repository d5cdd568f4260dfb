"""What the SSH and WinRM transports are told, run-wide: typed, frozen, built once by
`auditor.settings` from every source and handed down; a host's inventory variables override
them per host."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from auditor.secret import Secret

WINRM_TRANSPORTS = ("ntlm", "basic", "kerberos", "credssp", "certificate")
POWERSHELLS = ("powershell", "pwsh")
CONNECT_TIMEOUT = 10.0
"""SSH and WinRM share one connect timeout (`--connect-timeout`, Ansible's `timeout`)."""
PASSPHRASE_ENV = "AUDITOR_SSH_KEY_PASSPHRASE"  # noqa: S105


class HostKeyPolicy(StrEnum):
    STRICT = "strict"
    ACCEPT_NEW = "accept-new"
    NONE = "none"


@dataclass(frozen=True)
class SSHSettings:
    """Run-wide SSH settings; inventory variables override them per host."""

    user: str | None = None
    keys: tuple[Path, ...] = ()
    known_hosts: Path | None = None
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    jump_host: str | None = None
    ssh_config: Path | None = None
    password: Secret | None = field(default=None, repr=False, compare=False)
    passphrase: Secret | None = field(default=None, repr=False, compare=False)
    connect_timeout: float = CONNECT_TIMEOUT
    password_on_new_keys: bool = False
    """Under ACCEPT_NEW, also send the password to a host whose key is first seen."""


@dataclass(frozen=True)
class WinRMSettings:
    """Defaults for every WinRM host; a host's Ansible variables override them.

    `scheme=None` follows Ansible: http when the port is 5985, else https. There is
    deliberately no switch to skip server certificate validation here: only a host's own
    `ansible_winrm_server_cert_validation=ignore` does that, and for Basic or NTLM (whose
    password, or NTLM response, would go to whoever answers) only when `allow_insecure`
    (--winrm-allow-insecure) says so: an inventory alone cannot.
    """

    transport: str = "ntlm"
    scheme: str | None = None
    port: int | None = None
    path: str = "/wsman"
    user: str | None = None
    ca_bundle: str | None = None
    cert_pem: str | None = None
    cert_key_pem: str | None = None
    allow_basic_http: bool = False
    allow_insecure: bool = False
    message_encryption: str = "auto"
    powershell: str = "powershell"
    connect_timeout: float = CONNECT_TIMEOUT
    # WS-Man OperationTimeout for Receive: how long the service may hold a poll open.
    operation_timeout: int = 20
    password: Secret | None = field(default=None, repr=False, compare=False)
