"""Every setting that can be checked before a run is checked before any host is contacted.

Each case runs the real `audit` command on an inventory whose one host points at a loopback
listener that records connections: the run must exit 2 with one line naming the setting
(and the host and inventory file where the setting came from), leave no report directory,
and never connect. Key and certificate paths that are a FIFO or /dev/zero must fail fast
instead of hanging or eating memory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import audit, environ

URL = "http://127.0.0.1:9/"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener that never accepts: a connection attempt completes in the kernel's
    backlog, where a non-blocking accept() finds it afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        yield sock


def _contacted(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def _refused(
    tmp_path: Path,
    inventory_text: str,
    *args: str,
    env: dict[str, str] | None = None,
) -> str:
    """Run an audit that must be refused before it starts; returns its one error line."""
    inventory = tmp_path / "inv.ini"
    inventory.write_text(inventory_text)
    out = tmp_path / "out"
    started = time.monotonic()
    proc = audit("-i", str(inventory), "--url", URL, "-o", str(out), *args, env=env, timeout=60)
    assert time.monotonic() - started < 30  # fast, never a hang to a deadline
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not out.exists()
    return lines[0]


def _ssh_host(sock: socket.socket, name: str = "web1", **extra: str) -> str:
    fields = {"ansible_host": "127.0.0.1", "ansible_port": str(sock.getsockname()[1])}
    fields.update(extra)
    return name + " " + " ".join(f"{k}={v}" for k, v in fields.items()) + "\n"


def _keygen(path: Path, passphrase: str = "") -> Path:
    # PKCS#8: its encryption needs no extra package (OpenSSH's own format needs bcrypt).
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ecdsa", "-m", "PKCS8", "-N", passphrase, "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture
def known(tmp_path: Path) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("")
    return path


# -- SSH -------------------------------------------------------------------------------------


def test_a_known_hosts_directory_or_fifo_stops_the_run(
    tmp_path: Path, listener: socket.socket
) -> None:
    directory = tmp_path / "kh.d"
    directory.mkdir()
    fifo = tmp_path / "kh.fifo"
    os.mkfifo(fifo)
    for bad, reason in ((directory, "a directory"), (fifo, "a FIFO")):
        line = _refused(tmp_path, "[web]\n" + _ssh_host(listener), "--known-hosts", str(bad))
        assert line == f"error: {bad}: --known-hosts: cannot read known_hosts: {reason}"
        assert not _contacted(listener)


def test_a_missing_known_hosts_given_on_the_command_line_is_refused_unless_accept_new(
    tmp_path: Path, listener: socket.socket
) -> None:
    missing = tmp_path / "nope" / "known_hosts"
    line = _refused(tmp_path, _ssh_host(listener), "--known-hosts", str(missing))
    assert line == f"error: {missing}: --known-hosts: cannot read known_hosts: does not exist"
    assert not _contacted(listener)
    # Under --accept-new-host-keys it is the file the run will create: the run starts.
    inventory = tmp_path / "accept.ini"
    inventory.write_text(_ssh_host(listener))
    proc = audit(
        "-i",
        str(inventory),
        "--known-hosts",
        str(missing),
        "--accept-new-host-keys",
        "--url",
        URL,
        "-o",
        str(tmp_path / "accept-out"),
        "--connect-timeout",
        "1",
        "--timeout",
        "5",
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert _contacted(listener)


def test_a_missing_default_known_hosts_is_an_empty_one(
    tmp_path: Path, listener: socket.socket
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    inventory = tmp_path / "inv.ini"
    inventory.write_text(_ssh_host(listener))
    proc = audit(
        "-i",
        str(inventory),
        "--url",
        URL,
        "-o",
        str(tmp_path / "out"),
        "--connect-timeout",
        "1",
        "--timeout",
        "5",
        env=environ(HOME=str(home)),
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert _contacted(listener)


@pytest.mark.parametrize("how", ["missing", "directory", "fifo", "dev-zero", "not-a-key"])
def test_an_unusable_key_file_in_the_inventory_stops_the_run(
    tmp_path: Path, listener: socket.socket, known: Path, how: str
) -> None:
    key = tmp_path / "key"
    reason = {
        "missing": "does not exist",
        "directory": "a directory",
        "fifo": "a FIFO",
        "dev-zero": "a device",
        "not-a-key": "cannot load the private key",
    }[how]
    if how == "directory":
        key.mkdir()
    elif how == "fifo":
        os.mkfifo(key)
    elif how == "dev-zero":
        key = Path("/dev/zero")
    elif how == "not-a-key":
        key.write_text("this is not a key\n")
    inventory = "[web]\n\n" + _ssh_host(listener, ansible_ssh_private_key_file=str(key))
    line = _refused(tmp_path, inventory, "--known-hosts", str(known))
    assert line.startswith(
        f"error: {tmp_path / 'inv.ini'}:3: host web1: ansible_ssh_private_key_file {key}: {reason}"
    ), line
    assert not _contacted(listener)


def test_ansible_private_key_file_is_checked_too(
    tmp_path: Path, listener: socket.socket, known: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    line = _refused(
        tmp_path,
        _ssh_host(listener, ansible_private_key_file=str(fifo)),
        "--known-hosts",
        str(known),
    )
    assert f"host web1: ansible_private_key_file {fifo}: a FIFO" in line
    assert not _contacted(listener)


def test_an_encrypted_key_without_its_passphrase_stops_the_run(
    tmp_path: Path, listener: socket.socket, known: Path
) -> None:
    key = _keygen(tmp_path / "id_locked", passphrase="correct horse")
    inventory = _ssh_host(listener)
    env = environ(AUDITOR_SSH_KEY_PASSPHRASE=None)
    line = _refused(
        tmp_path, inventory, "--known-hosts", str(known), "--ssh-key", str(key), env=env
    )
    assert f"host web1: --ssh-key {key}: cannot load the private key" in line
    assert "AUDITOR_SSH_KEY_PASSPHRASE" in line
    assert "correct horse" not in line
    assert not _contacted(listener)
    # With its passphrase the key loads and the run goes on to connect.
    proc = audit(
        "-i",
        str(tmp_path / "inv.ini"),
        "--known-hosts",
        str(known),
        "--ssh-key",
        str(key),
        "--url",
        URL,
        "-o",
        str(tmp_path / "ok"),
        "--connect-timeout",
        "1",
        "--timeout",
        "5",
        env=environ(AUDITOR_SSH_KEY_PASSPHRASE="correct horse"),
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert _contacted(listener)


@pytest.mark.parametrize("spec", ["root@:0", "root@", "root@host:0", "root@[]:22"])
def test_a_malformed_jump_host_stops_the_run(
    tmp_path: Path, listener: socket.socket, known: Path, spec: str
) -> None:
    line = _refused(tmp_path, _ssh_host(listener), "--known-hosts", str(known), "--jump-host", spec)
    assert "host web1: --jump-host:" in line and "jump host" in line, line
    assert not _contacted(listener)


def test_a_malformed_proxyjump_in_the_inventory_stops_the_run(
    tmp_path: Path, listener: socket.socket, known: Path
) -> None:
    inventory = _ssh_host(listener, ansible_ssh_common_args="'-o ProxyJump=root@:0'")
    line = _refused(tmp_path, inventory, "--known-hosts", str(known))
    assert "host web1: ansible_ssh_common_args:" in line, line
    assert not _contacted(listener)


# -- password file ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["latin-1", "fifo", "dev-zero", "too-big"])
def test_an_unusable_password_file_is_one_line_and_exit_2(
    tmp_path: Path, listener: socket.socket, known: Path, how: str
) -> None:
    path = tmp_path / "pw"
    if how == "latin-1":
        path.write_bytes("Passwört\n".encode("latin-1"))
        path.chmod(0o600)
        reason = "not UTF-8 text"
    elif how == "fifo":
        os.mkfifo(path, 0o600)
        reason = "a FIFO"
    elif how == "dev-zero":
        path = Path("/dev/zero")
        reason = "a device"
    else:
        path.write_bytes(b"x" * (1 << 20))
        path.chmod(0o600)
        reason = "larger than"
    line = _refused(
        tmp_path, _ssh_host(listener), "--known-hosts", str(known), "--password-file", str(path)
    )
    assert line.startswith(f"error: {path}: --password-file: ") and reason in line, line
    assert "Passw" not in line
    assert not _contacted(listener)


# -- WinRM -----------------------------------------------------------------------------------


def _winrm_host(sock: socket.socket, **extra: str) -> str:
    fields = {
        "ansible_connection": "winrm",
        "ansible_host": "127.0.0.1",
        "ansible_port": str(sock.getsockname()[1]),
        "ansible_user": "auditor",
    }
    fields.update(extra)
    return "[windows]\nwin1 " + " ".join(f"{k}={v}" for k, v in fields.items()) + "\n"


WINRM_ENV = {"AUDITOR_WINRM_PASSWORD": "Pw-prepare-3e1f"}


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"ansible_winrm_transport": "telnet"}, "ansible_winrm_transport='telnet'"),
        ({"ansible_winrm_scheme": "ftp"}, "ansible_winrm_scheme='ftp'"),
        (
            {"ansible_winrm_scheme": "https", "ansible_winrm_ca_trust_path": "/nonexistent/ca.pem"},
            "ansible_winrm_ca_trust_path /nonexistent/ca.pem: does not exist",
        ),
        (
            {
                "ansible_winrm_scheme": "https",
                "ansible_winrm_transport": "certificate",
                "ansible_winrm_cert_pem": "/nonexistent/c.pem",
                "ansible_winrm_cert_key_pem": "/nonexistent/c.key",
            },
            "ansible_winrm_cert_pem /nonexistent/c.pem: does not exist",
        ),
        (
            {"ansible_winrm_scheme": "https", "ansible_winrm_server_cert_validation": "ignore"},
            "--winrm-allow-insecure",
        ),
        (
            {
                "ansible_winrm_scheme": "https",
                "ansible_winrm_transport": "basic",
                "ansible_winrm_server_cert_validation": "ignore",
            },
            "--winrm-allow-insecure",
        ),
    ],
    ids=[
        "transport",
        "scheme",
        "ca-path",
        "cert-path",
        "ntlm-no-validation",
        "basic-no-validation",
    ],
)
def test_bad_winrm_settings_in_the_inventory_stop_the_run(
    tmp_path: Path, listener: socket.socket, variables: dict[str, str], expected: str
) -> None:
    line = _refused(tmp_path, _winrm_host(listener, **variables), env=environ(**WINRM_ENV))
    assert line.startswith(f"error: {tmp_path / 'inv.ini'}:2: host win1: "), line
    assert expected in line, line
    assert not _contacted(listener)


def test_a_fifo_or_dev_zero_as_winrm_certificate_fails_fast(
    tmp_path: Path, listener: socket.socket
) -> None:
    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)
    for bad, reason in ((fifo, "a FIFO"), (Path("/dev/zero"), "a device")):
        variables = {
            "ansible_winrm_scheme": "https",
            "ansible_winrm_transport": "certificate",
            "ansible_winrm_cert_pem": str(bad),
            "ansible_winrm_cert_key_pem": str(bad),
        }
        line = _refused(tmp_path, _winrm_host(listener, **variables))
        assert f"host win1: ansible_winrm_cert_pem {bad}: {reason}" in line, line
        assert not _contacted(listener)


def test_a_winrm_transport_that_needs_a_password_without_one_stops_the_run(
    tmp_path: Path, listener: socket.socket
) -> None:
    env = environ(AUDITOR_WINRM_PASSWORD=None)
    line = _refused(tmp_path, _winrm_host(listener), env=env)
    assert "host win1: no WinRM password" in line, line
    assert not _contacted(listener)


def test_a_mixed_inventory_is_refused_as_a_whole_before_any_host(
    tmp_path: Path, listener: socket.socket, known: Path
) -> None:
    # The good SSH host comes first; the bad WinRM host still stops the run before it.
    inventory = _ssh_host(listener) + _winrm_host(listener, ansible_winrm_transport="telnet")
    _refused(tmp_path, inventory, "--known-hosts", str(known), env=environ(**WINRM_ENV))
    assert not _contacted(listener)


def test_an_ssh_config_identity_file_that_is_a_fifo_stops_the_run_a_missing_one_is_skipped(
    tmp_path: Path, listener: socket.socket, known: Path
) -> None:
    fifo = tmp_path / "id_fifo"
    os.mkfifo(fifo)
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host *\n    IdentityFile {tmp_path / 'id_missing'}\n    IdentityFile {fifo}\n"
    )
    line = _refused(
        tmp_path, _ssh_host(listener), "--known-hosts", str(known), "--ssh-config", str(config)
    )
    assert f"host web1: IdentityFile of {config} {fifo}: a FIFO" in line, line
    assert not _contacted(listener)
    # Only the missing one: skipped, as ssh skips it, and the run goes on to connect.
    config.write_text(f"Host *\n    IdentityFile {tmp_path / 'id_missing'}\n")
    inventory = tmp_path / "ok.ini"
    inventory.write_text(_ssh_host(listener))
    proc = audit(
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
        "--ssh-config",
        str(config),
        "--url",
        URL,
        "-o",
        str(tmp_path / "ok"),
        "--connect-timeout",
        "1",
        "--timeout",
        "5",
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert _contacted(listener)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_an_ssh_config_that_is_a_fifo_or_a_device_fails_fast(
    tmp_path: Path, listener: socket.socket, known: Path, kind: str
) -> None:
    if kind == "fifo":
        config = tmp_path / "ssh_config"
        os.mkfifo(config)
        reason = "a FIFO"
    else:
        config = Path("/dev/zero")
        reason = "a device"
    line = _refused(
        tmp_path, _ssh_host(listener), "--known-hosts", str(known), "--ssh-config", str(config)
    )
    assert f"{config}: cannot read the ssh config file: {reason}" in line, line
    assert not _contacted(listener)


@pytest.mark.parametrize("connection", ["ssh", "winrm"])
def test_a_vaulted_password_the_auditor_cannot_decrypt_stops_the_run(
    tmp_path: Path, listener: socket.socket, known: Path, connection: str
) -> None:
    """A password that cannot be loaded is a setting that cannot be loaded: exit 2 before
    any host, never a per-host error after the others were contacted."""
    port = listener.getsockname()[1]
    inventory = tmp_path / "inv.yml"
    inventory.write_text(
        "all:\n"
        "  hosts:\n"
        "    box1:\n"
        "      ansible_host: 127.0.0.1\n"
        f"      ansible_port: {port}\n"
        f"      ansible_connection: {connection}\n"
        "      ansible_user: auditor\n"
        "      ansible_password: !vault |\n"
        "        $ANSIBLE_VAULT;1.1;AES256\n"
        "        6162\n"
    )
    out = tmp_path / "out"
    proc = audit(
        "-i",
        str(inventory),
        "--url",
        URL,
        "-o",
        str(out),
        "--known-hosts",
        str(known),
        env=environ(**WINRM_ENV),
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        f"error: {inventory}:3: host box1: ansible_password is vault-encrypted"
    ), line
    assert not out.exists()
    assert not _contacted(listener)
