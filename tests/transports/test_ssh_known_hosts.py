"""What the SSH transport writes to and reads from known_hosts, checked against OpenSSH's
own `ssh-keygen -F` (which looks a host up the way `ssh` does)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import asyncssh
import pytest

from auditor.transports.ssh import _lowercase_names, known_hosts_name


@pytest.mark.parametrize(
    ("address", "port", "entry"),
    [
        ("web1.example.com", 22, "web1.example.com"),
        ("WEB1.Example.COM", 22, "web1.example.com"),
        ("10.0.0.5", 2222, "[10.0.0.5]:2222"),
        ("2001:db8::1", 22, "2001:db8::1"),
        ("2001:db8::1", 2200, "[2001:db8::1]:2200"),
        ("host_with_underscore", 22, "host_with_underscore"),
    ],
)
def test_a_literal_host_is_recorded_as_openssh_writes_it(
    address: str, port: int, entry: str
) -> None:
    assert known_hosts_name(address, port) == entry


@pytest.mark.parametrize(
    "address",
    [
        *("*.corp.example", "web?", "!web1", "a,b", "web 1", "web\t1", "[web1]", "|1|x"),
        *("@cert", "#x", "", "-oProxyCommand=x", "web1\n*"),
    ],
)
def test_an_address_known_hosts_would_read_as_a_pattern_is_never_recorded(address: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        known_hosts_name(address, 22)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
def test_names_are_matched_without_case_as_ssh_keygen_finds_them(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    text = f"Host.Example.COM {key}\n@revoked BAD.example {key}\n|1|abc=|def= {key}\n"
    known = tmp_path / "known_hosts"
    known.write_text(text)
    # OpenSSH finds the mixed-case entry for the lowercase name...
    found = subprocess.run(
        ["ssh-keygen", "-F", "host.example.com", "-f", str(known)], capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    # ...and so does the transport, after lowercasing the host patterns (hashes kept).
    lowered = asyncssh.import_known_hosts(_lowercase_names(text))
    assert lowered.match("host.example.com", "", 22)[0]
    assert _lowercase_names(text).splitlines()[1].startswith("@revoked bad.example ")
    assert _lowercase_names(text).splitlines()[2].startswith("|1|abc=|def= ")
