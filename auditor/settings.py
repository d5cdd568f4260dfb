"""Typed run settings, built once at the edge from every source a user expects.

Sources, highest first: command-line flags; `AUDITOR_*` environment variables; an auditor
config file (TOML: `--config FILE`, else `./fleet-auditor.toml`, else the user's config
directory); `ansible.cfg`, found the way Ansible finds it, for the settings an Ansible user
already keeps there; then the defaults, which exist only as the dataclass field defaults
below. Everything under the CLI receives these frozen objects, never click's options.

Settings serialise to plain JSON without their secrets (`Settings.to_json`/`from_json`): a
site runner receives them through a broker, which never carries a secret.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import re
import shlex
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from auditor.errors import InputError
from auditor.outcomes import HostOutcome, Outcome
from auditor.probes import ProbeSettings
from auditor.scheduler import Schedule
from auditor.secret import Secret
from auditor.transports.options import (
    PASSPHRASE_ENV,
    POWERSHELLS,
    WINRM_TRANSPORTS,
    HostKeyPolicy,
    SSHSettings,
    WinRMSettings,
)

FORMATS = ("html", "csv", "json", "junit", "prom")
DEFAULT_FORMATS = ("html", "csv", "json", "junit")
"""Written when no format is chosen: the Prometheus file is asked for, since it belongs in
node_exporter's textfile directory rather than beside the reports."""
GATE_OUTCOMES = tuple(dict.fromkeys([*(o.value for o in Outcome), *(o.value for o in HostOutcome)]))
"""What `--fail-on` accepts: every target-level and host-level outcome name."""

SSH_PASSWORD_ENV = "AUDITOR_SSH_PASSWORD"  # noqa: S105 - a variable name, not a secret
WINRM_PASSWORD_ENV = "AUDITOR_WINRM_PASSWORD"  # noqa: S105
CONFIG_ENV = "AUDITOR_CONFIG"
CONFIG_NAME = "fleet-auditor.toml"
# A settings file is small; anything larger is a mistake (or a device), not a config.
FILE_LIMIT = 1 << 20


@dataclass(frozen=True)
class InventorySettings:
    path: str | None = None
    limit: str | None = None
    max_hosts: int | None = None
    max_groups: int | None = None
    shard: str | None = None


@dataclass(frozen=True)
class TargetSettings:
    platforms: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    max_targets: int | None = None
    max_targets_file_size: int | None = None


@dataclass(frozen=True)
class ReportSettings:
    formats: tuple[str, ...] = DEFAULT_FORMATS
    mode: int = 0o600
    out_dir: Path | None = None
    """None: a fresh directory per run."""
    force: bool = False
    quiet: bool = False
    require_agent: bool = False
    """Exit 1 when a host has no Qualys agent, or one too old to use the CDN."""


@dataclass(frozen=True)
class HistorySettings:
    """Where runs are recorded, and how many are kept."""

    path: Path | None = None
    """None: `$XDG_DATA_HOME/fleet-auditor/history.sqlite` (see `auditor.history`)."""
    disabled: bool = False
    keep: int | None = None
    """Runs kept per inventory after a run; None keeps them all."""
    keep_days: float | None = None
    """Runs of the inventory older than this many days are removed after a run."""
    busy_timeout: float = 30.0
    """Seconds to wait for another process's write before the history counts as locked."""


