"""A runner prepares a transport for every host it is sent: the fleet's known_hosts is read and
checked each time (trust fails closed, a changed file is seen) but parsed only when its text
changed, so a large fleet's known_hosts costs a runner once, not once per host."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from auditor.audit import prepare_transports
from auditor.broker import BrokerSettings
from auditor.errors import InputError
from auditor.models import Connection, Host
from auditor.settings import Settings
from auditor.transports.options import SSHSettings
from auditor.worker import _audit_config, worker_config

HOSTS = 2000


def _key(tmp_path: Path, name: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True
    )
    return (tmp_path / f"{name}.pub").read_text().split()[1]


def _prepare(known_hosts: Path, name: str) -> object:
    settings = Settings(ssh=SSHSettings(known_hosts=known_hosts))
    config = worker_config(settings, BrokerSettings("redis://127.0.0.1:1/0"), "s", "r", 1)
    host = Host.from_vars(name, (), {"ansible_host": "10.9.0.1", "ansible_user": "root"})
    transport = prepare_transports(_audit_config(config, (host,), ()))[Connection.SSH]
    return transport._state().known  # type: ignore[attr-defined]


def test_a_runner_parses_an_unchanged_known_hosts_once_and_sees_a_changed_one(
    tmp_path: Path,
) -> None:
    key = _key(tmp_path, "k")
    known_hosts = tmp_path / "known_hosts"
    lines = [f"10.9.{i // 250}.{i % 250 + 1} ssh-ed25519 {key}\n" for i in range(HOSTS)]
    known_hosts.write_text("".join(lines))
    first = _prepare(known_hosts, "h1")
    started = time.process_time()
    for i in range(50):
        assert _prepare(known_hosts, f"h{i}") is first
    # Parsing 2000 keys takes tens of milliseconds; reading and comparing the text does not.
    assert (time.process_time() - started) / 50 < 0.02
    # A changed file (a key recorded, an entry removed) is parsed again: nothing stale.
    known_hosts.write_text("".join(lines[:-1]))
    assert _prepare(known_hosts, "h1") is not first


def test_a_known_hosts_that_became_unreadable_still_stops_the_next_host(tmp_path: Path) -> None:
    key = _key(tmp_path, "k")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"10.9.0.1 ssh-ed25519 {key}\n")
    _prepare(known_hosts, "h1")
    known_hosts.unlink()
    known_hosts.mkdir()
    with pytest.raises(InputError, match="cannot read known_hosts"):
        _prepare(known_hosts, "h2")
