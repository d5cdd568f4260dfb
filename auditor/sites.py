"""Sites, and the one message a coordinator sends a site's runner: a host to audit.

A site is a network segment whose hosts answer only from inside it; the inventory says where
each host lives with the host or group variable `auditor_site` (default `default`). Runners
inside the site hold the credentials. What travels through the broker is therefore only a
host's inventory *connection data*, the targets and the probe and schedule settings: never a
password, a key or any other inventory variable (a variable the transports do not read may be
anyone's secret). A runner rebuilds the task from JSON and refuses one that does not validate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from auditor.errors import InputError
from auditor.models import Connection, Host, Target
from auditor.secret import BECOME_PASSWORD_VARS, SSH_PASSWORD_VARS, WINRM_PASSWORD_VARS
from auditor.settings import Settings

SITE_VAR = "auditor_site"
DEFAULT_SITE = "default"
TASK_VERSION = 1
# A site name becomes part of a queue name and of Redis keys: keep it a plain word.
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_RUN_ID = re.compile(r"[0-9a-f]{16}")
# A task is a few kilobytes (one host, the targets); anything far larger is not ours.
MAX_TASK_BYTES = 1 << 20

# The inventory variables a runner's transports read to reach a host, and nothing else.
# Passwords are excluded by name below even though none is listed: the list is the promise.
CONNECTION_VARS: frozenset[str] = frozenset(
    {
        "ansible_connection",
        "ansible_host",
        "ansible_ssh_host",
        "ansible_port",
        "ansible_ssh_port",
        "ansible_user",
        "ansible_ssh_user",
        # Paths on the runner's machine, not key material.
        "ansible_ssh_private_key_file",
        "ansible_private_key_file",
        "ansible_ssh_common_args",
        "ansible_ssh_extra_args",
        "ansible_shell_type",
        "ansible_os_family",
        "ansible_system",
        "ansible_winrm_transport",
        "ansible_winrm_scheme",
        "ansible_winrm_path",
        "ansible_winrm_server_cert_validation",
        "ansible_winrm_message_encryption",
        "ansible_winrm_kerberos_hostname_override",
        "ansible_winrm_ca_trust_path",
        "ansible_winrm_cert_pem",
        "ansible_winrm_cert_key_pem",
        SITE_VAR,
    }
) - frozenset((*SSH_PASSWORD_VARS, *WINRM_PASSWORD_VARS, *BECOME_PASSWORD_VARS))


def check_site_name(name: str, where: str = "auditor_site") -> str:
    """`name` if it can name a site (a queue and ledger keys), else InputError."""
    if not _SITE_NAME.fullmatch(name):
        raise InputError(
            f"{where}: site name {name[:40]!r} must be 1-63 letters, digits, '.', '_' or '-'"
        )
    return name


def site_of(host: Host) -> str:
    """The site `host` lives in: its `auditor_site` variable, else `default`."""
    value = host.vars.get(SITE_VAR)
    if value is None or value == "":
        return DEFAULT_SITE
    return check_site_name(str(value), f"host {host.name}: {SITE_VAR}")


def queue_name(site: str) -> str:
    return f"site.{site}"


def connection_vars(host: Host) -> Mapping[str, Any]:
    """The variables of `host` a task may carry: connection data only, plain JSON values.

    A value that is not plain data (a vault-encrypted string) is refused rather than sent."""
    found: dict[str, Any] = {}
    for name in sorted(CONNECTION_VARS & set(host.vars)):
        value = host.vars[name]
        if not _plain(value):
            raise InputError(
                f"host {host.name}: {name} is not plain text (vault-encrypted?) and cannot "
                "be sent to a site runner"
            )
        found[name] = value
    return MappingProxyType(found)


def _plain(value: object) -> bool:
    if value is None or type(value) in (str, int, float, bool):
        return True
    if type(value) is list:
        return all(_plain(v) for v in value)
    return False


@dataclass(frozen=True)
class HostTask:
    """One host for one runner of its site: JSON only, nothing secret.

    `settings` is the coordinator's run settings as `Settings.to_json` writes them (no
    secrets); a runner takes the probe and schedule from them and its own credentials."""

    run_id: str
    site: str
    host_name: str
    groups: tuple[str, ...]
    vars: Mapping[str, Any]
    targets: tuple[Target, ...]
    settings: Settings
    attempt: int = 1
    version: int = TASK_VERSION

    @classmethod
    def for_host(
        cls, run_id: str, host: Host, targets: Sequence[Target], settings: Settings, attempt: int
    ) -> HostTask:
        return cls(
            run_id=run_id,
            site=site_of(host),
            host_name=host.name,
            groups=host.groups,
            vars=connection_vars(host),
            targets=tuple(targets),
            settings=settings,
            attempt=attempt,
        )

    def host(self) -> Host:
        """The host as the runner audits it (built the way the inventory builds hosts)."""
        try:
            return Host.from_vars(self.host_name, self.groups, self.vars)
        except ValueError as exc:
            raise InputError(f"task: {exc}") from None

    def to_json(self) -> str:
        targets = [{f.name: getattr(t, f.name) for f in fields(Target)} for t in self.targets]
        for target in targets:
            target["expected_status"] = list(target["expected_status"])
        return json.dumps(
            {
                "version": self.version,
                "run_id": self.run_id,
                "site": self.site,
                "host": {"name": self.host_name, "groups": list(self.groups)},
                "vars": dict(self.vars),
                "targets": targets,
                "settings": _plain_settings(self.settings),
                "attempt": self.attempt,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: object) -> HostTask:
        """Rebuild and check a task; anything unexpected is an InputError (a runner refuses
        the task), never a traceback and never a guess."""
        if not isinstance(text, str) or len(text) > MAX_TASK_BYTES:
            raise InputError("task: not a JSON text of at most 1 MiB")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InputError(f"task: not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InputError("task: not an object")
        known = {"version", "run_id", "site", "host", "vars", "targets", "settings", "attempt"}
        if set(data) != known:
            raise InputError(f"task: keys {sorted(set(data) ^ known)} unexpected or missing")
        if data["version"] != TASK_VERSION:
            raise InputError(f"task: version {data['version']!r} is not {TASK_VERSION}")
        run_id, site, attempt = data["run_id"], data["site"], data["attempt"]
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise InputError("task: run_id is not 16 hex digits")
        if not isinstance(site, str):
            raise InputError("task: site is not a string")
        check_site_name(site, "task")
        if type(attempt) is not int or not 1 <= attempt <= 1000:
            raise InputError("task: attempt is not a small positive integer")
        host = data["host"]
        if not isinstance(host, dict) or set(host) != {"name", "groups"}:
            raise InputError("task: host must be an object with name and groups")
        name, groups = host["name"], host["groups"]
        if not isinstance(name, str) or not name or len(name) > 255:
            raise InputError("task: host name is not a short string")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise InputError("task: host groups is not a list of strings")
        variables = data["vars"]
        if not isinstance(variables, dict):
            raise InputError("task: vars is not an object")
        # The promise checked on the receiving side too: a task carrying anything but
        # connection data (a password) is refused, not used.
        stray = sorted(set(variables) - CONNECTION_VARS)
        if stray:
            raise InputError(f"task: variable {stray[0][:60]!r} is not connection data")
        if not all(_plain(v) for v in variables.values()):
            raise InputError("task: a variable is not plain data")
        if str(variables.get(SITE_VAR) or DEFAULT_SITE) != site:
            raise InputError("task: the host's auditor_site is not the task's site")
        targets = _targets(data["targets"])
        settings = data["settings"]
        if not isinstance(settings, dict):
            raise InputError("task: settings is not an object")
        task = cls(
            run_id=run_id,
            site=site,
            host_name=name,
            groups=tuple(groups),
            vars=MappingProxyType(variables),
            targets=targets,
            settings=_settings_from(settings),
            attempt=attempt,
        )
        if task.host().connection is Connection.NONE:
            raise InputError("task: the host's connection is not audited")
        return task


# The coordinator sends one run's settings with every host: turned into plain data once
# (the typed walk is most of a task's cost), keyed by the very object.
_PLAIN: dict[int, tuple[Settings, Any]] = {}


def _plain_settings(settings: Settings) -> Any:
    cached = _PLAIN.get(id(settings))
    if cached is None or cached[0] is not settings:
        if len(_PLAIN) > 8:
            _PLAIN.clear()
        cached = _PLAIN[id(settings)] = (settings, json.loads(settings.to_json()))
    return cached[1]


_PARSED: dict[str, Settings] = {}


def _settings_from(data: dict[str, Any]) -> Settings:
    """`Settings.from_json`, checked in full once per distinct settings text: every task of a
    run carries the same settings, and a runner serves many tasks."""
    text = json.dumps(data, sort_keys=True)
    found = _PARSED.get(text)
    if found is None:
        found = Settings.from_json(text)
        if len(_PARSED) > 8:
            _PARSED.clear()
        _PARSED[text] = found
    return found


def _targets(data: object) -> tuple[Target, ...]:
    from auditor.results import target_from

    if not isinstance(data, list) or not data:
        raise InputError("task: targets is not a non-empty list")
    try:
        return tuple(target_from(t, f"task.targets[{i}]") for i, t in enumerate(data))
    except ValueError as exc:
        raise InputError(f"task: {exc}") from None


__all__ = [
    "CONNECTION_VARS",
    "DEFAULT_SITE",
    "SITE_VAR",
    "HostTask",
    "check_site_name",
    "connection_vars",
    "queue_name",
    "site_of",
]
