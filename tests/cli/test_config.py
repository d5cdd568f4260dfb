"""Settings from every source, end to end: real files in a working directory, HOME pointed at
a temporary directory, and the installed `auditor` and `audit` commands."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import BIN
from tests.support.loopback import Loopback, loopback_servers


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    cwd, home = tmp_path / "work", tmp_path / "home"
    cwd.mkdir(mode=0o755)
    home.mkdir(mode=0o755)
    return cwd, home


def _env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any AUDITOR_*/ANSIBLE_* or proxy variable, with
    HOME (and so ~/.ansible.cfg and ~/.config) in the test's directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUDITOR_", "ANSIBLE_", "XDG_")) and not k.lower().endswith("_proxy")
    }
    env["HOME"] = str(home)
    env.update(extra)
    return env


def _run(
    program: str, *args: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / program), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _config(place: tuple[Path, Path], *args: str, **env: str) -> dict[str, dict[str, object]]:
    cwd, home = place
    proc = _run("auditor", "config", "--json", *args, cwd=cwd, env=_env(home, **env))
    assert proc.returncode == 0, proc.stderr
    shown: dict[str, dict[str, object]] = json.loads(proc.stdout)
    return shown


def test_forks_from_ansible_cfg_is_overridden_by_toml_then_env_then_flag(
    place: tuple[Path, Path],
) -> None:
    cwd, home = place
    assert _config(place)["forks"] == {"value": 50, "source": "default"}
    (home / ".ansible.cfg").write_text("[defaults]\nforks = 6\n")
    assert _config(place)["forks"] == {"value": 6, "source": f"{home / '.ansible.cfg'}:2"}
    (cwd / "ansible.cfg").write_text("[defaults]\n\nforks = 7\n")
    assert _config(place)["forks"] == {"value": 7, "source": f"{cwd / 'ansible.cfg'}:3"}
    (cwd / "fleet-auditor.toml").write_text("# fleet\nforks = 8\n")
    assert _config(place)["forks"] == {"value": 8, "source": f"{cwd / 'fleet-auditor.toml'}:2"}
    assert _config(place, AUDITOR_FORKS="9")["forks"] == {
        "value": 9,
        "source": "env AUDITOR_FORKS",
    }
    assert _config(place, "--forks", "10", AUDITOR_FORKS="9")["forks"] == {
        "value": 10,
        "source": "flag --forks",
    }


def test_ansible_config_names_the_file_ansible_would_use(
    place: tuple[Path, Path], tmp_path: Path
) -> None:
    cwd, _ = place
    (cwd / "ansible.cfg").write_text("[defaults]\nremote_user = here\n")
    named = tmp_path / "team.cfg"
    named.write_text("[defaults]\nremote_user = team\n")
    assert _config(place)["user"]["value"] == "here"
    assert _config(place, ANSIBLE_CONFIG=str(named))["user"] == {
        "value": "team",
        "source": f"{named}:2",
    }


def test_only_changed_lists_what_is_not_a_default(place: tuple[Path, Path]) -> None:
    cwd, home = place
    (cwd / "fleet-auditor.toml").write_text("timeout = 30\nformats = ['csv']\n")
    shown = _config(place, "--only-changed", "--retries", "2", AUDITOR_USER="ops")
    assert shown == {
        "timeout": {"value": 30.0, "source": f"{cwd / 'fleet-auditor.toml'}:1"},
        "formats": {"value": ["csv"], "source": f"{cwd / 'fleet-auditor.toml'}:2"},
        "retries": {"value": 2, "source": "flag --retries"},
        "user": {"value": "ops", "source": "env AUDITOR_USER"},
    }
    text = _run("auditor", "config", "--only-changed", cwd=cwd, env=_env(home))
    assert text.returncode == 0
    assert text.stdout.splitlines() == [
        f"formats = csv  ({cwd / 'fleet-auditor.toml'}:2)",
        f"timeout = 30.0  ({cwd / 'fleet-auditor.toml'}:1)",
    ]


def test_no_secret_is_shown(place: tuple[Path, Path]) -> None:
    cwd, home = place
    secret = "hunter2-but-longer"
    env = _env(home, AUDITOR_SSH_PASSWORD=secret, AUDITOR_SSH_KEY_PASSPHRASE=secret)
    for args in (("config",), ("config", "--json")):
        proc = _run("auditor", *args, cwd=cwd, env=env)
        assert proc.returncode == 0 and secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        ("fleet-auditor.toml", "forks = 5\nforsk = 6\n", "fleet-auditor.toml:2: unknown setting"),
        ("fleet-auditor.toml", "\nforks = 'x'\n", "fleet-auditor.toml:2: forks: 'x' is not"),
        ("fleet-auditor.toml", "forks = \n", "fleet-auditor.toml:1: not valid TOML"),
        ("ansible.cfg", "[defaults]\nforks = lots\n", "ansible.cfg:2: forks: 'lots' is not"),
        ("ansible.cfg", "[defaults]\ntimeout = -1\n", "ansible.cfg:2: timeout: '-1' is not"),
    ],
)
def test_a_bad_value_in_a_file_is_one_line_naming_file_and_line(
    place: tuple[Path, Path], name: str, text: str, expect: str
) -> None:
    cwd, home = place
    (cwd / name).write_text(text)
    for program, args in (("auditor", ("config",)), ("audit", ("--url", "https://x.example/"))):
        proc = _run(program, *args, cwd=cwd, env=_env(home))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith(f"error: {cwd / name}:{expect[len(name) + 1 :]}"), lines


def test_a_missing_inventory_is_a_one_line_usage_error(place: tuple[Path, Path]) -> None:
    cwd, home = place
    for program, args in (("audit", ("--url", "https://x.example/")), ("auditor", ("inventory",))):
        proc = _run(program, *args, cwd=cwd, env=_env(home))
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: no inventory: give --inventory")
        assert len(proc.stderr.strip().splitlines()) == 1


def test_an_audit_takes_its_inventory_and_settings_from_the_files(
    place: tuple[Path, Path], servers: Loopback
) -> None:
    cwd, home = place
    inventories = cwd / "inventories"
    inventories.mkdir()
    (inventories / "hosts.ini").write_text(
        "[here]\nbox1 ansible_connection=local\nbox2 ansible_connection=local\n"
    )
    (cwd / "ansible.cfg").write_text("[defaults]\ninventory = inventories/hosts.ini\nforks = 3\n")
    ok = f"https://localhost:{servers.https_port}/status"
    (cwd / "fleet-auditor.toml").write_text(f"urls = ['{ok}']\ntimeout = 45\n")
    env = _env(home, CURL_CA_BUNDLE=str(servers.ca_bundle), AUDITOR_RETRIES="1")
    out = cwd / "out"
    proc = _run("audit", "-o", str(out), "-q", "--forks", "2", cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    header = json.loads((out / "results.jsonl").read_text().splitlines()[0])["run"]
    options = header["options"]
    assert options["inventory"] == str(inventories / "hosts.ini")
    assert (options["forks"], options["timeout"], options["retries"]) == ("2", "45.0", "1")
    report = json.loads((out / "report.json").read_text())
    assert sorted(h["host"]["name"] for h in report["hosts"]) == ["box1", "box2"]


def test_host_key_checking_off_in_ansible_cfg_is_flagged_with_its_source(
    place: tuple[Path, Path], servers: Loopback
) -> None:
    cwd, home = place
    (cwd / "hosts.ini").write_text("box ansible_connection=local\n")
    (cwd / "ansible.cfg").write_text("[defaults]\nhost_key_checking = False\n")
    ok = f"https://localhost:{servers.https_port}/status"
    env = _env(home, CURL_CA_BUNDLE=str(servers.ca_bundle))
    out = cwd / "out"
    proc = _run("audit", "-i", "hosts.ini", "--url", ok, "-o", str(out), cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    expect = f"HOST KEY CHECKING WAS DISABLED ({cwd / 'ansible.cfg'}:2)"
    assert expect in proc.stderr
    header = json.loads((out / "results.jsonl").read_text().splitlines()[0])["run"]
    assert header["options"]["host_key_policy"] == "none"
    assert any(expect in w for w in header["warnings"])


def test_ssh_args_proxy_jump_in_ansible_cfg_is_the_jump_host_of_resolve(
    place: tuple[Path, Path],
) -> None:
    cwd, home = place
    (cwd / "hosts.ini").write_text("web ansible_host=192.0.2.10 ansible_user=deploy\n")
    (cwd / "ssh_config").write_text("Host *\n    Port 2200\n")
    (cwd / "ansible.cfg").write_text(
        "[defaults]\ninventory = hosts.ini\n"
        "[ssh_connection]\nssh_args = -C -o ControlMaster=auto -o ProxyJump=ops@bastion "
        "-F ssh_config\n"
    )

    def resolve(*args: str) -> dict[str, object]:
        proc = _run("auditor", "inventory", "--resolve", "--json", *args, cwd=cwd, env=_env(home))
        assert proc.returncode == 0, proc.stderr
        host: dict[str, object] = json.loads(proc.stdout)["hosts"]["web"]
        return host

    web = resolve()
    assert web["jump"] == {"user": "ops", "host": "bastion", "port": None}
    assert web["port"] == 2200  # from the -F file named in ssh_args
    assert resolve("--jump-host", "other:2022")["jump"] == {
        "user": None,
        "host": "other",
        "port": 2022,
    }
