"""Typed settings: every source, its precedence, its errors and the JSON a site runner gets."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.secret import Secret
from auditor.settings import KEYS, Settings, build_settings
from auditor.transports.options import HostKeyPolicy, SSHSettings, WinRMSettings

SECRET = "s3cret-Passw0rd"


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    """A working directory and a home directory, both empty and private."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir(mode=0o755)
    home.mkdir(mode=0o755)
    return cwd, home


def _build(
    place: tuple[Path, Path], env: dict[str, str] | None = None, **flags: object
) -> Settings:
    cwd, home = place
    return build_settings(flags, {"HOME": str(home), **(env or {})}, cwd=cwd, home=home)


def test_nothing_anywhere_gives_the_dataclass_defaults(place: tuple[Path, Path]) -> None:
    settings = _build(place)
    assert settings == Settings(probe=settings.probe)
    assert settings.schedule.forks == 50 and settings.ssh.connect_timeout == 10.0
    assert settings.inventory.path is None
    assert all(settings.origin(key.name) == "default" for key in KEYS)


def test_forks_comes_from_ansible_cfg_then_toml_then_env_then_flag(
    place: tuple[Path, Path],
) -> None:
    cwd, _ = place
    (cwd / "ansible.cfg").write_text("[defaults]\n# the fleet\nforks = 7\n")
    got = _build(place)
    assert (got.schedule.forks, got.origin("forks")) == (7, f"{cwd / 'ansible.cfg'}:3")
    (cwd / "fleet-auditor.toml").write_text("forks = 8\n")
    got = _build(place)
    assert (got.schedule.forks, got.origin("forks")) == (8, f"{cwd / 'fleet-auditor.toml'}:1")
    got = _build(place, {"AUDITOR_FORKS": "9"})
    assert (got.schedule.forks, got.origin("forks")) == (9, "env AUDITOR_FORKS")
    got = _build(place, {"AUDITOR_FORKS": "9"}, forks=10)
    assert (got.schedule.forks, got.origin("forks")) == (10, "flag --forks")


def test_ansible_cfg_is_found_the_way_ansible_finds_it(place: tuple[Path, Path]) -> None:
    cwd, home = place
    (home / ".ansible.cfg").write_text("[defaults]\nremote_user = from-home\n")
    assert _build(place).ssh.user == "from-home"
    (cwd / "ansible.cfg").write_text("[defaults]\nremote_user = from-cwd\n")
    assert _build(place).ssh.user == "from-cwd"
    named = cwd / "elsewhere.cfg"
    named.write_text("[defaults]\nremote_user = from-env\n")
    assert _build(place, {"ANSIBLE_CONFIG": str(named)}).ssh.user == "from-env"
    # Only the first file found is read, as Ansible does: nothing merges from the others.
    assert _build(place, {"ANSIBLE_CONFIG": str(named)}).schedule.forks == 50


def test_every_ansible_setting_the_auditor_takes(place: tuple[Path, Path]) -> None:
    cwd, _ = place
    (cwd / "ansible.cfg").write_text(
        "[defaults]\n"
        "inventory = inv/hosts.ini\n"
        "remote_user = deploy ; inline comment\n"
        "private_key_file = ~/keys/id_fleet\n"
        "forks = 12\n"
        "timeout = 25\n"
        "host_key_checking = False\n"
        "[ssh_connection]\n"
        "ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -J ops@bastion:2222 "
        "-F ssh/config\n"
    )
    got = _build(place)
    home = place[1]
    assert got.inventory.path == str(cwd / "inv/hosts.ini")  # relative to the file
    assert got.ssh.user == "deploy"
    assert got.ssh.keys == (home / "keys/id_fleet",)
    assert got.schedule.forks == 12
    assert got.ssh.connect_timeout == got.winrm.connect_timeout == 25.0
    assert got.ssh.host_key_policy is HostKeyPolicy.NONE
    assert got.ssh.jump_host == "ops@bastion:2222"
    assert got.ssh.ssh_config == cwd / "ssh/config"
    assert got.origin("host_key_policy") == f"{cwd / 'ansible.cfg'}:7"


