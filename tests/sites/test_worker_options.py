"""`auditor worker` takes exactly `audit`'s credential options: one definition, two commands."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from auditor.cli import CREDENTIAL_OPTIONS, audit_main, main

worker_cmd = main.commands["worker"]
assert isinstance(worker_cmd, click.Command)

# Words that make an option of `audit` a matter of logging in to or trusting hosts: such an
# option belongs to the shared credential list, or a runner could not be given it.
_CREDENTIAL_WORDS = re.compile(r"ssh|winrm|known.hosts|host.key|pass|user|jump|key|cert|ca.bundle")


def _options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name}


def _shape(option: click.Option) -> tuple[object, ...]:
    return (
        tuple(option.opts),
        option.is_flag,
        option.multiple,
        repr(option.type),
        option.metavar,
        option.help,
    )


def _credential_names() -> list[str]:
    names = []
    for option in CREDENTIAL_OPTIONS:
        params = getattr(option(lambda: None), "__click_params__", [])
        names.append(params[0].name)
    return names


def test_worker_and_audit_define_every_credential_option_identically() -> None:
    audit, worker = _options(audit_main), _options(worker_cmd)
    names = _credential_names()
    assert len(names) >= 15, names
    for name in names:
        assert name in audit, name
        assert name in worker, name
        assert _shape(audit[name]) == _shape(worker[name]), name
    # How long to wait for a host, the config file and the broker login: a runner's too.
    for name in ("connect_timeout", "config", "broker_password_file", "broker_ca"):
        assert _shape(audit[name]) == _shape(worker[name]), name


def test_no_credential_option_of_audit_is_missing_from_the_shared_list() -> None:
    shared = set(_credential_names())
    # The broker's login is shared too, in its own list (both commands take it).
    not_credentials = {"broker_password_file"}
    looks_like_credential = {
        name
        for name, option in _options(audit_main).items()
        if any(_CREDENTIAL_WORDS.search(o) for o in option.opts)
    }
    assert looks_like_credential - not_credentials <= shared, sorted(
        looks_like_credential - not_credentials - shared
    )


def _sample_args(tmp_path: Path) -> list[str]:
    """One value for every credential option (parsing only: nothing is read or contacted)."""
    args: list[str] = []
    for name, option in _options(audit_main).items():
        if name not in set(_credential_names()):
            continue
        flag = option.opts[-1]
        if option.is_flag:
            args.append(flag)
        elif isinstance(option.type, click.Choice):
            args += [flag, str(option.type.choices[0])]
        else:
            args += [flag, str(tmp_path / name) if "FILE" in (option.metavar or "") else "x"]
    return args


@pytest.mark.parametrize("command", ["audit", "worker"])
def test_both_commands_accept_the_same_credential_flags(tmp_path: Path, command: str) -> None:
    args = _sample_args(tmp_path)
    if command == "audit":
        ctx = audit_main.make_context("audit", list(args))
    else:
        ctx = worker_cmd.make_context(
            "worker", ["--broker", "redis://127.0.0.1:1/0", "--site", "s", *args]
        )
    given = {k for k, v in ctx.params.items() if v not in (None, False, ())}
    assert set(_credential_names()) <= given
