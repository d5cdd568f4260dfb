"""The OpenSSH client config: HostName, Port, User, IdentityFile and ProxyJump, resolved per
host with the inventory and the command line taking precedence, as with `ansible` and `ssh`.
The end-to-end tests log in to a real sshd on loopback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from auditor.errors import HostLevelError, InputError
from auditor.models import Connection, Host, Platform
from auditor.outcomes import HostOutcome
from auditor.transports.options import SSHSettings
from auditor.transports.ssh import JumpSpec, SSHTransport
from auditor.transports.sshconfig import SSHConfigReader
from tests.support.cli import audit, audit_argv, environ, report_hosts
from tests.support.sshd import loopback_sshd, sshd_available

URL = "http://127.0.0.1:9/status"  # a closed loopback port: a fast, local verdict


def _host(name: str, **vars_: str) -> Host:
    port = vars_.pop("ansible_port", None)
    return Host(
        name=name,
        address=vars_.pop("ansible_host", name),
        connection=Connection.SSH,
        platform=Platform.LINUX,
        port=int(port) if port else None,
        user=vars_.pop("ansible_user", None),
        vars=vars_,
    )


CONFIG = """\
Host alias
    HostName 192.0.2.7
    Port 2200
    User carol
    IdentityFile ~/keys/alias_key
    ProxyJump ops@bastion:2022

Host bastion
    HostName 192.0.2.1
    User bastionuser

Host piped
    ProxyCommand nc %h %p

Host *
    User everyone
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(CONFIG)
    return path


def test_the_config_supplies_what_the_inventory_leaves_unsaid(config: Path) -> None:
    transport = SSHTransport(SSHSettings(ssh_config=config))
    endpoint = transport.endpoint(_host("alias"))
    assert (endpoint.address, endpoint.port, endpoint.user) == ("192.0.2.7", 2200, "carol")
    assert endpoint.key_files == (Path("~/keys/alias_key").expanduser(),)
    assert not endpoint.keys_required  # a missing IdentityFile is skipped, as ssh does
    assert endpoint.jump == JumpSpec("ops", "bastion", 2022)


def test_the_inventory_wins_over_the_command_line_which_wins_over_the_config(
    config: Path, tmp_path: Path
) -> None:
    flag_key = tmp_path / "flag_key"
    transport = SSHTransport(
        SSHSettings(ssh_config=config, user="cli", keys=(flag_key,), jump_host="cli-jump")
    )
    from_flags = transport.endpoint(_host("alias"))
    assert (from_flags.user, from_flags.key_files, from_flags.jump) == (
        "cli",
        (flag_key,),
        JumpSpec(None, "cli-jump", None),
    )
    assert from_flags.keys_required
    inv = transport.endpoint(
        _host(
            "alias",
            ansible_port="2222",
            ansible_user="inv",
            ansible_ssh_private_key_file="/inv/key",
            ansible_ssh_common_args="-o ProxyJump=none",
        )
    )
    assert (inv.address, inv.port, inv.user, inv.key_files, inv.jump) == (
        "192.0.2.7",
        2222,
        "inv",
        (Path("/inv/key"),),
        None,
    )


def test_host_blocks_match_the_inventory_address(config: Path) -> None:
    transport = SSHTransport(SSHSettings(ssh_config=config))
    # ansible_host is what ssh is given, so it is what Host patterns see.
    endpoint = transport.endpoint(_host("web1", ansible_host="alias"))
    assert (endpoint.address, endpoint.user) == ("192.0.2.7", "carol")
    other = transport.endpoint(_host("web2"))
    assert (other.address, other.port, other.user, other.jump) == ("web2", 22, "everyone", None)


def test_the_bastion_itself_is_resolved_through_the_config(config: Path) -> None:
    transport = SSHTransport(SSHSettings(ssh_config=config))
    bastion = transport.endpoint(_host("bastion", ansible_user="ops"), follow_jump=False)
    assert (bastion.address, bastion.user) == ("192.0.2.1", "ops")


def test_a_proxycommand_is_a_host_level_error_not_run(config: Path) -> None:
    transport = SSHTransport(SSHSettings(ssh_config=config))
    with pytest.raises(HostLevelError) as caught:
        transport.endpoint(_host("piped"))
    assert caught.value.outcome is HostOutcome.ERROR
    assert "ProxyCommand" in caught.value.detail and "ProxyJump" in caught.value.detail
    # A ProxyJump given on the inventory takes precedence, as on ssh's command line.
    jumped = transport.endpoint(_host("piped", ansible_ssh_common_args="-J gw"))
    assert jumped.jump == JumpSpec(None, "gw", None)


def test_match_exec_is_refused_before_anything_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    config = tmp_path / "ssh_config"
    config.write_text(f'Host *\n    User x\nMatch !exec "touch {canary}"\n    Port 2\n')
    with pytest.raises(InputError) as caught:
        SSHConfigReader(config)
    assert caught.value.line == 3 and "Match exec" in caught.value.message
    assert not canary.exists()


def test_no_config_means_the_inventory_alone(tmp_path: Path) -> None:
    reader = SSHConfigReader(None)
    # What `ssh -F none` gives: the name as given (lowercased, as ssh does), port 22.
    found = reader.lookup("Anything")
    assert (found.hostname, found.port, found.user, found.identity_files) == (
        "anything",
        22,
        None,
        (),
    )
    assert found.default_identities and found.proxy_jump is None