@pytest.mark.parametrize(
    ("ssh_args", "jump"),
    [
        ("-o ProxyJump=bastion", "bastion"),
        ("-oProxyJump=bastion", "bastion"),
        ("-o 'ProxyJump bastion'", "bastion"),
        ("-o proxyjump=u@b:22", "u@b:22"),
        ("-J bastion", "bastion"),
        ("-Jbastion", "bastion"),
        ("-C -o ControlMaster=auto", None),
    ],
)
def test_the_jump_host_in_ssh_args(place: tuple[Path, Path], ssh_args: str, jump: str) -> None:
    (place[0] / "ansible.cfg").write_text(f"[ssh_connection]\nssh_args = {ssh_args}\n")
    assert _build(place).ssh.jump_host == jump


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[defaults]\n\nforks = many\n", 3, "forks: 'many' is not an integer"),
        ("[defaults]\ntimeout = 0\n", 2, "timeout: '0' is not in the range"),
        ("[defaults]\nhost_key_checking = maybe\n", 2, "is not a boolean"),
        ("[defaults]\ninventory = a.ini,b.ini\n", 2, "several inventory sources"),
        ("[ssh_connection]\nssh_args = -o\n", 2, "ssh_args: -o needs a value"),
        ("[defaults]\nforks = 1\nforks = 2\n", 3, "not a valid ansible.cfg"),
        ("forks = 1\n", 1, "not a valid ansible.cfg"),
    ],
)
def test_a_bad_ansible_cfg_names_file_and_line(
    place: tuple[Path, Path], text: str, line: int, message: str
) -> None:
    path = place[0] / "ansible.cfg"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        _build(place)
    assert (caught.value.source, caught.value.line) == (str(path), line)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('forks = "7"\n', 1, "forks: '7' is not an integer"),
        ("user = 'a'\n\nforks = 0\n", 3, "forks: 0 is not in the range"),
        ("forks = 5\nfork = 6\n", 2, "unknown setting 'fork'"),
        ("forks = 5\n[ssh]\nuser = 'x'\n", 2, "unknown setting 'ssh'"),
        ("forks = 5\ntimeout = \n", 2, "not valid TOML"),
        ("formats = ['html', 'pdf']\n", 1, "'pdf' is not one of"),
        ("host_key_policy = 'off'\n", 1, "'off' is not one of"),
        ("agent_proxy = 'yes'\n", 1, "is not a boolean"),
        ("report_mode = '9'\n", 1, "report_mode: '9' is not an octal file mode"),
        ("report_mode = 600\n", 1, "report_mode: 600 is not an octal file mode"),
    ],
)
def test_a_bad_toml_file_names_file_and_line(
    place: tuple[Path, Path], text: str, line: int, message: str
) -> None:
    path = place[0] / "fleet-auditor.toml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        _build(place)
    assert (caught.value.source, caught.value.line) == (str(path), line)
    assert message in caught.value.message


def test_the_toml_file_is_the_flag_then_env_then_cwd_then_the_user_config_dir(
    place: tuple[Path, Path], tmp_path: Path
) -> None:
    cwd, home = place
    user = home / ".config/fleet-auditor/config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("forks = 2\n")
    assert _build(place).schedule.forks == 2
    xdg = tmp_path / "xdg/fleet-auditor/config.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("forks = 3\n")
    assert _build(place, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}).schedule.forks == 3
    (cwd / "fleet-auditor.toml").write_text("forks = 4\n")
    assert _build(place).schedule.forks == 4
    env_file = tmp_path / "env.toml"
    env_file.write_text("forks = 5\n")
    assert _build(place, {"AUDITOR_CONFIG": str(env_file)}).schedule.forks == 5
    flag_file = tmp_path / "flag.toml"
    flag_file.write_text("forks = 6\n")
    got = _build(place, {"AUDITOR_CONFIG": str(env_file)}, config=flag_file)
    assert got.schedule.forks == 6
    with pytest.raises(InputError, match="config file does not exist"):
        _build(place, config=tmp_path / "missing.toml")


def test_files_in_a_world_writable_working_directory_are_not_read(
    place: tuple[Path, Path],
) -> None:
    cwd, _ = place
    (cwd / "ansible.cfg").write_text("[defaults]\nforks = 7\n")
    (cwd / "fleet-auditor.toml").write_text("user = 'mallory'\n")
    cwd.chmod(0o777)
    got = _build(place)
    assert (got.schedule.forks, got.ssh.user) == (50, None)
    assert len(got.warnings) == 2 and all("world-writable" in w for w in got.warnings)


