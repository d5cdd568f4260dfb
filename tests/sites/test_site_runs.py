"""Site runs end to end with real processes: a password-protected redis-server in a lab
namespace, `auditor worker` runners started with `ip netns exec` in their site's namespaces,
lab hosts whose SSH answers only their own site's runners, and `audit --broker` as a user
runs it. Crashes are real signals to real process groups."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import LabInfo
from auditor_lab.spec import PROBE_URL, design_hosts

from tests.support.cli import BIN, audit, environ
from tests.support.proc import command_lines

sites_lab = pytest.importorskip("auditor_lab.sites")
redis = pytest.importorskip("redis")

DESIGN = {spec.name: spec for spec in design_hosts()}
SITES = {
    "paris": ("direct", "reject", "blackhole"),
    "berlin": ("viaproxy", "proxydeny"),
    "tokyo": ("nodns",),
}
RUNNERS = {"paris": 2, "berlin": 1}
SITE_OF = {host: site for site, hosts in SITES.items() for host in hosts}
WAIT = 120.0
"""Generous: two shared cores, several runner processes, sshd sessions."""


@pytest.fixture(scope="module")
def site_lab(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    built = sites_lab.sites_up(lab, tmp_path_factory.mktemp("sites"), SITES, RUNNERS)
    try:
        yield built
    finally:
        sites_lab.sites_down(built)


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll `check` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Runners:
    """The runner processes a test started, each its own process group, all stopped after."""

    def __init__(self, site_lab: Any) -> None:
        self.site_lab = site_lab
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # A runner's log file outlives a test (the site lab is the module's): each test
        # reads only what was written since it began, not an earlier test's lines.
        self.since = {
            path.name: path.stat().st_size for path in site_lab.directory.glob("runner-*.log")
        }

    def log(self, name: str) -> str:
        path = self.site_lab.directory / f"runner-{name}.log"
        if not path.exists():
            return ""
        with open(path, "rb") as log:
            log.seek(self.since.get(path.name, 0))
            return log.read().decode(errors="replace")

    def start(
        self,
        site: str,
        index: int,
        name: str,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        log = self.site_lab.directory / f"runner-{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = sites_lab.start_runner(
            self.site_lab, site, index, name, concurrency=concurrency, env=env
        )
        self.procs[name] = proc

        def ready() -> bool:
            text = log.read_text(errors="replace")[offset:] if log.exists() else ""
            if proc.poll() is not None:
                pytest.fail(f"runner {name} exited {proc.returncode}: {text[-2000:]}")
            return f"runner {name} of site {site} ready" in text

        wait_for(f"runner {name} to be ready", ready)

    def signal(self, name: str, signum: int) -> None:
        os.killpg(self.procs[name].pid, signum)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture
def runners(site_lab: Any) -> Iterator[Runners]:
    started = Runners(site_lab)
    try:
        yield started
    finally:
        started.stop()


def client(site_lab: Any) -> Any:
    return redis.Redis(
        host=sites_lab.BROKER_ADDRESS,
        port=6379,
        password=site_lab.password(),
        decode_responses=True,
        socket_timeout=30,
    )


def coordinator_argv(site_lab: Any, out: Path, queue_timeout: float, *extra: str) -> list[str]:
    return [
        str(BIN / "audit"),
        "-i",
        str(site_lab.inventory),
        "--broker",
        site_lab.broker_url,
        "--queue-timeout",
        str(queue_timeout),
        "--url",
        PROBE_URL,
        "-o",
        str(out),
        "--timeout",
        "40",
        "--connect-timeout",
        "5",
        "--probe-timeout",
        "6",
        "--probe-connect-timeout",
        "5",
        *extra,
    ]


def coordinator_env(site_lab: Any, lab: LabInfo) -> dict[str, str]:
    # The SSH password is given to the coordinator on purpose: it must never travel.
    assert lab.ssh_password is not None
    return environ(
        AUDITOR_BROKER_PASSWORD=site_lab.password(),
        AUDITOR_SSH_PASSWORD=lab.ssh_password.read_text().strip(),
    )


def start_coordinator(
    site_lab: Any, lab: LabInfo, out: Path, queue_timeout: float, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        coordinator_argv(site_lab, out, queue_timeout, *extra),
        env=coordinator_env(site_lab, lab),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def results(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    run = lines[0]["run"]
    return run, [line for line in lines if line["type"] == "host"]


def run_id(out: Path) -> str:
    def first() -> str | None:
        path = out / "results.jsonl"
        if not path.exists():
            return None
        line = path.read_text().split("\n", 1)[0]
        return json.loads(line)["run"]["run_id"] if line.endswith("}") else None

    found: str = wait_for("the run record", first)
    return found


def holder_of(site_lab: Any, run: str, host: str) -> str | None:
    held = client(site_lab).hget(f"auditor:run:{run}:held", host)
    if held is None:
        return None
    instance: str = json.loads(held)[0]
    return instance.split("#", 1)[0]


def check_each_host_once(hosts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = [h["host"]["name"] for h in hosts]
    assert sorted(names) == sorted(SITE_OF), names
    return {h["host"]["name"]: h for h in hosts}


def check_designed_outcome(name: str, record: dict[str, Any]) -> None:
    spec = DESIGN[name]
    assert record["audited"], record
    assert record["observations"][0]["outcome"] == str(spec.outcome), record


def test_every_host_is_audited_by_a_runner_of_its_own_site_and_nothing_secret_travels(
    lab: LabInfo, site_lab: Any, runners: Runners, tmp_path: Path
) -> None:
    runners.start("paris", 1, "paris-1")
    runners.start("paris", 2, "paris-2")
    runners.start("berlin", 1, "berlin-1")
    out = tmp_path / "out"
    broker_password = site_lab.password().encode()
    ssh_password = lab.ssh_password.read_text().strip().encode() if lab.ssh_password else b""
    coordinator = start_coordinator(site_lab, lab, out, queue_timeout=10)
    # Every process's command line, sampled for as long as the run lasts.
    samples = 0
    while coordinator.poll() is None:
        for line in command_lines():
            assert broker_password not in line
        samples += 1
        time.sleep(0.05)
    stdout, stderr = coordinator.communicate(timeout=WAIT)
    assert samples > 0
    assert "Traceback" not in stderr, stderr
    assert coordinator.returncode == 1, stderr  # blocked URLs on some hosts

    run, hosts = results(out)
    by_name = check_each_host_once(hosts)
    for name, record in by_name.items():
        site = SITE_OF[name]
        if site == "tokyo":
            assert record["host_outcome"] == "not_audited"
            assert record["detail"] == "no runner of site tokyo took this host within 10 s"
            assert record["runner"] == ""
            continue
        check_designed_outcome(name, record)
        assert record["runner"] in {f"{site}-1", f"{site}-2"}, record
    assert set(run["runners"] if run["runners"] else []) <= {"paris-1", "paris-2", "berlin-1"}
    report = json.loads((out / "report.json").read_text())
    assert {h["host"]["name"]: h["runner"] for h in report["hosts"]} == {
        n: r["runner"] for n, r in by_name.items()
    }

    # Nothing secret in what the run wrote, in the runners' logs, or in the task left queued
    # for the site nobody serves (read straight from the broker).
    written = b"".join(p.read_bytes() for p in out.iterdir()) + stdout.encode() + stderr.encode()
    logs = "".join(runners.log(n) for n in runners.procs).encode()
    for secret in (broker_password, ssh_password):
        assert secret not in written
        assert secret not in logs
    queued = client(site_lab).lrange("site.tokyo", 0, -1)
    assert queued, "the tokyo host's task stays queued for a runner that never came"
    for message in queued:
        envelope = json.loads(message)
        assert envelope["content-type"] == "application/json"
        body = base64.b64decode(envelope["body"])
        assert b"nodns" in body
        for secret in (broker_password, ssh_password):
            assert secret not in body
        from auditor.sites import CONNECTION_VARS

        task = json.loads(json.loads(body)[0][0])
        assert set(task["vars"]) <= CONNECTION_VARS
        assert "password" not in task["settings"]["ssh"]
        assert "password" not in task["settings"]["winrm"]


def test_a_host_of_a_site_answers_only_that_sites_runners(
    lab: LabInfo, site_lab: Any, tmp_path: Path
) -> None:
    # The same host audited from outside its site (here, the coordinator's own place) is
    # refused by the site's firewall: a site run is the only way to audit it.
    proc = audit(
        "-i",
        str(site_lab.inventory),
        "--limit",
        "direct",
        "--known-hosts",
        str(lab.known_hosts),
        "--url",
        PROBE_URL,
        "-o",
        str(tmp_path / "out"),
        "--connect-timeout",
        "5",
        "--timeout",
        "30",
    )
    assert proc.returncode == 3, proc.stderr
    _, hosts = results(tmp_path / "out")
    assert hosts[0]["host_outcome"] == "unreachable"


def test_a_runner_killed_mid_host_has_its_hosts_rerun_by_the_other_runner_once(
    lab: LabInfo, site_lab: Any, runners: Runners, tmp_path: Path
) -> None:
    runners.start("paris", 1, "paris-1", concurrency=1)
    runners.start("paris", 2, "paris-2", concurrency=1)
    runners.start("berlin", 1, "berlin-1")
    out = tmp_path / "out"
    # Only tokyo's host waits on the queue timeout (a site with a live runner never times
    # out), and the run cannot end before blackhole's result: a short one costs nothing.
    coordinator = start_coordinator(site_lab, lab, out, queue_timeout=15)
    run = run_id(out)
    # blackhole's probe waits out its connect timeout: a host certainly mid-run.
    victim = wait_for("a runner to hold blackhole", lambda: holder_of(site_lab, run, "blackhole"))
    survivor = {"paris-1": "paris-2", "paris-2": "paris-1"}[victim]
    runners.signal(victim, signal.SIGKILL)
    runners.procs[victim].wait(timeout=30)
    _, stderr = coordinator.communicate(timeout=WAIT)
    assert "Traceback" not in stderr, stderr

    _, hosts = results(out)
    by_name = check_each_host_once(hosts)
    check_designed_outcome("blackhole", by_name["blackhole"])
    assert by_name["blackhole"]["runner"] == survivor
    for name in ("direct", "reject", "viaproxy", "proxydeny"):
        check_designed_outcome(name, by_name[name])
    assert by_name["nodns"]["host_outcome"] == "not_audited"
    ledger = client(site_lab)
    assert ledger.hget(f"auditor:run:{run}:attempts", "blackhole") == "2"


def test_a_late_result_and_a_redelivered_task_are_dropped(
    lab: LabInfo, site_lab: Any, runners: Runners, tmp_path: Path
) -> None:
    runners.start("paris", 1, "paris-1", concurrency=1)
    runners.start("paris", 2, "paris-2", concurrency=1)
    out = tmp_path / "out"
    # The tokyo host keeps the run open long enough to see what comes back late.
    coordinator = start_coordinator(site_lab, lab, out, queue_timeout=90)
    run = run_id(out)
    ledger = client(site_lab)
    frozen = wait_for("a runner to hold blackhole", lambda: holder_of(site_lab, run, "blackhole"))
    other = {"paris-1": "paris-2", "paris-2": "paris-1"}[frozen]
    # Frozen mid-host: its heartbeat lapses, the host goes to the other runner...
    runners.signal(frozen, signal.SIGSTOP)
    recorded = wait_for(
        "the other runner's blackhole result",
        lambda: ledger.hget(f"auditor:run:{run}:results", "blackhole"),
    )
    assert json.loads(recorded)["runner"] == other
    # ...and when it wakes, its own result for the host comes too late and is dropped.
    runners.signal(frozen, signal.SIGCONT)
    wait_for(
        "the frozen runner's late result to be dropped",
        lambda: "host blackhole: audited (duplicate)" in runners.log(frozen),
    )
    # A task Celery delivers again (its runner died after recording, before acknowledging)
    # is refused by whichever runner gets it: the host is done.
    from auditor.broker import BrokerSettings, celery_app
    from auditor.secret import Secret
    from auditor.settings import Settings
    from auditor.sites import HostTask

    hosts = {
        h.name: h
        for h in __import__("auditor.inventory", fromlist=["x"])
        .load_inventory(str(site_lab.inventory))
        .hosts
    }
    settings = Settings.from_json(json.dumps({}))
    app = celery_app(BrokerSettings(site_lab.broker_url, Secret(site_lab.password())))
    task = HostTask.for_host(run, hosts["blackhole"], (_target(),), settings, 2)
    app.send_task("auditor.audit_host", args=[task.to_json()], queue="site.paris")
    # A task that does not validate (a password slipped in) is refused, not run.
    bad = json.loads(task.to_json())
    bad["vars"]["ansible_password"] = "slipped-in"
    app.send_task("auditor.audit_host", args=[json.dumps(bad)], queue="site.paris")
    wait_for(
        "the redelivered task to be dropped",
        lambda: (
            "host blackhole: not taken (done)" in runners.log("paris-1") + runners.log("paris-2")
        ),
    )
    wait_for(
        "the bad task to be refused",
        lambda: (
            "refused a task: task: variable 'ansible_password' is not connection data"
            in runners.log("paris-1") + runners.log("paris-2")
        ),
    )
    coordinator.send_signal(signal.SIGINT)
    _, stderr = coordinator.communicate(timeout=WAIT)
    assert coordinator.returncode == 130, stderr
    _, results_hosts = results(out)
    by_name = check_each_host_once(results_hosts)
    assert by_name["blackhole"]["runner"] == other
    assert by_name["nodns"]["detail"] == "the run was interrupted before this host finished"


def _target() -> Any:
    from auditor.models import Target

    return Target(PROBE_URL, PROBE_URL)


def test_a_broker_stopped_mid_run_is_waited_for_and_the_run_completes(
    lab: LabInfo, site_lab: Any, runners: Runners, tmp_path: Path
) -> None:
    runners.start("paris", 1, "paris-1", concurrency=1)
    runners.start("berlin", 1, "berlin-1", concurrency=1)
    out = tmp_path / "out"
    # Tokyo's host (no runner) keeps the run open for the queue timeout at least.
    coordinator = start_coordinator(site_lab, lab, out, queue_timeout=30)
    wait_for(
        "a first result",
        lambda: len(results(out)[1]) >= 1 if (out / "results.jsonl").exists() else False,
    )
    sites_lab.pause_broker(site_lab)
    try:
        # Stopped until a runner has noticed (its heartbeat times out): seconds, not a guess.
        wait_for(
            "a runner to notice the broker is gone",
            lambda: "broker unreachable" in runners.log("paris-1") + runners.log("berlin-1"),
        )
        # The outage was mid-run: the run is still waiting for the broker to come back.
        assert coordinator.poll() is None, coordinator.communicate()
    finally:
        sites_lab.resume_broker(site_lab)
    _, stderr = coordinator.communicate(timeout=WAIT * 2)
    assert "Traceback" not in stderr, stderr
    assert coordinator.returncode == 1, stderr
    _, hosts = results(out)
    by_name = check_each_host_once(hosts)
    for name in ("direct", "reject", "blackhole", "viaproxy", "proxydeny"):
        check_designed_outcome(name, by_name[name])


def test_progress_by_site_on_a_terminal_shows_each_sites_hosts_and_runners(
    lab: LabInfo, site_lab: Any, runners: Runners, tmp_path: Path
) -> None:
    import pty

    runners.start("paris", 1, "paris-1")
    runners.start("berlin", 1, "berlin-1")
    out = tmp_path / "out"
    # A real terminal on the coordinator's stderr: the per-site block is drawn in place.
    master, slave = pty.openpty()
    try:
        coordinator = subprocess.Popen(
            coordinator_argv(site_lab, out, 8, "--progress-by-site"),
            env=coordinator_env(site_lab, lab),
            stdout=subprocess.DEVNULL,
            stderr=slave,
            text=True,
        )
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            shown += chunk
        coordinator.wait(timeout=WAIT)
    finally:
        os.close(master)
    text = shown.decode(errors="replace")
    assert "Traceback" not in text, text
    assert coordinator.returncode == 1, text
    # Three sites: the block is redrawn from its first line, each line cleared first.
    assert "\x1b[3F" in text, text
    finals = {
        "paris": "site paris: 3/3 hosts  ok 1  blocked 2  not audited 0  runners paris-1",
        "berlin": "site berlin: 2/2 hosts  ok 1  blocked 1  not audited 0  runners berlin-1",
        "tokyo": "site tokyo: 1/1 hosts  ok 0  blocked 0  not audited 1  runners none yet",
    }
    for line in finals.values():
        assert f"\x1b[2K{line}\r\n" in text, text
    # While a site was still running, its live runners were counted.
    assert "runners none yet (0 alive)" in text, text
    # The fleet's own line stays below the block.
    assert "6/6 hosts" in text, text


def test_a_runner_killed_after_recording_before_the_ack_is_redelivered_and_dropped(
    lab: LabInfo, site_lab: Any, runners: Runners, tmp_path: Path
) -> None:
    from auditor.broker import BrokerSettings, celery_app
    from auditor.secret import Secret
    from auditor.worker import PAUSE_AFTER_RECORD_ENV

    fifo = tmp_path / "recorded"
    os.mkfifo(fifo, 0o600)
    # paris-1 stops for good right after its first result is in the ledger, before the ack.
    runners.start("paris", 1, "paris-1", concurrency=1, env={PAUSE_AFTER_RECORD_ENV: str(fifo)})
    runners.start("paris", 2, "paris-2", concurrency=1)
    runners.start("berlin", 1, "berlin-1")
    out = tmp_path / "out"
    # Tokyo's host keeps the run open while the redelivery happens.
    coordinator = start_coordinator(site_lab, lab, out, queue_timeout=300)
    run = run_id(out)
    # Open without waiting for a writer; paris-1 writes once it reaches the pause point.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:

        def paused() -> str:
            if runners.procs["paris-1"].poll() is not None:
                pytest.fail(f"paris-1 exited: {runners.log('paris-1')[-2000:]}")
            try:
                return os.read(fd, 4096).decode().strip()
            except BlockingIOError:
                return ""

        victim: str = wait_for("paris-1 to pause after recording a result", paused)
    finally:
        os.close(fd)
    ledger = client(site_lab)
    recorded = ledger.hget(f"auditor:run:{run}:results", victim)
    assert recorded is not None and json.loads(recorded)["runner"] == "paris-1"
    # The task is not acknowledged: Celery still holds it as delivered to paris-1.
    tags = [
        tag for tag, value in ledger.hgetall("unacked").items() if _task_of(value) == (run, victim)
    ]
    assert len(tags) == 1, tags
    runners.signal("paris-1", signal.SIGKILL)
    runners.procs["paris-1"].wait(timeout=30)
    # Redis gives an unacknowledged task to another worker once its visibility timeout has
    # passed; kombu's own restore of that message, done now instead of in an hour.
    app = celery_app(BrokerSettings(site_lab.broker_url, Secret(site_lab.password())))
    with app.connection_for_write() as connection:
        connection.default_channel.qos.restore_by_tag(tags[0])
    wait_for(
        "paris-2 to get the redelivered task and drop it",
        lambda: f"host {victim}: not taken (done)" in runners.log("paris-2"),
    )
    coordinator.send_signal(signal.SIGINT)
    _, stderr = coordinator.communicate(timeout=WAIT)
    assert "Traceback" not in stderr, stderr
    assert coordinator.returncode == 130, stderr
    _, hosts = results(out)
    by_name = check_each_host_once(hosts)
    # The result recorded before the kill is the host's one result; it was never re-run.
    assert by_name[victim]["runner"] == "paris-1"
    check_designed_outcome(victim, by_name[victim])
    assert ledger.hget(f"auditor:run:{run}:attempts", victim) == "1"
    assert f"host {victim}: audited" not in runners.log("paris-2")
    for name in ("direct", "reject", "blackhole", "viaproxy", "proxydeny"):
        check_designed_outcome(name, by_name[name])


def _task_of(unacked: str) -> tuple[str, str] | None:
    """(run id, host) of a task message as kombu keeps it while unacknowledged."""
    message = json.loads(unacked)[0]
    body = json.loads(base64.b64decode(message["body"]))
    task = json.loads(body[0][0])
    return task["run_id"], task["host"]["name"]