@dataclass(frozen=True)
class GateSettings:
    """The readiness gate; when either part is set, the gate decides the exit status."""

    fail_under: float | None = None
    fail_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """Everything a run is told, typed; `origins` says where each setting came from."""

    inventory: InventorySettings = field(default_factory=InventorySettings)
    targets: TargetSettings = field(default_factory=TargetSettings)
    schedule: Schedule = field(default_factory=Schedule)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    ssh: SSHSettings = field(default_factory=SSHSettings)
    winrm: WinRMSettings = field(default_factory=WinRMSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    gate: GateSettings = field(default_factory=GateSettings)
    ask_pass: bool = False
    password_file: Path | None = None
    origins: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> str:
        """Plain JSON, without secrets, origins or warnings (`from_json` reads it back)."""
        return json.dumps(_to_plain(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise InputError("settings JSON must be an object")
        try:
            built = _from_plain(cls, data)
        except (TypeError, ValueError) as exc:
            raise InputError(f"settings JSON: {exc}") from None
        assert isinstance(built, Settings)
        # A broker's message is input like any other: the same bounds and choices as a flag.
        for name, value in effective(built).items():
            if value is not None and value != []:
                try:
                    _convert(KEY_BY_NAME[name], value, None)
                except _Bad as exc:
                    raise InputError(f"settings JSON: {exc}") from None
        return built

    def origin(self, name: str) -> str:
        return self.origins.get(name, "default")


_NOT_SERIALISED = frozenset({"origins", "warnings"})


def _is_secret(hint: Any) -> bool:
    return Secret in typing.get_args(hint) or hint is Secret


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = typing.get_type_hints(type(value))
        return {
            f.name: _to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _NOT_SERIALISED and not _is_secret(hints[f.name])
        }
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, Secret):  # pragma: no cover - excluded above; never serialised
        raise TypeError("a secret is never serialised")
    return value


def _from_plain(hint: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise InputError(f"settings JSON: {hint.__name__} must be an object")
        hints = typing.get_type_hints(hint)
        # A secret is never serialised, so one arriving (from a broker) is refused, not used.
        known = {
            f.name for f in dataclasses.fields(hint) if not _is_secret(hints[f.name])
        } - _NOT_SERIALISED
        unknown = set(value) - known
        if unknown:
            raise InputError(f"settings JSON: unknown key {sorted(unknown)[0]!r}")
        return hint(**{k: _from_plain(hints[k], v) for k, v in value.items()})
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_plain(inner, value)
    if origin is tuple:
        inner = typing.get_args(hint)[0]
        return tuple(_from_plain(inner, v) for v in value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if hint is Path:
        return Path(value)
    if hint is str and isinstance(value, Path):
        return str(value)
    if hint is float:
        return float(value)
    return value


# --- where each setting comes from -------------------------------------------------------


class Kind(StrEnum):
    INT = "integer"
    FLOAT = "number"
    STR = "string"
    PATH = "path"
    PATHS = "list of paths"
    STRS = "list of strings"
    BOOL = "boolean"
    MODE = "octal file mode"


def _a(kind: Kind) -> str:
    return f"{'an' if kind.value[0] in 'aeiou' else 'a'} {kind}"


@dataclass(frozen=True)
class Key:
    """One setting that a flag, an environment variable and the TOML file may all give."""

    name: str
    """The TOML key, and the name of the click parameter that gives it."""
    kind: Kind
    flag: str
    to: tuple[str, ...]
    """Where the value goes: `section.field` of `Settings` (`field` for Settings itself)."""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return f"AUDITOR_{self.name.upper()}"


KEYS: tuple[Key, ...] = (
    Key("inventory", Kind.PATH, "--inventory", ("inventory.path",)),
    Key("limit", Kind.STR, "--limit", ("inventory.limit",)),
    Key("platforms", Kind.STRS, "--platform", ("targets.platforms",)),
    Key("urls", Kind.STRS, "--url", ("targets.urls",)),
    Key("targets_files", Kind.PATHS, "--targets", ("targets.files",)),
    Key("formats", Kind.STRS, "--format", ("report.formats",), choices=FORMATS),
    Key("report_mode", Kind.MODE, "--report-mode", ("report.mode",)),
    Key("forks", Kind.INT, "--forks", ("schedule.forks",), 1, 100000),
    Key("timeout", Kind.FLOAT, "--timeout", ("schedule.timeout",), 1, 86400),
    Key("connect_timeout", Kind.FLOAT, "--connect-timeout",
        ("ssh.connect_timeout", "winrm.connect_timeout"), 0.5, 3600),
    Key("retries", Kind.INT, "--retries", ("schedule.retries",), 0, 10),
    Key("probe_timeout", Kind.FLOAT, "--probe-timeout", ("probe.max_time",), 0.5, 3600),
    Key("probe_connect_timeout", Kind.FLOAT, "--probe-connect-timeout",
        ("probe.connect_timeout",), 0.5, 3600),
    Key("direct", Kind.BOOL, "--direct", ("probe.direct",)),
    Key("require_agent", Kind.BOOL, "--require-agent", ("report.require_agent",)),
    Key("user", Kind.STR, "--user", ("ssh.user",)),
    Key("ssh_keys", Kind.PATHS, "--ssh-key", ("ssh.keys",)),
    Key("known_hosts", Kind.PATH, "--known-hosts", ("ssh.known_hosts",)),
    Key("host_key_policy", Kind.STR, "--accept-new-host-keys / --no-host-key-check",
        ("ssh.host_key_policy",), choices=tuple(p.value for p in HostKeyPolicy)),
    Key("password_on_new_keys", Kind.BOOL, "--password-on-new-keys",
        ("ssh.password_on_new_keys",)),
    Key("jump_host", Kind.STR, "--jump-host", ("ssh.jump_host",)),
    Key("ssh_config", Kind.PATH, "--ssh-config", ("ssh.ssh_config",)),
    Key("password_file", Kind.PATH, "--password-file", ("password_file",)),
    Key("winrm_user", Kind.STR, "--winrm-user", ("winrm.user",)),
    Key("winrm_transport", Kind.STR, "--winrm-transport", ("winrm.transport",),
        choices=WINRM_TRANSPORTS),
    Key("winrm_powershell", Kind.STR, "--winrm-powershell", ("winrm.powershell",),
        choices=POWERSHELLS),
    Key("winrm_allow_basic_http", Kind.BOOL, "--winrm-allow-basic-http",
        ("winrm.allow_basic_http",)),
    Key("winrm_allow_insecure", Kind.BOOL, "--winrm-allow-insecure", ("winrm.allow_insecure",)),
    Key("winrm_ca_bundle", Kind.PATH, "--winrm-ca-bundle", ("winrm.ca_bundle",)),
    Key("runner", Kind.STR, "--runner", ("schedule.runner",)),
    Key("max_hosts", Kind.INT, "--max-hosts", ("inventory.max_hosts",), 1),
    Key("max_groups", Kind.INT, "--max-groups", ("inventory.max_groups",), 1),
    Key("max_targets", Kind.INT, "--max-targets", ("targets.max_targets",), 1),
    Key("max_targets_file_size", Kind.INT, "--max-targets-file-size",
        ("targets.max_targets_file_size",), 1),
    Key("history", Kind.PATH, "--history", ("history.path",)),
    Key("no_history", Kind.BOOL, "--no-history", ("history.disabled",)),
    Key("keep", Kind.INT, "--keep", ("history.keep",), 1, 1000000),
    Key("keep_days", Kind.FLOAT, "--keep-days", ("history.keep_days",), 0.001, 100000),
    Key("history_timeout", Kind.FLOAT, "--history-timeout", ("history.busy_timeout",), 0.1, 3600),
    Key("fail_under", Kind.FLOAT, "--fail-under", ("gate.fail_under",), 0, 100),
    Key("fail_on", Kind.STRS, "--fail-on", ("gate.fail_on",), choices=GATE_OUTCOMES),
)  # fmt: skip
"""Every setting with a flag, an `AUDITOR_<NAME>` variable and a TOML key: defined once."""
KEY_BY_NAME = MappingProxyType({k.name: k for k in KEYS})
FLAG_ONLY = ("out_dir", "force", "quiet", "shard", "ask_pass")
"""Per-invocation choices that no file or variable sets."""

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})


class _Bad(Exception):
    """A value of the wrong shape; the caller adds where it came from."""


def _convert(key: Key, raw: Any, base: Path | None, home: Path | None = None) -> Any:
    """`raw` (text from the environment or ansible.cfg, or a TOML value) as `key`'s type;
    relative paths from a file are taken from the file's directory, as Ansible does."""
    kind = key.kind
    if kind is Kind.BOOL:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise _Bad(f"{key.name}: {raw!r} is not a boolean")
    if kind in (Kind.INT, Kind.FLOAT):
        value: float
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = int(raw) if kind is Kind.INT else float(raw)
        except (TypeError, ValueError):
            raise _Bad(f"{key.name}: {raw!r} is not {_a(kind)}") from None
        if (key.low is not None and value < key.low) or (key.high is not None and value > key.high):
            high = "" if key.high is None else f"{key.high:g}"
            raise _Bad(f"{key.name}: {raw!r} is not in the range {key.low:g}..{high}")
        return value
    if kind is Kind.MODE:
        try:
            return parse_mode(raw if isinstance(raw, str) else "", key.name)
        except InputError as exc:
            raise _Bad(f"{key.name}: {raw!r} {exc.message.split(' ', 1)[1]}") from None
    if kind in (Kind.PATHS, Kind.STRS):
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise _Bad(f"{key.name}: {raw!r} is not a {kind}")
        items = [i.strip() for i in items if i.strip()]
        if key.choices:
            for item in items:
                if item not in key.choices:
                    raise _Bad(f"{key.name}: {item!r} is not one of {', '.join(key.choices)}")
        if kind is Kind.PATHS:
            return tuple(_path(i, base, home) for i in items)
        return tuple(items)
    if not isinstance(raw, str) or not raw:
        raise _Bad(f"{key.name}: {raw!r} is not a non-empty string")
    if key.choices and raw not in key.choices:
        raise _Bad(f"{key.name}: {raw!r} is not one of {', '.join(key.choices)}")
    return _path(raw, base, home) if kind is Kind.PATH else raw


def _path(text: str, base: Path | None, home: Path | None = None) -> Path:
    if home is not None and (text == "~" or text.startswith("~/")):
        text = str(home) + text[1:]
    path = Path(text).expanduser()
    return base / path if base is not None and not path.is_absolute() else path


@dataclass(frozen=True)
class _Found:
    value: Any
    origin: str


def _from_flags(flags: Mapping[str, Any]) -> dict[str, _Found]:
    found: dict[str, _Found] = {}
    for key in KEYS:
        if key.name in flags and key.name != "host_key_policy":
            value = flags[key.name]
            if key.kind is Kind.PATH:
                value = Path(value)
            elif key.kind is Kind.PATHS:
                value = tuple(Path(v) for v in value)
            elif key.kind is Kind.STRS:
                value = tuple(value)
            elif key.kind is Kind.MODE:
                value = parse_mode(value, key.flag)
            found[key.name] = _Found(value, f"flag {key.flag}")
    none, new = flags.get("no_host_key_check"), flags.get("accept_new_host_keys")
    if none and new:
        raise InputError("choose one of --no-host-key-check and --accept-new-host-keys")
    if none:
        found["host_key_policy"] = _Found("none", "flag --no-host-key-check")
    elif new:
        found["host_key_policy"] = _Found("accept-new", "flag --accept-new-host-keys")
    return found


def _from_env(env: Mapping[str, str], home: Path) -> dict[str, _Found]:
    found: dict[str, _Found] = {}
    for key in KEYS:
        raw = env.get(key.env)
        if raw is None or raw == "":
            continue
        try:
            found[key.name] = _Found(_convert(key, raw, None, home), f"env {key.env}")
        except _Bad as exc:
            raise InputError(f"{key.env}: {exc}") from None
    return found


def _read(path: Path) -> str | None:
    """The text of settings file `path`, or None if there is none; a FIFO, device or
    oversized file is an error, never read."""
    from auditor.material import MaterialError, read_material

    try:
        data = read_material(path, FILE_LIMIT).data
    except MaterialError as exc:
        if exc.missing:
            return None
        raise InputError(f"cannot read settings file: {exc.reason}", str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("settings file is not UTF-8 text", str(path)) from None


def _key_line(text: str, name: str, section: str | None = None) -> int | None:
    """The line that sets `name` (in INI `section`, when given): a simple scan, enough to
    point a user at a bad value."""
    current: str | None = None
    pattern = re.compile(rf"\s*['\"]?{re.escape(name)}['\"]?\s*[=:]", re.IGNORECASE)
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
            if section is None and current.strip("[]").split(".")[0].strip() == name:
                return number  # a TOML table is a key too
            continue
        if (section is None or current == section) and pattern.match(line):
            return number
    return None


_TOML_LINE = re.compile(r"\s*\(at line (\d+), column \d+\)\s*$")


def _from_toml(path: Path, text: str, home: Path) -> dict[str, _Found]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_LINE.search(message)
        line = int(match.group(1)) if match else None
        message = _TOML_LINE.sub("", message)
        raise InputError(f"not valid TOML: {message}", str(path), line) from None
    found: dict[str, _Found] = {}
    base = path.parent
    for name, raw in data.items():
        line = _key_line(text, name)
        key = KEY_BY_NAME.get(name)
        if key is None:
            raise InputError(f"unknown setting {name!r}", str(path), line)
        try:
            _check_toml_type(key, raw)
            value = _convert(key, raw, base, home)
        except _Bad as exc:
            raise InputError(str(exc), str(path), line) from None
        found[name] = _Found(value, f"{path}:{line}" if line else str(path))
    return found


_TOML_TYPES: Mapping[Kind, tuple[type, ...]] = MappingProxyType(
    {
        Kind.INT: (int,),
        Kind.FLOAT: (int, float),
        Kind.STR: (str,),
        Kind.PATH: (str,),
        Kind.PATHS: (list,),
        Kind.STRS: (list,),
        Kind.BOOL: (bool,),
        Kind.MODE: (str,),
    }
)


def _check_toml_type(key: Key, raw: Any) -> None:
    """TOML has types: `forks = "7"` is a mistake worth naming, not a value to coerce."""
    wanted = _TOML_TYPES[key.kind]
    if (isinstance(raw, bool) and bool not in wanted) or not isinstance(raw, wanted):
        raise _Bad(f"{key.name}: {raw!r} is not {_a(key.kind)}")


# ansible.cfg `[defaults]` keys the auditor takes, and its setting for each.
_ANSIBLE_DEFAULTS = {
    "inventory": "inventory",
    "remote_user": "user",
    "private_key_file": "ssh_keys",
    "forks": "forks",
    "timeout": "connect_timeout",  # Ansible's `timeout` is its connection timeout
}


def _from_ansible_cfg(path: Path, text: str, home: Path) -> dict[str, _Found]:
    # As Ansible reads it: no interpolation, ';' starts an inline comment.
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read_string(text, str(path))
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"not a valid ansible.cfg: {first}", str(path), line) from None
    base = path.parent
    found: dict[str, _Found] = {}

    def put(name: str, value: Any, cfg_key: str, section: str) -> None:
        line = _key_line(text, cfg_key, section)
        found[name] = _Found(value, f"{path}:{line}" if line else str(path))

    def bad(message: str, cfg_key: str, section: str) -> InputError:
        return InputError(message, str(path), _key_line(text, cfg_key, section))

    if parser.has_section("defaults"):
        section = parser["defaults"]
        for cfg_key, name in _ANSIBLE_DEFAULTS.items():
            raw = section.get(cfg_key)
            if raw is None or not raw.strip():
                continue
            if cfg_key == "inventory" and "," in raw:
                raise bad(
                    "several inventory sources are not supported; give one with --inventory",
                    cfg_key,
                    "defaults",
                )
            try:
                value = _convert(KEY_BY_NAME[name], raw.strip(), base, home)
            except _Bad as exc:
                raise bad(f"{cfg_key}: {str(exc).split(': ', 1)[1]}", cfg_key, "defaults") from None
            put(name, value, cfg_key, "defaults")
        checking = section.get("host_key_checking")
        if checking is not None:
            word = checking.strip().lower()
            if word not in _TRUE | _FALSE:
                message = f"host_key_checking: {checking!r} is not a boolean"
                raise bad(message, "host_key_checking", "defaults")
            policy = HostKeyPolicy.STRICT if word in _TRUE else HostKeyPolicy.NONE
            put("host_key_policy", policy.value, "host_key_checking", "defaults")
    if parser.has_section("ssh_connection"):
        raw = parser["ssh_connection"].get("ssh_args")
        if raw:
            try:
                jump, config = _ssh_args(raw)
            except ValueError as exc:
                raise bad(f"ssh_args: {exc}", "ssh_args", "ssh_connection") from None
            if jump:
                put("jump_host", jump, "ssh_args", "ssh_connection")
            if config:
                put("ssh_config", _path(config, base, home), "ssh_args", "ssh_connection")
    return found


def _ssh_args(text: str) -> tuple[str | None, str | None]:
    """The jump host (`-J X`, `-o ProxyJump=X`) and config file (`-F FILE`) in Ansible's
    `ssh_args`; other ssh options there do not change where the auditor connects."""
    words = shlex.split(text)
    jump: str | None = None
    config: str | None = None
    i = 0
    while i < len(words):
        word = words[i]
        value: str | None = None
        flag = word[:2]
        if flag in ("-J", "-F", "-o"):
            if len(word) > 2:
                value = word[2:]
            elif i + 1 < len(words):
                i += 1
                value = words[i]
            else:
                raise ValueError(f"{word} needs a value")
        if flag == "-J":
            jump = value
        elif flag == "-F":
            config = value
        elif flag == "-o" and value is not None:
            option, _, rest = value.replace("=", " ", 1).partition(" ")
            if option.lower() == "proxyjump":
                jump = rest.strip() or None
        i += 1
    return jump, config


def _world_writable(directory: Path) -> bool:
    try:
        return bool(directory.stat().st_mode & stat.S_IWOTH)
    except OSError:
        return True


def find_config_file(
    flag: Path | None, env: Mapping[str, str], cwd: Path, home: Path
) -> tuple[Path | None, str | None]:
    """The auditor's TOML file and, if one in the working directory was passed over, why."""
    if flag is not None:
        return flag, None
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), None
    here = cwd / CONFIG_NAME
    note = None
    if here.exists():
        # As Ansible does for ./ansible.cfg: another user could have planted the file.
        if not _world_writable(cwd):
            return here, None
        note = f"{here}: ignored, the working directory is world-writable"
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    return config_home / "fleet-auditor" / "config.toml", note


def find_ansible_cfg(
    env: Mapping[str, str], cwd: Path, home: Path
) -> tuple[list[Path], str | None]:
    """ansible.cfg candidates in Ansible's order (the first that exists is used)."""
    candidates: list[Path] = []
    note = None
    if env.get("ANSIBLE_CONFIG"):
        path = Path(env["ANSIBLE_CONFIG"]).expanduser()
        candidates.append(path / "ansible.cfg" if path.is_dir() else path)
    here = cwd / "ansible.cfg"
    if here.exists() and _world_writable(cwd):
        note = f"{here}: ignored, the working directory is world-writable"
    else:
        candidates.append(here)
    candidates += [home / ".ansible.cfg", Path("/etc/ansible/ansible.cfg")]
    return candidates, note


def build_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    cwd: Path | None = None,
    home: Path | None = None,
    secrets: bool = True,
) -> Settings:
    """The run's settings from `flags` (only those given on the command line, by click
    parameter name), the environment and the files; raises InputError for a bad value,
    naming its source. `secrets`: read the password and passphrase variables."""
    cwd = cwd or Path.cwd()
    home = home or Path(env.get("HOME") or Path.home())
    notes: list[str] = []
    layers: list[dict[str, _Found]] = [_from_flags(flags), _from_env(env, home)]
    config_flag = flags.get("config")
    toml_path, note = find_config_file(Path(config_flag) if config_flag else None, env, cwd, home)
    if note:
        notes.append(note)
    if toml_path is not None:
        text = _read(toml_path)
        if text is None and (config_flag or env.get(CONFIG_ENV)):
            raise InputError("config file does not exist", str(toml_path))
        if text is not None:
            layers.append(_from_toml(toml_path, text, home))
    candidates, note = find_ansible_cfg(env, cwd, home)
    if note:
        notes.append(note)
    for candidate in candidates:
        text = _read(candidate)
        if text is not None:
            layers.append(_from_ansible_cfg(candidate, text, home))
            break
    chosen: dict[str, _Found] = {}
    for layer in reversed(layers):
        chosen.update(layer)
    return _assemble(chosen, flags, env if secrets else {}, tuple(notes))


