"""The OpenSSH client config, resolved per host the way `ssh` resolves it.

The SSH transport opens its own TCP connection (to tell a closed port from a hung SSH
server), so it needs HostName, Port and ProxyJump before asyncssh is involved; asyncssh's own
config handling only sees the address that is already resolved. The options honoured are
those an audit needs to reach a host: HostName, Port, User, IdentityFile and ProxyJump.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncssh.config import SSHClientConfig, SSHConfig

from auditor.errors import InputError


@dataclass(frozen=True)
class HostConfig:
    """What the config says about one host; None (or empty) where it says nothing."""

    hostname: str | None = None
    port: int | None = None
    user: str | None = None
    identity_files: tuple[Path, ...] = ()
    proxy_jump: str | None = None
    proxy_command: str | None = None


NOTHING = HostConfig()


def default_config_path() -> Path | None:
    """`~/.ssh/config` when it exists and is readable, as OpenSSH reads it by default."""
    path = Path("~", ".ssh", "config").expanduser()
    return path if os.access(path, os.R_OK) else None


class SSHConfigReader:
    """Looks hosts up in one config file, once per distinct (name, user, port)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._cache: dict[tuple[str, str | None, int | None], HostConfig] = {}
        try:
            self._local_user = getpass.getuser()
        except (KeyError, OSError):
            self._local_user = "root"
        if path is not None:
            if not os.access(path, os.R_OK):
                raise InputError("cannot read the ssh config file", str(path))
            self._check()

    def lookup(self, name: str, user: str | None = None, port: int | None = None) -> HostConfig:
        """The settings for `name` as given in the inventory. `user` and `port` are the ones
        already chosen (they take part in `Match` and in `%r`/`%p`), None when not chosen."""
        if self.path is None:
            return NOTHING
        key = (name, user, port)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._load(name, user, port)
        return found

    def _check(self) -> None:
        """Parse every block, whatever it matches, so that a bad line stops the run before
        any host is tried (as a one-line error naming the file and line)."""
        self._parse(_EveryBlock, "*", None, None)

    def _load(self, name: str, user: str | None, port: int | None) -> HostConfig:
        config = self._parse(SSHClientConfig, name, user, port)
        return HostConfig(
            hostname=_text(config.get("Hostname")),
            port=_port(config.get("Port")),
            user=_text(config.get("User")),
            identity_files=_paths(config.get("IdentityFile")),
            proxy_jump=_text(config.get("ProxyJump")),
            proxy_command=_command(config.get("ProxyCommand")),
        )

    def _parse(
        self, kind: type[SSHClientConfig], name: str, user: str | None, port: int | None
    ) -> SSHClientConfig:
        path = self.path
        assert path is not None
        # asyncssh's parser takes () for "not given on the command line".
        given_user: Any = user if user is not None else ()
        given_port: Any = port if port is not None else ()
        try:
            config = kind.load(
                None,
                [str(path)],
                False,
                False,
                False,
                self._local_user,
                given_user,
                name,
                given_port,
            )
        except OSError as exc:
            raise InputError(
                f"cannot read the ssh config file: {exc.strerror}", str(path)
            ) from None
        except Exception as exc:  # asyncssh's ConfigParseError and value errors
            raise _config_error(exc, path) from None
        assert isinstance(config, SSHClientConfig)
        return config


class _EveryBlock(SSHClientConfig):
    """Treats every Host and Match block as matching, to validate all of a file's lines.
    Refuses `Match exec`: per host, it would run a local command with the host's name
    expanded into it, and the auditor runs no local commands on a host's behalf."""

    def _match_all(self, option: str, args: list[str]) -> None:
        if option == "Match" and any(a.lower().lstrip("!") == "exec" for a in args):
            self._error("Match exec is not supported (the auditor runs no local commands)")
        self._matching = True
        args.clear()

    def _port_in_range(self, option: str, args: list[str]) -> None:
        if not args[0].isdigit() or not 0 < int(args[0]) < 65536:
            self._error(f"Invalid {option} value: {args[0]}")
        SSHConfig._set_int(self, option, args)

    _handlers = {  # noqa: RUF012 - asyncssh's own table, extended
        **SSHClientConfig._handlers,
        "host": ("Host", _match_all),
        "match": ("Match", _match_all),
        "port": ("Port", _port_in_range),
    }


_LINE = re.compile(r"^.*? line (\d+): (.*)$", re.DOTALL)


def _config_error(exc: BaseException, path: Path | None) -> InputError:
    text = " ".join(str(exc).split())[:300] or type(exc).__name__
    found = _LINE.match(text)
    if found:
        return InputError(f"bad ssh config: {found.group(2)}", str(path), int(found.group(1)))
    return InputError(f"bad ssh config: {text}", str(path))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _port(value: object) -> int | None:
    # Every Port line was range-checked when the file was first read (`_EveryBlock`).
    return value if isinstance(value, int) else None


def _paths(value: object) -> tuple[Path, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    return tuple(Path(str(v)).expanduser() for v in value if str(v).lower() != "none")


def _command(value: object) -> str | None:
    if isinstance(value, Sequence) and not isinstance(value, str):
        joined = " ".join(str(v) for v in value)
        return joined if joined.lower() != "none" else None
    return _text(value)
