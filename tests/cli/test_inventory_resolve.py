"""`auditor inventory --resolve`: each selected host's effective connection after the
inventory, the flags and the ssh config, shown without contacting anything, and for SSH
hosts exactly what `ssh -G` prints with the same `-F`, `-l`, `-p` and `-J`."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import environ
from tests.support.ssh_g import Lookup, auditor, compare_with_ssh_g

CONFIG = """\
Host web-alias
    HostName 192.0.2.10
    Port 2201
    User deploy
    IdentityFile /keys/%h-%r
    ProxyJump ops@bastion.example:2022
Host piped
    ProxyCommand nc %h %p
Host *
    User everyone
"""

INVENTORY = """\
[linux]
web1 ansible_host=web-alias
web2 ansible_host=192.0.2.11 ansible_user=admin ansible_port=2222
piped1 ansible_host=piped
jumped ansible_host=192.0.2.12 ansible_ssh_common_args='-J hop@gw.example:2200'

[windows]
win1 ansible_host=192.0.2.20 ansible_connection=winrm ansible_user=Administrator ansible_port=5985

[here]
runner ansible_connection=local
"""

FIELDS = {"address", "port", "user", "identity_files", "jump", "transport", "error"}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "ssh_config"
    config.write_text(CONFIG)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(INVENTORY)
    return config, inventory


def _env() -> dict[str, str]:
    return environ(AUDITOR_WINRM_PASSWORD="not-used-for-resolving")


def _resolve(inventory: Path, config: Path, *args: str) -> dict[str, dict[str, object]]:
    proc = auditor(
        "inventory",
        "-i",
        str(inventory),
        "--ssh-config",
        str(config),
        "--resolve",
        "--json",
        *args,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert set(document) == {"hosts"}
    hosts: dict[str, dict[str, object]] = document["hosts"]
    return hosts


def test_json_has_the_documented_shape_and_ssh_hosts_agree_with_ssh_g(
    setup: tuple[Path, Path],
) -> None:
    config, inventory = setup
    hosts = _resolve(inventory, config)
    assert set(hosts) == {"web1", "web2", "piped1", "jumped", "win1", "runner"}
    for entry in hosts.values():
        assert set(entry) == FIELDS
    assert hosts["web1"] == {
        "address": "192.0.2.10",
        "port": 2201,
        "user": "deploy",
        "identity_files": ["/keys/192.0.2.10-deploy"],
        "jump": {"user": "ops", "host": "bastion.example", "port": 2022},
        "transport": "ssh",
        "error": None,
    }
    assert "ProxyCommand" in str(hosts["piped1"]["error"])
    assert hosts["win1"] == {
        "address": "192.0.2.20",
        "port": 5985,
        "user": "Administrator",
        "identity_files": [],
        "jump": None,
        "transport": "winrm",
        "error": None,
    }
    assert hosts["runner"]["transport"] == "local" and hosts["runner"]["error"] is None
    lookups = {
        "web1": Lookup("web-alias"),
        "web2": Lookup("192.0.2.11", user="admin", port=2222),
        "piped1": Lookup("piped"),
        "jumped": Lookup("192.0.2.12", jump="hop@gw.example:2200"),
    }
    for name, lookup in lookups.items():
        compare_with_ssh_g(config, lookup, dict(hosts[name]), expand_keys=True)


def test_flags_apply_as_in_audit_and_limit_selects(setup: tuple[Path, Path]) -> None:
    config, inventory = setup
    hosts = _resolve(
        inventory,
        config,
        "--limit",
        "web*",
        "--user",
        "flaguser",
        "--jump-host",
        "flag@gw.example",
    )
    assert set(hosts) == {"web1", "web2"}
    # The inventory's user wins over --user, which wins over the config's User; a jump host
    # from the command line comes before the config's ProxyJump (as ssh -J does).
    assert hosts["web2"]["user"] == "admin"
    assert hosts["web1"]["user"] == "flaguser"
    assert hosts["web1"]["jump"] == {"user": "flag", "host": "gw.example", "port": None}
    compare_with_ssh_g(
        config,
        Lookup("web-alias", user="flaguser", jump="flag@gw.example"),
        dict(hosts["web1"]),
        expand_keys=True,
    )


def test_text_output_shows_each_connection(setup: tuple[Path, Path]) -> None:
    config, inventory = setup
    proc = auditor(
        "inventory", "-i", str(inventory), "--ssh-config", str(config), "--resolve", env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "web1\n  transport  ssh\n  address    192.0.2.10\n  port       2201\n" in text
    assert "  jump       ops@bastion.example:2022\n" in text
    assert "  endpoint   http://192.0.2.20:5985/wsman (ntlm)" in text
    assert "piped1\n  transport  ssh\n" in text and "ProxyCommand" in text
    assert "runner\n  transport  local\n  address    this machine" in text


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def test_resolving_contacts_nothing(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"ssh1 ansible_host=127.0.0.1 ansible_port={port}\n"
        f"win1 ansible_host=127.0.0.1 ansible_port={port} ansible_connection=winrm "
        "ansible_user=u ansible_winrm_scheme=http\n"
    )
    config = tmp_path / "ssh_config"
    config.write_text("")
    hosts = _resolve(inventory, config)
    assert hosts["ssh1"]["port"] == port and hosts["win1"]["port"] == port
    # The command has exited: any connection it made would be waiting in the backlog.
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_a_winrm_setting_that_cannot_work_is_an_input_error(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "win1 ansible_host=192.0.2.20 ansible_connection=winrm ansible_user=u "
        "ansible_winrm_transport=smoke-signals\n"
    )
    config = tmp_path / "ssh_config"
    config.write_text("")
    proc = auditor(
        "inventory", "-i", str(inventory), "--ssh-config", str(config), "--resolve", env=_env()
    )
    assert proc.returncode == 2, proc.stderr
    assert "ansible_winrm_transport" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