def _assemble(
    found: Mapping[str, _Found],
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    notes: tuple[str, ...],
) -> Settings:
    """Settings from the chosen values: a setting no source gave keeps its field default."""
    given: dict[str, dict[str, Any]] = {}
    for name, chosen in found.items():
        for target in KEY_BY_NAME[name].to:
            section, _, attr = target.rpartition(".")
            given.setdefault(section, {})[attr] = chosen.value
    hints = typing.get_type_hints(Settings)

    def part(section: str, **extra: Any) -> Any:
        cls = hints[section]
        types_of = typing.get_type_hints(cls)
        values = {k: _from_plain(types_of[k], v) for k, v in given.get(section, {}).items()}
        return cls(**values, **extra)

    def secret(name: str) -> Secret | None:
        return Secret(env[name]) if env.get(name) else None

    top = {k: _from_plain(hints[k], v) for k, v in given.get("", {}).items()}
    return Settings(
        inventory=part("inventory", shard=flags.get("shard") or None),
        targets=part("targets"),
        schedule=part("schedule"),
        probe=part("probe"),
        ssh=part("ssh", password=secret(SSH_PASSWORD_ENV), passphrase=secret(PASSPHRASE_ENV)),
        winrm=part("winrm", password=secret(WINRM_PASSWORD_ENV)),
        report=part(
            "report",
            out_dir=Path(flags["out_dir"]) if flags.get("out_dir") else None,
            force=bool(flags.get("force")),
            quiet=bool(flags.get("quiet")),
        ),
        history=part("history"),
        gate=part("gate"),
        ask_pass=bool(flags.get("ask_pass")),
        **top,
        origins=MappingProxyType({name: f.origin for name, f in found.items()}),
        warnings=notes,
    )


def parse_mode(value: str, source: str = "--report-mode") -> int:
    """An octal file mode for reports (000..666)."""
    try:
        mode = int(value, 8)
    except ValueError:
        raise InputError(f"{value!r} is not an octal file mode", source) from None
    if not 0 <= mode <= 0o666:
        raise InputError(f"{value!r} must be between 000 and 666", source)
    return mode


def effective(settings: Settings) -> dict[str, Any]:
    """Each key's effective value as plain JSON (for `auditor config`)."""
    shown: dict[str, Any] = {}
    for key in KEYS:
        section, _, attr = key.to[0].rpartition(".")
        value = getattr(getattr(settings, section) if section else settings, attr)
        if key.kind is Kind.MODE:
            value = f"{value:03o}"
        shown[key.name] = _to_plain(value) if value != "" else None
    return shown