def test_a_fifo_in_place_of_a_settings_file_is_refused_without_blocking(
    place: tuple[Path, Path],
) -> None:
    fifo = place[0] / "fleet-auditor.toml"
    os.mkfifo(fifo)
    result: list[BaseException | Settings] = []

    def build() -> None:
        try:
            result.append(_build(place))
        except InputError as exc:
            result.append(exc)

    worker = threading.Thread(target=build, daemon=True)
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # unblock the reader before failing
        with open(fifo, "w"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(result[0], InputError) and "FIFO" in str(result[0])


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AUDITOR_FORKS", "0", "AUDITOR_FORKS: forks: '0' is not in the range 1..100000"),
        ("AUDITOR_TIMEOUT", "soon", "AUDITOR_TIMEOUT: timeout: 'soon' is not a number"),
        ("AUDITOR_AGENT_PROXY", "sometimes", "is not a boolean"),
        ("AUDITOR_WINRM_TRANSPORT", "digest", "'digest' is not one of"),
        ("AUDITOR_REPORT_MODE", "777", "report_mode: '777' must be between 000 and 666"),
    ],
)
def test_a_bad_environment_variable_is_named(
    place: tuple[Path, Path], name: str, value: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        _build(place, {name: value})


def test_environment_variables_cover_every_setting(place: tuple[Path, Path]) -> None:
    got = _build(
        place,
        {
            "AUDITOR_INVENTORY": "prod.ini",
            "AUDITOR_USER": "ops",
            "AUDITOR_KNOWN_HOSTS": "/srv/known_hosts",
            "AUDITOR_SSH_KEYS": "/k/a,/k/b",
            "AUDITOR_HOST_KEY_POLICY": "accept-new",
            "AUDITOR_FORMATS": "csv,json",
            "AUDITOR_REPORT_MODE": "640",
            "AUDITOR_WINRM_ALLOW_BASIC_HTTP": "yes",
            "AUDITOR_PROBE_TIMEOUT": "4.5",
        },
    )
    assert got.inventory.path == "prod.ini"
    assert (got.ssh.user, got.ssh.known_hosts) == ("ops", Path("/srv/known_hosts"))
    assert got.ssh.keys == (Path("/k/a"), Path("/k/b"))
    assert got.ssh.host_key_policy is HostKeyPolicy.ACCEPT_NEW
    assert (got.report.formats, got.report.mode) == (("csv", "json"), 0o640)
    assert got.winrm.allow_basic_http is True and got.probe.max_time == 4.5


def test_both_host_key_flags_are_refused(place: tuple[Path, Path]) -> None:
    with pytest.raises(InputError, match="choose one of --no-host-key-check"):
        _build(place, no_host_key_check=True, accept_new_host_keys=True)


def test_a_bad_report_mode_flag_names_the_flag(place: tuple[Path, Path]) -> None:
    with pytest.raises(InputError, match=r"^--report-mode: '777' must be between 000 and 666$"):
        _build(place, report_mode="777")


def test_settings_round_trip_through_json_without_their_secrets(
    place: tuple[Path, Path],
) -> None:
    got = _build(
        place,
        {
            "AUDITOR_SSH_PASSWORD": SECRET,
            "AUDITOR_WINRM_PASSWORD": SECRET + "w",
            "AUDITOR_SSH_KEY_PASSPHRASE": SECRET + "p",
            "AUDITOR_INVENTORY": "prod.ini",
        },
        forks=3,
        ssh_keys=("/k/a",),
        accept_new_host_keys=True,
        winrm_transport="kerberos",
        urls=("https://x.example/",),
        shard="1/2",
    )
    assert got.ssh.password is not None and got.ssh.password.reveal() == SECRET
    assert got.winrm.password is not None and got.ssh.passphrase is not None
    text = got.to_json()
    assert SECRET not in text
    plain = json.loads(text)
    assert "password" not in plain["ssh"] and "passphrase" not in plain["ssh"]
    back = Settings.from_json(text)
    assert back == got
    assert back.ssh.password is None and back.winrm.password is None
    assert back.ssh.keys == (Path("/k/a"),) and back.ssh.host_key_policy is HostKeyPolicy.ACCEPT_NEW
    assert back.to_json() == text
    with pytest.raises(InputError, match="unknown key 'fork'"):
        Settings.from_json(json.dumps({"schedule": {"fork": 1}}))
    with pytest.raises(InputError, match="forks: 0 is not in the range"):
        Settings.from_json(json.dumps({"schedule": {"forks": 0}}))
    with pytest.raises(InputError, match="settings JSON: 'off' is not a valid HostKeyPolicy"):
        Settings.from_json(json.dumps({"ssh": {"host_key_policy": "off"}}))
    with pytest.raises(InputError, match="'telnet' is not one of"):
        Settings.from_json(json.dumps({"winrm": {"transport": "telnet"}}))


def test_secrets_stay_out_of_reprs() -> None:
    ssh = SSHSettings(password=Secret(SECRET), passphrase=Secret(SECRET))
    winrm = WinRMSettings(password=Secret(SECRET))
    assert SECRET not in repr(Settings(ssh=ssh, winrm=winrm))