def test_a_broken_or_unreadable_config_is_an_input_error_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("Port notanumber\n")
    with pytest.raises(InputError) as caught:
        SSHConfigReader(broken)
    assert str(broken) in str(caught.value)
    with pytest.raises(InputError):
        SSHConfigReader(tmp_path / "missing")


needs_sshd = pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH sshd")


def _audit(
    inventory: Path, known: Path, out: Path, *args: str, home: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, object]]]:
    proc = audit(
        *audit_argv(inventory, known, URL, out, "--timeout", "20", *args)[1:],
        env=environ(HOME=str(home), SSH_AUTH_SOCK=None),
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, report_hosts(out) if (out / "report.json").exists() else {}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_sshd
def test_an_alias_in_the_default_ssh_config_reaches_a_real_sshd(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    with loopback_sshd(tmp_path / "s") as server:
        # Nothing in the inventory but the alias: address, port, user and key all come from
        # ~/.ssh/config, read by default as ssh reads it.
        (home / ".ssh" / "config").write_text(
            "Host box\n"
            "    HostName 127.0.0.1\n"
            f"    Port {server.port}\n"
            "    User root\n"
            f"    IdentityFile {server.key}\n"
        )
        inventory = tmp_path / "inv.ini"
        inventory.write_text("box\n")
        proc, hosts = _audit(inventory, server.known_hosts, tmp_path / "out", home=home)
    assert proc.returncode == 1, proc.stderr  # audited; the URL is a closed port
    assert hosts["box"]["audited"] is True
    assert hosts["box"]["observations"][0]["outcome"] == "refused"  # type: ignore[index]


@needs_sshd
def test_the_inventory_port_wins_over_the_config_port(tmp_path: Path) -> None:
    closed = _closed_port()
    with loopback_sshd(tmp_path / "s") as server:
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host box\n    HostName 127.0.0.1\n    Port {server.port}\n    User root\n"
            f"    IdentityFile {server.key}\n"
        )
        inventory = tmp_path / "inv.ini"
        inventory.write_text(f"box ansible_port={closed}\n")
        proc, hosts = _audit(
            inventory,
            server.known_hosts,
            tmp_path / "out",
            "--ssh-config",
            str(config),
            home=tmp_path,
        )
    assert proc.returncode == 3, proc.stderr
    assert hosts["box"]["host_outcome"] == "unreachable"
    assert f"127.0.0.1:{closed}" in str(hosts["box"]["detail"])


@needs_sshd
def test_a_proxycommand_in_the_config_is_reported_and_nothing_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    config = tmp_path / "ssh_config"
    config.write_text(f"Host box\n    ProxyCommand touch {canary}\n")
    inventory = tmp_path / "inv.ini"
    inventory.write_text("box\n")  # Host patterns see what ssh is given: here, the name
    known = tmp_path / "known_hosts"
    known.write_text("")
    proc, hosts = _audit(
        inventory, known, tmp_path / "out", "--ssh-config", str(config), home=tmp_path
    )
    assert proc.returncode == 3, proc.stderr
    assert hosts["box"]["host_outcome"] == "error"
    assert "ProxyCommand" in str(hosts["box"]["detail"])
    assert not canary.exists()


def test_a_broken_config_exits_2_with_a_one_line_message(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host box\n    Port 99999999\n")
    inventory = tmp_path / "inv.ini"
    inventory.write_text("box\n")
    known = tmp_path / "known_hosts"
    known.write_text("")
    proc, _ = _audit(inventory, known, tmp_path / "out", "--ssh-config", str(config), home=tmp_path)
    assert proc.returncode == 2
    assert str(config) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_proxyjump_loop_is_a_host_level_error(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host loop\n    ProxyJump loop\n")
    transport = SSHTransport(SSHSettings(ssh_config=config))
    with pytest.raises(HostLevelError) as caught:
        transport.endpoint(_host("loop"))
    assert caught.value.outcome is HostOutcome.ERROR and "loop" in caught.value.detail
    # Another port is another destination: not a loop.
    assert transport.endpoint(_host("loop", ansible_port="2200")).jump == JumpSpec(
        None, "loop", None
    )


@pytest.mark.parametrize("value", ["root@:0", "gw:0", "@gw", "a;b", "gw,"])
def test_a_malformed_jump_host_is_an_input_error_naming_the_setting(value: str) -> None:
    transport = SSHTransport(SSHSettings(jump_host=value))
    with pytest.raises(InputError) as caught:
        transport.endpoint(_host("web1"))
    assert caught.value.source == "--jump-host"
    inventory = _host("web2", ansible_ssh_common_args=f"-o ProxyJump={value}")
    with pytest.raises(InputError) as caught:
        SSHTransport(SSHSettings()).endpoint(inventory)
    assert caught.value.source == "ansible_ssh_common_args of host web2"


def test_identityfile_none_names_no_key_files_and_turns_the_defaults_off(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host bare\n    IdentityFile none\nHost both\n    IdentityFile /keys/a\n")
    transport = SSHTransport(SSHSettings(ssh_config=config))
    bare = transport.endpoint(_host("bare"))
    assert (bare.key_files, bare.default_keys) == ((), False)
    named = transport.endpoint(_host("both"))
    assert (named.key_files, named.default_keys) == ((Path("/keys/a"),), False)
    other = transport.endpoint(_host("other"))
    assert (other.key_files, other.default_keys) == ((), True)
