"""Sites from the inventory, and the task a coordinator sends a runner: connection data only,
JSON only, checked on arrival."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.inventory import load_inventory
from auditor.models import Host, Target
from auditor.secret import Secret
from auditor.settings import Settings, SSHSettings, WinRMSettings
from auditor.sites import DEFAULT_SITE, HostTask, site_of

RUN = "0123456789abcdef"
TARGETS = (Target("https://cdn.example/status", "cdn"),)
PASSWORDS = ("hunter2-ssh", "hunter2-winrm", "hunter2-become", "hunter2-app")


def _inventory(tmp_path: Path) -> Path:
    path = tmp_path / "sites.ini"
    path.write_text(
        "[paris]\n"
        f"web1 ansible_host=10.1.0.5 ansible_password={PASSWORDS[0]}\n"
        "[berlin]\n"
        f"db1 ansible_connection=winrm ansible_winrm_password={PASSWORDS[1]} "
        f"ansible_become_pass={PASSWORDS[2]} auditor_site=berlin-2\n"
        "[nowhere]\n"
        "lonely ansible_port=2222\n"
        "[paris:vars]\n"
        "auditor_site=paris\n"
        f"app_token={PASSWORDS[3]}\n"
        "ansible_ssh_private_key_file=/etc/auditor/paris_key\n"
    )
    return path


def _hosts(tmp_path: Path) -> dict[str, Host]:
    return {h.name: h for h in load_inventory(str(_inventory(tmp_path))).hosts}


def _settings() -> Settings:
    return Settings(
        ssh=SSHSettings(password=Secret("run-wide-ssh-secret")),
        winrm=WinRMSettings(password=Secret("run-wide-winrm-secret")),
    )


def test_a_host_lives_in_the_site_its_inventory_names_else_default(tmp_path: Path) -> None:
    hosts = _hosts(tmp_path)
    assert site_of(hosts["web1"]) == "paris"  # a group variable
    assert site_of(hosts["db1"]) == "berlin-2"  # a host variable
    assert site_of(hosts["lonely"]) == DEFAULT_SITE


def test_a_site_name_that_cannot_name_a_queue_is_refused(tmp_path: Path) -> None:
    host = Host.from_vars("h", (), {"auditor_site": "paris; rm -rf /"})
    with pytest.raises(InputError, match="host h: auditor_site"):
        site_of(host)


def test_a_task_carries_connection_data_and_never_a_password(tmp_path: Path) -> None:
    for host in _hosts(tmp_path).values():
        text = HostTask.for_host(RUN, host, TARGETS, _settings(), 1).to_json()
        for secret in (*PASSWORDS, "run-wide-ssh-secret", "run-wide-winrm-secret"):
            assert secret not in text
        data = json.loads(text)
        assert "ansible_password" not in data["vars"]
        assert "app_token" not in data["vars"]
    web1 = json.loads(
        HostTask.for_host(RUN, _hosts(tmp_path)["web1"], TARGETS, _settings(), 1).to_json()
    )
    assert data is not None
    assert web1["vars"]["ansible_host"] == "10.1.0.5"
    assert web1["vars"]["ansible_ssh_private_key_file"] == "/etc/auditor/paris_key"


def test_a_runner_rebuilds_the_same_host_targets_and_settings(tmp_path: Path) -> None:
    for host in _hosts(tmp_path).values():
        task = HostTask.for_host(RUN, host, TARGETS, _settings(), 3)
        again = HostTask.from_json(task.to_json())
        assert again.host() == host  # name, address, connection, platform, port, groups
        assert again.site == site_of(host)
        assert again.targets == TARGETS
        assert again.attempt == 3
        assert again.settings.probe == task.settings.probe
        assert again.settings.schedule == task.settings.schedule
        assert again.settings.ssh.password is None  # never carried


def _valid(tmp_path: Path) -> dict[str, object]:
    host = _hosts(tmp_path)["web1"]
    data: dict[str, object] = json.loads(
        HostTask.for_host(RUN, host, TARGETS, Settings(), 1).to_json()
    )
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["vars"].update(ansible_password="x"), "not connection data"),
        (lambda d: d["vars"].update(auditor_site="berlin"), "not the task's site"),
        (lambda d: d.update(site="../etc"), "site name"),
        (lambda d: d.update(run_id="'; FLUSHALL"), "run_id"),
        (lambda d: d.update(attempt=True), "attempt"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(pickle="gASV"), "unexpected"),
        (lambda d: d.update(targets=[]), "targets"),
        (lambda d: d["targets"][0].update(expected_status="200"), "expected_status"),
        (lambda d: d["settings"]["schedule"].update(forks=0), "settings JSON"),
        (lambda d: d["settings"].update(ssh={"password": "x"}), "unknown key"),
        (lambda d: d["vars"].update(ansible_connection="docker"), "not audited"),
        (lambda d: d["host"].update(name=""), "host name"),
    ],
)
def test_a_runner_refuses_a_task_that_does_not_validate(
    tmp_path: Path, change: object, message: str
) -> None:
    data = _valid(tmp_path)
    change(data)  # type: ignore[operator]
    with pytest.raises(InputError, match=message):
        HostTask.from_json(json.dumps(data))


@pytest.mark.parametrize("payload", [b"\x80\x04\x95", "not json", "[]", 7, "x" * (2 << 20)])
def test_a_runner_refuses_anything_but_a_json_task(payload: object) -> None:
    with pytest.raises(InputError, match="task"):
        HostTask.from_json(payload)


def test_a_vaulted_connection_variable_is_refused_not_sent(tmp_path: Path) -> None:
    from auditor.inventory.values import Vaulted

    host = Host.from_vars("h", (), {})
    host = replace(host, vars={"ansible_user": Vaulted("$ANSIBLE_VAULT;1.1;AES256\n00")})
    with pytest.raises(InputError, match="not plain text"):
        HostTask.for_host(RUN, host, TARGETS, Settings(), 1)
