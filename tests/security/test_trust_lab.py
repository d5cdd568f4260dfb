"""Trust material against the lab's real sshd hosts: known_hosts that cannot be read, host
names in another case, trust on first use (what is recorded, and who gets the password)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from auditor_lab import LabInfo
from auditor_lab.spec import PROBE_URL

from tests.support.cli import audit, environ, report_hosts
from tests.support.sshd import loopback_sshd, sshd_available


def _log_size(lab: LabInfo, name: str) -> int:
    return (lab.directory / "hosts" / name / "sshd.log").stat().st_size


def test_an_unreadable_known_hosts_stops_the_run_before_any_host_is_contacted(
    lab: LabInfo, tmp_path: Path
) -> None:
    # Before the fix the first host was an error and every later one was audited with no
    # host-key check at all: `rekeyed`, whose key is wrong, came back reachable.
    not_a_file = tmp_path / "known_hosts.d"
    not_a_file.mkdir()
    fifo = tmp_path / "known_hosts.fifo"
    os.mkfifo(fifo)
    for bad, reason in ((not_a_file, "a directory"), (fifo, "a FIFO")):
        before = {name: _log_size(lab, name) for name in ("direct", "rekeyed")}
        out = tmp_path / f"out-{bad.name}"
        proc = audit(
            "-i",
            str(lab.inventory),
            "--known-hosts",
            str(bad),
            "--url",
            PROBE_URL,
            "-o",
            str(out),
            "--limit",
            "direct:rekeyed",
            "--forks",
            "1",
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"error: {bad}: --known-hosts: cannot read known_hosts: {reason}"
        ]
        assert not out.exists()
        # No SSH connection reached either host (sshd logs every one, even refused ones).
        assert {name: _log_size(lab, name) for name in before} == before


@pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd")
@pytest.mark.parametrize(
    ("recorded", "inventory_name"), [("localhost", "LocalHost"), ("LOCALHOST", "localhost")]
)
def test_known_hosts_matches_host_names_without_regard_to_case(
    tmp_path: Path, recorded: str, inventory_name: str
) -> None:
    # `localhost` is the one name that resolves on every machine without DNS.
    with loopback_sshd(tmp_path / "sshd") as server:
        key = server.known_hosts.read_text().split(" ", 1)[1]
        known = tmp_path / "known_hosts"
        known.write_text(f"[{recorded}]:{server.port} {key}")
        inventory = tmp_path / "case.ini"
        inventory.write_text(server.inventory_line("box", ansible_host=inventory_name) + "\n")
        proc = audit(
            "-i",
            str(inventory),
            "--known-hosts",
            str(known),
            "--url",
            "http://127.0.0.1:9/",
            "-o",
            str(tmp_path / "out"),
            "--timeout",
            "30",
        )
    assert "Traceback" not in proc.stderr
    host = report_hosts(tmp_path / "out")["box"]
    assert host["audited"] is True, host


def _accept_new(
    lab: LabInfo, inventory: Path, known: Path, out: Path, *args: str, password: bool = True
) -> tuple[int, str]:
    assert lab.ssh_password is not None
    env = environ(
        AUDITOR_SSH_PASSWORD=lab.ssh_password.read_text().strip() if password else None,
        HOME=str(out.parent),  # nothing from the runner's ~/.ssh
        SSH_AUTH_SOCK=None,
    )
    proc = audit(
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
        "--accept-new-host-keys",
        "--url",
        PROBE_URL,
        "-o",
        str(out),
        "--timeout",
        "30",
        *args,
        env=env,
    )
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stderr


@pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd")
def test_accept_new_records_only_literal_hosts_never_a_pattern(
    lab: LabInfo, tmp_path: Path
) -> None:
    direct = lab.host("direct")
    known = tmp_path / "known_hosts"
    known.write_text("")
    with loopback_sshd(tmp_path / "sshd") as server:
        inventory = tmp_path / "tofu.ini"
        inventory.write_text(
            f"direct ansible_host={direct.address} ansible_user=root "
            f"ansible_ssh_private_key_file={lab.key}\n"
            + server.inventory_line("loop")
            + "\n"
            # Recorded as written, these would be known_hosts patterns trusting the key of
            # whoever answers for every host of the domain (or every host at all).
            + f"star ansible_host='*.corp.example' ansible_ssh_private_key_file={lab.key}\n"
            + f"listed ansible_host='{direct.address},*' ansible_ssh_private_key_file={lab.key}\n"
        )
        status, err = _accept_new(lab, inventory, known, tmp_path / "out", password=False)
    hosts = report_hosts(tmp_path / "out")
    assert hosts["direct"]["observations"][0]["outcome"] == "reachable", err
    assert hosts["loop"]["audited"] is True, hosts["loop"]
    assert hosts["star"]["host_outcome"] == "host_key_unknown", hosts["star"]
    assert "known_hosts would read it as a pattern" in hosts["star"]["detail"]
    # A ',' in a host name is refused earlier, as `ssh` refuses it: never contacted at all.
    assert hosts["listed"]["host_outcome"] == "error", hosts["listed"]
    assert "contains invalid characters" in hosts["listed"]["detail"]
    names = sorted(line.split(" ", 1)[0] for line in known.read_text().splitlines())
    assert names == sorted([direct.address, f"[127.0.0.1]:{server.port}"])
    assert status == 1  # the loopback host cannot reach the lab's CDN: blocked


def test_a_host_seen_for_the_first_time_does_not_get_the_password(
    lab: LabInfo, tmp_path: Path
) -> None:
    pwauth = lab.host("pwauth")
    log = lab.directory / "hosts" / "pwauth" / "sshd.log"
    inventory = tmp_path / "pw.ini"
    inventory.write_text(f"pwauth ansible_host={pwauth.address} ansible_user=root\n")
    known = tmp_path / "known_hosts"
    known.write_text("")

    before = log.stat().st_size
    status, err = _accept_new(lab, inventory, known, tmp_path / "first")
    host = report_hosts(tmp_path / "first")["pwauth"]
    assert status == 3, err
    assert host["host_outcome"] == "auth_failed", host
    assert "password was not sent" in host["detail"]
    with log.open() as fh:
        fh.seek(before)
        seen = fh.read()
    assert "password" not in seen, seen  # neither Accepted nor Failed password: never sent
    # The key was recorded at first sight (as ssh's accept-new does), so the next run knows
    # the host and sends the password.
    assert [line.split(" ", 1)[0] for line in known.read_text().splitlines()] == [pwauth.address]
    status, err = _accept_new(lab, inventory, known, tmp_path / "second")
    assert status == 0, err
    assert report_hosts(tmp_path / "second")["pwauth"]["facts"]["hostname"] == "pwauth"

    # Opting in sends the password to a host seen for the first time.
    fresh = tmp_path / "fresh_known_hosts"
    status, err = _accept_new(lab, inventory, fresh, tmp_path / "opt-in", "--password-on-new-keys")
    assert status == 0, err
    assert report_hosts(tmp_path / "opt-in")["pwauth"]["facts"]["hostname"] == "pwauth"
