"""Site runs through a real password-protected redis-server on loopback, with real `auditor
worker` processes auditing `ansible_connection=local` hosts: the broker, the ledger and the
command line without the lab (the lab tests add sites whose SSH only their runners reach)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import BIN, audit, environ
from tests.support.redis_server import RedisServer, free_port, redis_server

WAIT = 120.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inv.ini"
    path.write_text(
        "[alpha]\na1 ansible_connection=local\na2 ansible_connection=local\n"
        "[beta]\nb1 ansible_connection=local\n"
        "[gamma]\ng1 ansible_connection=local\nsw1 ansible_connection=network_cli\n"
        "[alpha:vars]\nauditor_site=alpha\n[beta:vars]\nauditor_site=beta\n"
        # A host without auditor_site lives in site `default`.
    )
    return path


class Worker:
    def __init__(
        self, broker: RedisServer, tmp_path: Path, site: str, name: str, *extra: str
    ) -> None:
        self.log = tmp_path / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "auditor"),
                    "worker",
                    "--broker",
                    broker.url,
                    "--site",
                    site,
                    "--name",
                    name,
                    *extra,
                ],
                stdout=out,
                stderr=out,
                start_new_session=True,
                env=environ(AUDITOR_BROKER_PASSWORD=broker.password),
            )
        deadline = time.monotonic() + WAIT
        while f"runner {name} of site {site} ready" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"runner {name} did not start: {self.text()[-2000:]}")
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def _hosts(out: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    hosts = [x for x in lines if x["type"] == "host"]
    names = [h["host"]["name"] for h in hosts]
    assert len(names) == len(set(names)), names
    return {h["host"]["name"]: h for h in hosts}


def test_hosts_go_to_their_sites_runners_and_an_unserved_site_is_named(
    broker: RedisServer, workers: list[Worker], tmp_path: Path
) -> None:
    workers.append(Worker(broker, tmp_path, "alpha", "alpha-1"))
    workers.append(Worker(broker, tmp_path, "default", "default-1"))
    out = tmp_path / "out"
    closed = f"http://127.0.0.1:{free_port()}/"
    proc = audit(
        "-i",
        str(_inventory(tmp_path)),
        "--broker",
        broker.url,
        "--queue-timeout",
        "3",
        "--url",
        closed,
        "-o",
        str(out),
        "--progress-by-site",
        env=environ(AUDITOR_BROKER_PASSWORD=broker.password),
        timeout=WAIT,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # Into a pipe, each site's progress is a plain line, and its last state always shows.
    lines = proc.stderr.splitlines()
    for final in (
        "site alpha: 2/2 hosts  ok 0  blocked 2  not audited 0  runners alpha-1",
        "site beta: 1/1 hosts  ok 0  blocked 0  not audited 1  runners none yet",
        "site default: 2/2 hosts  ok 0  blocked 1  not audited 0  skipped 1  runners default-1",
    ):
        assert final in lines, proc.stderr
    hosts = _hosts(out)
    assert sorted(hosts) == ["a1", "a2", "b1", "g1", "sw1"]
    # A host the auditor does not audit is never queued: skipped where it is decided.
    assert hosts["sw1"]["host_outcome"] == "skipped"
    for name in ("a1", "a2"):
        assert hosts[name]["runner"] == "alpha-1"
        assert hosts[name]["observations"][0]["outcome"] == "refused"
    assert hosts["g1"]["runner"] == "default-1"
    assert hosts["b1"]["host_outcome"] == "not_audited"
    assert hosts["b1"]["detail"] == "no runner of site beta took this host within 3 s"
    for path in out.iterdir():
        assert broker.password.encode() not in path.read_bytes()
    assert broker.password not in proc.stderr + workers[0].text()
    # Recorded in the run history like a local run, with the hosts the runners audited.
    run_id = json.loads((out / "results.jsonl").read_text().split("\n", 1)[0])["run"]["run_id"]
    assert f"run {run_id} recorded in" in proc.stderr
    runs = subprocess.run(
        [str(BIN / "auditor"), "runs", "--json", "-i", str(tmp_path / "inv.ini")],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert runs.returncode == 0, runs.stderr
    assert run_id in runs.stdout
    assert broker.password not in runs.stdout


def test_restarting_a_sites_runner_after_the_run_changes_nothing(
    broker: RedisServer, workers: list[Worker], tmp_path: Path
) -> None:
    # The unserved site's task stays queued; a runner that comes for it after the run
    # finds the run closed and leaves the results as they are.
    out = tmp_path / "out"
    proc = audit(
        "-i",
        str(_inventory(tmp_path)),
        "--limit",
        "b1",
        "--broker",
        broker.url,
        "--queue-timeout",
        "2",
        "--url",
        f"http://127.0.0.1:{free_port()}/",
        "-o",
        str(out),
        env=environ(AUDITOR_BROKER_PASSWORD=broker.password),
        timeout=WAIT,
    )
    assert proc.returncode == 3, proc.stderr
    before = (out / "results.jsonl").read_bytes()
    late = Worker(broker, tmp_path, "beta", "beta-late")
    workers.append(late)
    deadline = time.monotonic() + WAIT
    while "host b1: not taken (closed)" not in late.text():
        assert time.monotonic() < deadline, late.text()
        time.sleep(0.05)
    assert (out / "results.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--broker", "redis://:pw@127.0.0.1:1/0"], {}, "no credentials in the broker URL"),
        (["--broker", "http://127.0.0.1:1/0"], {}, "must start with redis:// or rediss://"),
        (["--broker", "redis://127.0.0.1:1/zero"], {}, "database 'zero' is not a number"),
        (["--queue-timeout", "5"], {}, "--queue-timeout needs --broker"),
        (["--broker-timeout", "5"], {}, "--broker-timeout needs --broker"),
        (["--progress-by-site"], {}, "--progress-by-site needs --broker"),
    ],
)
def test_bad_broker_settings_are_one_line_errors(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    proc = audit(
        "-i", str(_inventory(tmp_path)), "--url", "http://127.0.0.1:1/", *args, env=environ(**env)
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_wrong_broker_password_stops_coordinator_and_runner_before_any_work(
    broker: RedisServer, tmp_path: Path
) -> None:
    wrong = environ(AUDITOR_BROKER_PASSWORD="not-the-password")
    proc = audit(
        "-i",
        str(_inventory(tmp_path)),
        "--broker",
        broker.url,
        "--url",
        "http://127.0.0.1:1/",
        "-o",
        str(tmp_path / "out"),
        env=wrong,
    )
    assert proc.returncode == 2, proc.stderr
    assert "login refused" in proc.stderr
    assert not (tmp_path / "out").exists()
    runner = subprocess.run(
        [str(BIN / "auditor"), "worker", "--broker", broker.url, "--site", "alpha"],
        capture_output=True,
        text=True,
        env=wrong,
        timeout=WAIT,
    )
    assert runner.returncode == 2
    assert "login refused" in runner.stderr


def test_a_runner_checks_its_credentials_before_it_reaches_the_broker(tmp_path: Path) -> None:
    # No broker listens here: the credential error must come first.
    for args, message in [
        (["--known-hosts", str(tmp_path / "missing")], "missing"),
        (["--ssh-key", str(tmp_path / "nokey")], "nokey"),
    ]:
        runner = subprocess.run(
            [
                str(BIN / "auditor"),
                "worker",
                "--broker",
                f"redis://127.0.0.1:{free_port()}/0",
                "--site",
                "alpha",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            env=environ(),
        )
        assert runner.returncode == 2, runner.stderr
        assert message in runner.stderr
        assert "broker" not in runner.stderr
        assert len(runner.stderr.strip().splitlines()) == 1, runner.stderr
    password_file = tmp_path / "pw"
    password_file.write_text("secret\n")
    password_file.chmod(0o644)
    runner = subprocess.run(
        [
            str(BIN / "auditor"),
            "worker",
            "--broker",
            "redis://127.0.0.1:1/0",
            "--site",
            "a",
            "--broker-password-file",
            str(password_file),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=environ(AUDITOR_BROKER_PASSWORD=None),
    )
    assert runner.returncode == 2
    assert "must not be readable by group or others" in runner.stderr


# --- crashes -------------------------------------------------------------------------------


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback port that accepts connections and never answers: a probe of it lasts its
    whole --probe-timeout, so a host is certainly mid-run while a test acts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


def _slow_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "slow.ini"
    path.write_text(
        "[slow]\n"
        + "".join(f"s{i} ansible_connection=local\n" for i in range(1, 5))
        + "[slow:vars]\nauditor_site=slow\n"
        "[idle]\ni1 ansible_connection=local auditor_site=idle\n"
    )
    return path


def _coordinator(
    broker: RedisServer,
    tmp_path: Path,
    url: str,
    queue_timeout: float,
) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            str(BIN / "audit"),
            "-i",
            str(_slow_inventory(tmp_path)),
            "--broker",
            broker.url,
            "--queue-timeout",
            str(queue_timeout),
            "--url",
            url,
            "-o",
            str(out),
            "--probe-timeout",
            "4",
            "--timeout",
            "30",
        ],
        env=environ(AUDITOR_BROKER_PASSWORD=broker.password),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out


def _wait(what: str, check: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _client(broker: RedisServer) -> Any:
    import redis

    return redis.Redis(port=broker.port, password=broker.password, decode_responses=True)


def _run_id(out: Path) -> str:
    def first() -> str | None:
        path = out / "results.jsonl"
        line = path.read_text().split("\n", 1)[0] if path.exists() else ""
        return json.loads(line)["run"]["run_id"] if line.endswith("}") else None

    found: str = _wait("the run record", first)
    return found


def _held(broker: RedisServer, run: str) -> dict[str, str]:
    held = _client(broker).hgetall(f"auditor:run:{run}:held")
    return {host: json.loads(value)[0].split("#", 1)[0] for host, value in held.items()}


def test_a_runner_killed_mid_host_has_its_host_rerun_by_the_other_runner_once(
    broker: RedisServer, workers: list[Worker], tmp_path: Path, silent_url: str
) -> None:
    first = Worker(broker, tmp_path, "slow", "slow-1", "--concurrency", "1")
    second = Worker(broker, tmp_path, "slow", "slow-2", "--concurrency", "1")
    workers += [first, second]
    coordinator, out = _coordinator(broker, tmp_path, silent_url, queue_timeout=5)
    run = _run_id(out)
    held = _wait(
        "slow-1 to hold a host", lambda: [h for h, r in _held(broker, run).items() if r == "slow-1"]
    )
    os.killpg(first.proc.pid, signal.SIGKILL)  # the runner's whole process group
    first.proc.wait(timeout=30)
    _, stderr = coordinator.communicate(timeout=WAIT)
    assert coordinator.returncode == 1, stderr
    hosts = _hosts(out)
    assert sorted(hosts) == ["i1", "s1", "s2", "s3", "s4"]
    victim = held[0]
    assert hosts[victim]["runner"] == "slow-2"
    assert hosts[victim]["observations"][0]["outcome"] == "timeout"
    assert _client(broker).hget(f"auditor:run:{run}:attempts", victim) == "2"
    for name in ("s1", "s2", "s3", "s4"):
        assert hosts[name]["audited"], hosts[name]
    assert hosts["i1"]["detail"] == "no runner of site idle took this host within 5 s"


def test_a_late_result_a_redelivered_task_and_a_bad_task_are_all_dropped(
    broker: RedisServer, workers: list[Worker], tmp_path: Path, silent_url: str
) -> None:
    first = Worker(broker, tmp_path, "slow", "slow-1", "--concurrency", "1")
    second = Worker(broker, tmp_path, "slow", "slow-2", "--concurrency", "1")
    workers += [first, second]
    # The idle site's queue timeout keeps the run open while late answers come in.
    coordinator, out = _coordinator(broker, tmp_path, silent_url, queue_timeout=600)
    run = _run_id(out)
    client = _client(broker)
    victim = _wait(
        "slow-1 to hold a host", lambda: [h for h, r in _held(broker, run).items() if r == "slow-1"]
    )[0]
    # Frozen mid-host: its heartbeat lapses and the host goes to the other runner...
    os.killpg(first.proc.pid, signal.SIGSTOP)
    recorded = _wait(
        "slow-2's result for the host", lambda: client.hget(f"auditor:run:{run}:results", victim)
    )
    assert json.loads(recorded)["runner"] == "slow-2"
    # ...and when the frozen runner wakes, its own result comes too late: dropped.
    os.killpg(first.proc.pid, signal.SIGCONT)
    _wait(
        "the late result to be dropped",
        lambda: f"host {victim}: audited (duplicate)" in first.text(),
    )

    # A task delivered again after its result was recorded (its runner died before the
    # acknowledgement) is not run again; a task that does not validate is refused.
    from auditor.broker import BrokerSettings, celery_app
    from auditor.inventory import load_inventory
    from auditor.models import Target
    from auditor.secret import Secret
    from auditor.settings import Settings
    from auditor.sites import HostTask

    host = {h.name: h for h in load_inventory(str(_slow_inventory(tmp_path))).hosts}[victim]
    app = celery_app(BrokerSettings(broker.url, Secret(broker.password)))
    task = HostTask.for_host(run, host, (Target(silent_url, silent_url),), Settings(), 2)
    app.send_task("auditor.audit_host", args=[task.to_json()], queue="site.slow")
    bad = json.loads(task.to_json())
    bad["vars"]["ansible_password"] = "slipped-in"
    app.send_task("auditor.audit_host", args=[json.dumps(bad)], queue="site.slow")
    both = lambda: first.text() + second.text()  # noqa: E731
    _wait(
        "the redelivered task to be dropped", lambda: f"host {victim}: not taken (done)" in both()
    )
    _wait(
        "the bad task to be refused",
        lambda: "variable 'ansible_password' is not connection data" in both(),
    )
    assert "slipped-in" not in both()

    coordinator.send_signal(signal.SIGINT)
    _, stderr = coordinator.communicate(timeout=WAIT)
    assert coordinator.returncode == 130, stderr
    hosts = _hosts(out)
    assert sorted(hosts) == ["i1", "s1", "s2", "s3", "s4"]
    assert hosts[victim]["runner"] == "slow-2"
    assert hosts["i1"]["detail"] == "the run was interrupted before this host finished"


def test_a_broker_stopped_mid_run_is_waited_for_and_the_run_completes(
    broker: RedisServer, workers: list[Worker], tmp_path: Path, silent_url: str
) -> None:
    runner = Worker(broker, tmp_path, "slow", "slow-1", "--concurrency", "2")
    idle = Worker(broker, tmp_path, "idle", "idle-1")
    workers += [runner, idle]
    coordinator, out = _coordinator(broker, tmp_path, silent_url, queue_timeout=60)
    run = _run_id(out)
    _wait("a host in progress", lambda: _held(broker, run))
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        # Stopped until a runner has noticed (its heartbeat call timed out).
        _wait(
            "a runner to notice the broker is gone",
            lambda: "broker unreachable" in runner.text() + idle.text(),
        )
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    _, stderr = coordinator.communicate(timeout=WAIT * 2)
    assert "Traceback" not in stderr, stderr
    assert coordinator.returncode == 1, stderr
    hosts = _hosts(out)
    assert sorted(hosts) == ["i1", "s1", "s2", "s3", "s4"]
    assert all(h["audited"] for h in hosts.values()), hosts


def test_a_rediss_broker_is_used_over_verified_tls_and_refused_unverified(
    tmp_path: Path, workers: list[Worker]
) -> None:
    with redis_server(tmp_path / "tls", tls=True) as tls:
        assert tls.ca is not None
        workers.append(Worker(tls, tmp_path, "alpha", "alpha-tls", "--broker-ca", str(tls.ca)))
        out = tmp_path / "out"
        args = [
            "-i",
            str(_inventory(tmp_path)),
            "--limit",
            "alpha",
            "--broker",
            tls.url,
            "--url",
            f"http://127.0.0.1:{free_port()}/",
        ]
        env = environ(AUDITOR_BROKER_PASSWORD=tls.password)
        proc = audit(*args, "--broker-ca", str(tls.ca), "-o", str(out), env=env, timeout=WAIT)
        assert proc.returncode == 1, proc.stderr
        assert {h["runner"] for h in _hosts(out).values()} == {"alpha-tls"}
        # Without the CA that signed it, the broker's certificate is not trusted: no run.
        refused = audit(*args, "-o", str(tmp_path / "refused"), env=env, timeout=WAIT)
        assert refused.returncode == 2, refused.stderr
        assert "certificate verify failed" in refused.stderr
        assert not (tmp_path / "refused").exists()
        for worker in workers:
            worker.stop()


def test_a_runner_without_host_key_checking_flags_every_ssh_host_it_audits(
    tmp_path: Path,
) -> None:
    # The coordinator cannot know how a runner trusts hosts: the runner says so per host.
    import threading

    from auditor.broker import BrokerSettings
    from auditor.models import Host, Target
    from auditor.settings import Settings
    from auditor.sites import HostTask
    from auditor.transports.options import HostKeyPolicy, SSHSettings
    from auditor.worker import Runner, worker_config

    host = Host.from_vars("lonely", (), {"ansible_host": "127.0.0.1", "ansible_port": free_port()})
    task = HostTask.for_host(
        "0123456789abcdef", host, (Target("http://127.0.0.1:1/", "x"),), Settings(), 1
    )
    settings = Settings(ssh=SSHSettings(host_key_policy=HostKeyPolicy.NONE, connect_timeout=5))
    runner = Runner(
        worker_config(settings, BrokerSettings("redis://127.0.0.1:1/0"), "default", "trusting-1", 1)
    )
    threading.Thread(target=runner._run_loop, daemon=True).start()
    try:
        result = runner._audit(HostTask.from_json(task.to_json()))
    finally:
        runner._loop.call_soon_threadsafe(runner._loop.stop)
    assert result.runner == "trusting-1"
    assert any("HOST KEY CHECKING WAS DISABLED on runner trusting-1" in w for w in result.warnings)


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_broker_that_stays_away_ends_the_run_with_one_clear_line_and_keeps_what_finished(
    tmp_path: Path, workers: list[Worker], how: str
) -> None:
    # A broker of its own: this one is not coming back.
    with redis_server(tmp_path / "redis") as gone:
        workers.append(Worker(gone, tmp_path, "alpha", "alpha-1"))
        out = tmp_path / "out"
        coordinator = subprocess.Popen(
            [
                str(BIN / "audit"),
                "-i",
                str(_inventory(tmp_path)),
                "--broker",
                gone.url,
                # Sites beta and default have no runner: their hosts are still waiting
                # when the broker goes.
                "--queue-timeout",
                "600",
                "--broker-timeout",
                "3",
                "--url",
                f"http://127.0.0.1:{free_port()}/",
                "-o",
                str(out),
            ],
            env=environ(AUDITOR_BROKER_PASSWORD=gone.password),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def alpha_done() -> bool:
            assert coordinator.poll() is None, coordinator.communicate()
            return (out / "results.jsonl").exists() and {"a1", "a2"} <= set(_hosts(out))

        _wait("alpha's hosts to finish", alpha_done)
        os.kill(gone.pid, signal.SIGSTOP if how == "stopped" else signal.SIGKILL)
        started = time.monotonic()
        try:
            _, stderr = coordinator.communicate(timeout=WAIT)
        finally:
            if coordinator.poll() is None:
                coordinator.kill()
        ended_after = time.monotonic() - started
        for worker in workers:
            os.killpg(worker.proc.pid, signal.SIGKILL)
    assert coordinator.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert re.fullmatch(
        rf"error: broker {re.escape(gone.url)} unreachable for 3 s \(.+\); the run could "
        "not finish, the reports hold what finished",
        errors[0],
    ), errors
    assert gone.password not in stderr
    # Within the tolerance and a few network timeouts, not Redis's own minutes.
    assert ended_after < 60, ended_after
    hosts = _hosts(out)
    assert sorted(hosts) == ["a1", "a2", "b1", "g1", "sw1"]
    for name in ("a1", "a2"):
        assert hosts[name]["runner"] == "alpha-1"
        assert hosts[name]["observations"][0]["outcome"] == "refused"
    # What had not finished is not audited (never counted as blocked), with the reason.
    for name in ("b1", "g1"):
        assert hosts[name]["host_outcome"] == "not_audited"
        assert hosts[name]["detail"] == (
            f"the run ended without this host's result: broker {gone.url} unreachable for 3 s"
        )
    report = json.loads((out / "report.json").read_text())
    by_name = {h["host"]["name"]: h for h in report["hosts"]}
    assert sorted(by_name) == sorted(hosts)
    assert by_name["b1"]["host_outcome"] == "not_audited"
    for path in out.iterdir():
        assert gone.password.encode() not in path.read_bytes()


def test_the_test_pause_point_is_refused_unless_it_names_an_owner_only_fifo(
    tmp_path: Path,
) -> None:
    from auditor.worker import PAUSE_AFTER_RECORD_ENV

    plain = tmp_path / "plain"
    plain.write_text("")
    shared = tmp_path / "shared"
    os.mkfifo(shared, 0o600)
    shared.chmod(0o666)
    for value in (str(plain), str(shared), str(tmp_path / "missing")):
        runner = subprocess.run(
            [
                str(BIN / "auditor"),
                "worker",
                "--broker",
                f"redis://127.0.0.1:{free_port()}/0",
                "--site",
                "alpha",
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            env=environ(**{PAUSE_AFTER_RECORD_ENV: value}),
        )
        assert runner.returncode == 2, runner.stderr
        assert PAUSE_AFTER_RECORD_ENV in runner.stderr
        assert len(runner.stderr.strip().splitlines()) == 1, runner.stderr


def test_a_message_a_live_runner_lost_is_sent_again_and_the_host_audited_once(
    broker: RedisServer, workers: list[Worker], tmp_path: Path
) -> None:
    """A runner that beats but lost the messages it took from the queue (as after a broker
    outage) must not stall the run: --queue-timeout never fires while the site has live
    runners, so the coordinator itself sees the queue empty, the hosts unheld, and queues
    them again at their next attempt."""
    from auditor.broker import beat

    inventory = tmp_path / "lost.ini"
    inventory.write_text(
        "[alpha]\na1 ansible_connection=local\na2 ansible_connection=local\n"
        "[alpha:vars]\nauditor_site=alpha\n"
    )
    out = tmp_path / "out"
    client = _client(broker)
    # A runner of site alpha that beats and takes nothing: the site is never runner-less.
    beat(client, "alpha", "thief#0")
    coordinator = subprocess.Popen(
        [
            str(BIN / "audit"),
            "-i",
            str(inventory),
            "--broker",
            broker.url,
            "--queue-timeout",
            "600",
            "--url",
            "http://127.0.0.1:9/",
            "-o",
            str(out),
        ],
        env=environ(AUDITOR_BROKER_PASSWORD=broker.password),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = _run_id(out)
        _wait("both hosts' messages", lambda: client.llen("site.alpha") == 2)
        # The messages leave the queue and are never run: lost.
        assert client.delete("site.alpha") == 1
        workers.append(Worker(broker, tmp_path, "alpha", "alpha-1"))
        deadline = time.monotonic() + WAIT
        while coordinator.poll() is None and time.monotonic() < deadline:
            beat(client, "alpha", "thief#0")
            time.sleep(0.5)
        _, stderr = coordinator.communicate(timeout=30)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait(timeout=30)
    assert coordinator.returncode == 1, stderr  # the one URL is refused: blocked
    hosts = _hosts(out)
    assert sorted(hosts) == ["a1", "a2"]
    for name in ("a1", "a2"):
        assert hosts[name]["audited"], hosts[name]
        assert hosts[name]["runner"] == "alpha-1"
        assert client.hget(f"auditor:run:{run}:attempts", name) == "2"
