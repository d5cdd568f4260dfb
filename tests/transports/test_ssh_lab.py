"""The SSH transport against the lab: real OpenSSH hosts in network namespaces, each failing
(or not) in its own real way. One audit of the whole design fleet, then one test per host."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import LabInfo
from auditor_lab.spec import CDN_ADDRESS, INTERNAL_SSH_PORT, PROBE_URL, design_hosts

from tests.support.cli import BIN, audit, audit_argv, environ, report_hosts

DESIGN = {spec.name: spec for spec in design_hosts()}


def with_password(lab: LabInfo) -> dict[str, str]:
    """The environment that gives the auditor the password-only host's root password.

    A run that selects the lab's Windows hosts needs a WinRM password before it starts; this
    one is wrong on purpose, so those hosts are refused at login and the WinRM tests (which
    count each Windows host's sessions) see no session from these SSH runs."""
    assert lab.ssh_password is not None
    return environ(
        AUDITOR_SSH_PASSWORD=lab.ssh_password.read_text().strip(),
        AUDITOR_WINRM_PASSWORD="not-the-lab-password",
    )


def lab_audit(
    lab: LabInfo, out: Path, *args: str, inventory: Path | None = None
) -> tuple[int, dict[str, Any], str]:
    proc = audit(
        "-i",
        str(inventory or lab.inventory),
        "--known-hosts",
        str(lab.known_hosts),
        "--url",
        PROBE_URL,
        "-o",
        str(out),
        "--timeout",
        "40",
        "--connect-timeout",
        "5",
        "--probe-timeout",
        "4",
        "--probe-connect-timeout",
        "3",
        *args,
        env=with_password(lab),
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads((out / "report.json").read_text())
    return proc.returncode, {h["host"]["name"]: h for h in report["hosts"]}, proc.stderr


@pytest.fixture(scope="module")
def fleet(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    status, hosts, _ = lab_audit(lab, tmp_path_factory.mktemp("fleet") / "out")
    return status, hosts


def test_the_fleet_audit_exits_1_and_lists_every_host_once(
    fleet: tuple[int, dict[str, Any]], lab: LabInfo
) -> None:
    status, hosts = fleet
    assert status == 1
    assert sorted(hosts) == sorted(spec.name for spec in lab.hosts)


@pytest.mark.parametrize("name", sorted(DESIGN))
def test_each_lab_host_gets_its_designed_outcome(
    fleet: tuple[int, dict[str, Any]], name: str
) -> None:
    spec = DESIGN[name]
    result = fleet[1][name]
    if spec.audited:
        assert result["audited"] is True, result
        (obs,) = result["observations"]
        assert obs["outcome"] == spec.outcome.value, obs
        assert spec.detail in obs["detail"] or spec.detail in obs["tls_issuer"], obs
        if spec.proxy:
            assert obs["proxy"] == spec.proxy
        # Each namespace has its own UTS hostname: the facts prove which host answered.
        assert result["facts"]["hostname"] == name
    else:
        assert result["audited"] is False, result
        assert result["host_outcome"] == spec.outcome.value, result
        assert result["observations"] == []


def test_tls_interception_names_the_issuer(fleet: tuple[int, dict[str, Any]]) -> None:
    (obs,) = fleet[1]["intercept"]["observations"]
    assert "Contoso SSL Inspection CA" in obs["tls_issuer"]
    assert "Contoso SSL Inspection CA" in obs["detail"]


def test_host_level_details_say_why(fleet: tuple[int, dict[str, Any]]) -> None:
    hosts = fleet[1]
    assert "Connection refused" in hosts["sshdown"]["detail"]
    assert "differs from the one recorded" in hosts["rekeyed"]["detail"]
    assert "no curl, wget or python3" in hosts["nocurl"]["detail"]
    assert hosts["noauth"]["detail"]


def test_limit_audits_only_the_matching_hosts(lab: LabInfo, tmp_path: Path) -> None:
    status, hosts, _ = lab_audit(lab, tmp_path / "out", "--limit", "site_b:!intercept")
    assert sorted(hosts) == ["http503", "proxydeny", "viaproxy"]
    assert status == 1


def test_a_mixed_inventory_audits_ssh_and_local_hosts_in_one_run(
    lab: LabInfo, tmp_path: Path
) -> None:
    inventory = tmp_path / "mixed.ini"
    inventory.write_text(
        lab.inventory.read_text() + "\n[control]\nauditor-box ansible_connection=local\n"
    )
    # The lab CDN by address over plain HTTP: the one URL both a lab host and this machine
    # can reach without any name resolution leaving the machine.
    url = "http://10.213.0.1/status"
    proc = audit(
        "-i",
        str(inventory),
        "--known-hosts",
        str(lab.known_hosts),
        "--url",
        url,
        "-o",
        str(tmp_path / "out"),
        "--limit",
        "direct:control",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    hosts = {h["host"]["name"]: h for h in report["hosts"]}
    assert sorted(hosts) == ["auditor-box", "direct"]
    assert hosts["direct"]["host"]["connection"] == "ssh"
    assert hosts["auditor-box"]["host"]["connection"] == "local"
    assert {h["observations"][0]["outcome"] for h in hosts.values()} == {"reachable"}


def _jump_inventory(lab: LabInfo, tmp: Path, via_jump: bool = True) -> tuple[Path, Path]:
    """Hosts at 127.0.0.1:2222: a listener of the jump host's own loopback, reachable only
    through it."""
    jump = next(s for s in lab.hosts if s.name == "jump")
    key_line = next(
        line
        for line in lab.known_hosts.read_text().splitlines()
        if line.startswith(jump.address + " ")
    )
    known = tmp / "known_hosts"
    known.write_text(
        lab.known_hosts.read_text()
        + f"[127.0.0.1]:{INTERNAL_SSH_PORT} "
        + key_line.split(" ", 1)[1]
        + "\n"
    )
    inventory = tmp / "jump.ini"
    hop = f" ansible_ssh_common_args='-o ProxyJump=root@{jump.address}'" if via_jump else ""
    inventory.write_text(
        "[behind]\n"
        + "".join(
            f"inside{i} ansible_host=127.0.0.1 ansible_port={INTERNAL_SSH_PORT} ansible_user=root "
            f"ansible_ssh_private_key_file={lab.key}{hop}\n"
            for i in range(1, 4)
        )
    )
    return inventory, known


def test_proxyjump_from_inventory_reaches_hosts_only_the_jump_host_can_see(
    lab: LabInfo, tmp_path: Path
) -> None:
    inventory, known = _jump_inventory(lab, tmp_path)
    proc = audit(
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
        "--url",
        PROBE_URL,
        "-o",
        str(tmp_path / "out"),
        "--ssh-key",
        str(lab.key),
        "--timeout",
        "30",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [h["facts"]["hostname"] for h in report["hosts"]] == ["jump"] * 3


def test_without_the_jump_host_those_hosts_are_unreachable(lab: LabInfo, tmp_path: Path) -> None:
    inventory, known = _jump_inventory(lab, tmp_path, via_jump=False)
    proc = audit(
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
        "--url",
        PROBE_URL,
        "-o",
        str(tmp_path / "out"),
        "--connect-timeout",
        "2",
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert proc.returncode == 3
    assert {h["host_outcome"] for h in report["hosts"]} == {"unreachable"}


def test_jump_host_flag_multiplexes_one_connection(lab: LabInfo, tmp_path: Path) -> None:
    import asyncio

    from auditor.models import Connection, Host, Platform, Target
    from auditor.probes import ProbeSettings
    from auditor.probes.posix import build_posix_job
    from auditor.transports.base import SettingsSource
    from auditor.transports.options import SSHSettings
    from auditor.transports.ssh import SSHTransport

    _, known = _jump_inventory(lab, tmp_path)
    jump = next(s for s in lab.hosts if s.name == "jump")
    transport = SSHTransport(
        SSHSettings(
            user="root", keys=(lab.key,), known_hosts=known, jump_host=f"root@{jump.address}"
        )
    )
    job = build_posix_job([Target(url=PROBE_URL, name="cdn")], ProbeSettings())
    hosts = [
        Host(
            name=f"h{i}",
            address="127.0.0.1",
            port=INTERNAL_SSH_PORT,
            connection=Connection.SSH,
            platform=Platform.LINUX,
        )
        for i in range(4)
    ]

    transport.prepare(hosts, SettingsSource())

    async def main() -> list[Any]:
        try:
            return list(await asyncio.gather(*(transport.run_job(h, job, 30) for h in hosts)))
        finally:
            assert len(transport._jumps) == 1  # one shared connection served all four
            await transport.close()

    outputs = asyncio.run(main())
    assert all(b"\tH\tjump\t" in raw.stdout for raw in outputs)


def test_strict_host_keys_refuse_unknown_hosts(lab: LabInfo, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    proc = audit(
        "-i",
        str(lab.inventory),
        "--known-hosts",
        str(empty),
        "--url",
        PROBE_URL,
        "-o",
        str(tmp_path / "o"),
        "--limit",
        "direct:rekeyed",
    )
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert proc.returncode == 3
    assert {h["host"]["name"]: h["host_outcome"] for h in report["hosts"]} == {
        "direct": "host_key_unknown",
        "rekeyed": "host_key_unknown",
    }


def test_accept_new_records_keys_but_still_refuses_a_changed_one(
    lab: LabInfo, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    rekeyed = next(s for s in lab.hosts if s.name == "rekeyed")
    # Keep only the (wrong) line for `rekeyed`: `direct` is new, `rekeyed` has changed.
    known.write_text(
        "".join(
            line + "\n"
            for line in lab.known_hosts.read_text().splitlines()
            if line.startswith(rekeyed.address + " ")
        )
    )
    args = (
        "-i",
        str(lab.inventory),
        "--url",
        PROBE_URL,
        "--limit",
        "direct:rekeyed",
        "--known-hosts",
        str(known),
    )
    proc = audit(*args, "--accept-new-host-keys", "-o", str(tmp_path / "a"))
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    got = {
        h["host"]["name"]: h["host_outcome"] or h["observations"][0]["outcome"]
        for h in report["hosts"]
    }
    assert got == {"direct": "reachable", "rekeyed": "host_key_changed"}, proc.stderr
    direct = next(s for s in lab.hosts if s.name == "direct")
    assert any(line.startswith(direct.address + " ") for line in known.read_text().splitlines())
    # The recorded key is now trusted in strict mode.
    proc = audit(*args, "--limit", "direct", "-o", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr


def test_no_host_key_check_is_loud_in_terminal_and_reports(lab: LabInfo, tmp_path: Path) -> None:
    out = tmp_path / "o"
    proc = audit(
        "-i",
        str(lab.inventory),
        "--url",
        PROBE_URL,
        "--limit",
        "rekeyed",
        "--no-host-key-check",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "HOST KEY CHECKING WAS DISABLED" in proc.stderr
    assert "HOST KEY CHECKING WAS DISABLED" in (out / "report.html").read_text()
    assert any(
        "HOST KEY CHECKING WAS DISABLED" in w
        for w in json.loads((out / "report.json").read_text())["run"]["warnings"]
    )


def _processes_in_namespace(namespace: str) -> list[tuple[int, str]]:
    target = os.stat(f"/run/netns/{namespace}").st_ino
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                found.append((int(entry), Path(f"/proc/{entry}/comm").read_text().strip()))
        except OSError:
            continue
    return found


def _wait_for_curl(namespace: str, seconds: float = 20) -> None:
    """Until the probe's curl runs on the host (the audit is mid-probe)."""
    deadline = time.monotonic() + seconds
    while not any(comm == "curl" for _, comm in _processes_in_namespace(namespace)):
        assert time.monotonic() < deadline, "the probe never started"
        time.sleep(0.1)


def test_ctrl_c_ends_the_remote_probe_too(lab: LabInfo, tmp_path: Path) -> None:
    spec = next(s for s in lab.hosts if s.name == "blackhole")
    # Earlier audits' curls on this host end at their own --max-time; start from none.
    deadline = time.monotonic() + 30
    while any(comm == "curl" for _, comm in _processes_in_namespace(spec.namespace)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc = subprocess.Popen(
        audit_argv(
            lab.inventory,
            lab.known_hosts,
            PROBE_URL,
            tmp_path / "o",
            *("--limit", "blackhole", "--timeout", "90"),
            *("--probe-timeout", "60", "--probe-connect-timeout", "60"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_curl(spec.namespace)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 5
    while any(comm == "curl" for _, comm in _processes_in_namespace(spec.namespace)):
        assert time.monotonic() < deadline, "curl kept running on the host after Ctrl-C"
        time.sleep(0.2)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["hosts"][0]["host_outcome"] == "not_audited"


def _verdicts(report_dir: Path) -> list[tuple[str, ...]]:
    """The report's verdicts without what legitimately differs between runs (times, runner)."""
    import csv

    rows = csv.DictReader((report_dir / "report.csv").open(newline=""))
    keys = (
        "host",
        "address",
        "groups",
        "url",
        "audited",
        "host_outcome",
        "outcome",
        "http_status",
        "tls_issuer",
        "proxy",
    )
    return sorted(tuple(r[k] for k in keys) for r in rows)


def test_a_sharded_three_runner_audit_merges_into_the_report_of_one_run(
    lab: LabInfo, tmp_path: Path
) -> None:
    common = (
        "-i",
        str(lab.inventory),
        "--known-hosts",
        str(lab.known_hosts),
        "--url",
        PROBE_URL,
        "--limit",
        "linux",
        "--probe-timeout",
        "3",
        "--timeout",
        "30",
        "-q",
    )
    whole = audit(*common, "-o", str(tmp_path / "whole"))
    assert whole.returncode == 1, whole.stderr
    shards = []
    for k in (1, 2, 3):
        proc = audit(
            *common, "--shard", f"{k}/3", "--runner", f"runner-{k}", "-o", str(tmp_path / f"s{k}")
        )
        assert proc.returncode in (0, 1, 3), proc.stderr
        shards.append(str(tmp_path / f"s{k}" / "results.jsonl"))
    merged = subprocess.run(
        [str(BIN / "auditor"), "merge", *shards, "-o", str(tmp_path / "merged")],
        capture_output=True,
        text=True,
    )
    assert merged.returncode == whole.returncode, merged.stderr
    assert _verdicts(tmp_path / "merged") == _verdicts(tmp_path / "whole")
    runners = json.loads((tmp_path / "merged" / "report.json").read_text())["run"]["runners"]
    assert runners == ["runner-1", "runner-2", "runner-3"]


def test_a_target_host_whose_own_name_does_not_resolve_is_unreachable(
    lab: LabInfo, tmp_path: Path
) -> None:
    # Run the auditor itself inside the `nodns` namespace, whose resolver is its own empty
    # loopback: the lookup fails there and no query can leave the machine.
    nodns = next(s for s in lab.hosts if s.name == "nodns")
    inventory = tmp_path / "ghost.ini"
    inventory.write_text(
        f"ghost.lab.invalid ansible_user=root ansible_ssh_private_key_file={lab.key}\n"
    )
    out = tmp_path / "o"
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            nodns.namespace,
            str(BIN / "audit"),
            "-i",
            str(inventory),
            "--known-hosts",
            str(lab.known_hosts),
            "--url",
            PROBE_URL,
            "-o",
            str(out),
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    (host,) = json.loads((out / "report.json").read_text())["hosts"]
    assert host["host_outcome"] == "unreachable"
    assert "cannot resolve ghost.lab.invalid" in host["detail"]


def _accepted_from(log: Path, source: str) -> int:
    return log.read_text().count(f"Accepted publickey for root from {source} ")


def test_proxyjump_from_the_ssh_config_shares_one_connection_to_the_bastion(
    lab: LabInfo, tmp_path: Path
) -> None:
    _, known = _jump_inventory(lab, tmp_path)
    jump = lab.host("jump")
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host inside-*\n"
        "    HostName 127.0.0.1\n"
        f"    Port {INTERNAL_SSH_PORT}\n"
        f"    ProxyJump bastion\n"
        "Host bastion\n"
        f"    HostName {jump.address}\n"
        "Host *\n"
        "    User root\n"
        f"    IdentityFile {lab.key}\n"
    )
    inventory = tmp_path / "aliases.ini"
    inventory.write_text("[behind]\ninside-1\ninside-2\ninside-3\n[plain]\nbastion\n")
    log = lab.directory / "hosts" / "jump" / "sshd.log"
    bridge, loopback = _accepted_from(log, CDN_ADDRESS), _accepted_from(log, "127.0.0.1")
    proc = audit(
        "-i",
        str(inventory),
        "--known-hosts",
        str(known),
        "--ssh-config",
        str(config),
        "--url",
        PROBE_URL,
        "-o",
        str(tmp_path / "out"),
        "--timeout",
        "30",
        env=environ(HOME=str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    hosts = report_hosts(tmp_path / "out")
    assert {n: h["facts"]["hostname"] for n, h in hosts.items()} == {
        "inside-1": "jump",
        "inside-2": "jump",
        "inside-3": "jump",
        "bastion": "jump",
    }
    # From the auditor's side of the bridge: the bastion audited as a host, plus one
    # connection that carried all three hosts behind it.
    assert _accepted_from(log, CDN_ADDRESS) - bridge == 2
    assert _accepted_from(log, "127.0.0.1") - loopback == 3


def test_a_password_only_host_needs_the_right_password(lab: LabInfo, tmp_path: Path) -> None:
    assert lab.ssh_password is not None
    common = ("-i", str(lab.inventory), "--known-hosts", str(lab.known_hosts), "--limit", "pwauth")
    common += ("--url", PROBE_URL, "--timeout", "20")
    env_clean = environ(AUDITOR_SSH_PASSWORD=None)
    none = audit(*common, "-o", str(tmp_path / "none"), env=env_clean)
    assert none.returncode == 3, none.stderr
    assert report_hosts(tmp_path / "none")["pwauth"]["host_outcome"] == "auth_failed"
    wrong_password = "Wrong-5d1e-" + "x" * 8
    wrong = audit(
        *common, "-o", str(tmp_path / "wrong"), env=environ(AUDITOR_SSH_PASSWORD=wrong_password)
    )
    assert wrong.returncode == 3, wrong.stderr
    assert report_hosts(tmp_path / "wrong")["pwauth"]["host_outcome"] == "auth_failed"
    for path in (tmp_path / "wrong").iterdir():
        assert wrong_password not in path.read_text(errors="replace"), path
    secret_file = tmp_path / "pw"
    secret_file.write_text(lab.ssh_password.read_text())
    secret_file.chmod(0o600)
    right = audit(
        *common, "-o", str(tmp_path / "file"), "--password-file", str(secret_file), env=env_clean
    )
    assert right.returncode == 0, right.stderr
    host = report_hosts(tmp_path / "file")["pwauth"]
    assert host["facts"]["hostname"] == "pwauth"
    assert host["observations"][0]["outcome"] == "reachable"


def test_ask_pass_reads_the_password_at_a_terminal_prompt(lab: LabInfo, tmp_path: Path) -> None:
    import pty

    assert lab.ssh_password is not None
    password = lab.ssh_password.read_text().strip()
    out = tmp_path / "out"
    argv = [
        str(BIN / "audit"),
        "-i",
        str(lab.inventory),
        "--known-hosts",
        str(lab.known_hosts),
        "--limit",
        "pwauth",
        "--url",
        PROBE_URL,
        "-o",
        str(out),
        "--ask-pass",
        "-q",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the audit, on a terminal of its own
        os.execve(argv[0], argv, env)
    screen = b""
    try:
        deadline = time.monotonic() + 20
        while b"SSH password:" not in screen:
            assert time.monotonic() < deadline, screen
            screen += os.read(fd, 1024)
        os.write(fd, password.encode() + b"\n")
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, screen
    assert password.encode() not in screen  # not echoed
    assert report_hosts(out)["pwauth"]["observations"][0]["outcome"] == "reachable"


def test_keys_held_by_an_ssh_agent_log_in(lab: LabInfo, tmp_path: Path) -> None:
    direct = lab.host("direct")
    inventory = tmp_path / "agent.ini"
    inventory.write_text(f"direct ansible_host={direct.address} ansible_user=root\n")
    sock = tmp_path / "agent.sock"
    home = tmp_path / "home"  # no ~/.ssh: only the agent can offer a key
    home.mkdir()
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline and agent.poll() is None
            time.sleep(0.05)
        added = subprocess.run(
            ["ssh-add", str(lab.key)],
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            capture_output=True,
            text=True,
        )
        assert added.returncode == 0, added.stderr
        common = ("-i", str(inventory), "--known-hosts", str(lab.known_hosts), "--url", PROBE_URL)
        with_agent = audit(
            *common,
            "-o",
            str(tmp_path / "agent"),
            env=environ(HOME=str(home), SSH_AUTH_SOCK=str(sock)),
        )
        without = audit(
            *common, "-o", str(tmp_path / "none"), env=environ(HOME=str(home), SSH_AUTH_SOCK=None)
        )
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert with_agent.returncode == 0, with_agent.stderr
    assert report_hosts(tmp_path / "agent")["direct"]["facts"]["hostname"] == "direct"
    assert without.returncode == 3, without.stderr
    assert report_hosts(tmp_path / "none")["direct"]["host_outcome"] == "auth_failed"


def test_sshd_killed_mid_run_is_an_error_for_that_host_and_the_rest_finish(
    lab: LabInfo, tmp_path: Path
) -> None:
    from auditor_lab.fleet import restart_service
    from auditor_lab.netns import namespace_members

    spec = lab.host("blackhole")
    proc = subprocess.Popen(
        audit_argv(
            lab.inventory,
            lab.known_hosts,
            PROBE_URL,
            tmp_path / "o",
            *("--limit", "blackhole:direct:reject", "--timeout", "40"),
            *("--probe-timeout", "15", "--probe-connect-timeout", "15"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_curl(spec.namespace)
        # The whole of the host's sshd, listener and sessions alike, as a crash would end it.
        for member in namespace_members([spec.namespace]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # Put the host back as it was for the rest of the session.
        restart_service(lab.directory, spec)
        _wait_for_port(spec.address, 22)
    assert proc.returncode == 1, err  # reject's URL is blocked, whatever else happened
    hosts = report_hosts(tmp_path / "o")
    assert hosts["blackhole"]["audited"] is False
    assert hosts["blackhole"]["host_outcome"] == "error"
    assert "connection lost" in hosts["blackhole"]["detail"]
    assert hosts["direct"]["observations"][0]["outcome"] == "reachable"
    assert hosts["reject"]["observations"][0]["outcome"] == "refused"


def _wait_for_port(address: str, port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((address, port)) == 0:
                return
        assert time.monotonic() < deadline, f"{address}:{port} did not come back"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "identity",
    ["IdentityFile none", "IdentityFile {missing}"],
    ids=["IdentityFile-none", "IdentityFile-missing"],
)
def test_identityfile_lines_replace_the_default_keys_as_with_ssh(
    lab: LabInfo, tmp_path: Path, identity: str
) -> None:
    """`IdentityFile none` (or only key files that do not exist) means no key files for
    ssh, not its default ~/.ssh/id_*; the control run shows the default key would work."""
    host = lab.host("direct")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    default_key = home / ".ssh" / "id_ed25519"
    default_key.write_bytes(lab.key.read_bytes())
    default_key.chmod(0o600)
    inventory = tmp_path / "one.ini"
    inventory.write_text(f"[t]\ndirect ansible_host={host.address} ansible_user=root\n")
    env = environ(HOME=str(home), SSH_AUTH_SOCK=None)
    common = ("-i", str(inventory), "--known-hosts", str(lab.known_hosts), "--url", PROBE_URL)
    common += ("--timeout", "30")
    plain = tmp_path / "plain_config"
    plain.write_text("Host *\n    User root\n")
    control = audit(*common, "--ssh-config", str(plain), "-o", str(tmp_path / "c"), env=env)
    assert control.returncode == 0, control.stderr

    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n    {identity.format(missing=tmp_path / 'no_such_key')}\n")
    proc = audit(*common, "--ssh-config", str(config), "-o", str(tmp_path / "o"), env=env)
    assert proc.returncode == 3, proc.stderr
    assert report_hosts(tmp_path / "o")["direct"]["host_outcome"] == "auth_failed"


def test_identityfile_none_still_asks_the_agent_as_ssh_does(lab: LabInfo, tmp_path: Path) -> None:
    host = lab.host("direct")
    home = tmp_path / "home"
    home.mkdir()
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(socket_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not socket_path.exists():
            assert agent.poll() is None, "ssh-agent exited"
            assert time.monotonic() < deadline, "ssh-agent never made its socket"
            time.sleep(0.05)
        key = tmp_path / "key"
        key.write_bytes(lab.key.read_bytes())
        key.chmod(0o600)
        added = subprocess.run(
            ["ssh-add", str(key)],
            env=environ(SSH_AUTH_SOCK=str(socket_path)),
            capture_output=True,
            text=True,
        )
        assert added.returncode == 0, added.stderr
        inventory = tmp_path / "one.ini"
        inventory.write_text(f"[t]\ndirect ansible_host={host.address} ansible_user=root\n")
        config = tmp_path / "ssh_config"
        config.write_text("Host *\n    IdentityFile none\n")
        proc = audit(
            "-i",
            str(inventory),
            "--known-hosts",
            str(lab.known_hosts),
            "--ssh-config",
            str(config),
            "--url",
            PROBE_URL,
            "--timeout",
            "30",
            "-o",
            str(tmp_path / "o"),
            env=environ(HOME=str(home), SSH_AUTH_SOCK=str(socket_path)),
        )
        assert proc.returncode == 0, proc.stderr
    finally:
        agent.terminate()
        agent.wait(timeout=30)
