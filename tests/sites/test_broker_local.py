"""Site runs through a real password-protected redis-server on loopback, with real `auditor
worker` processes auditing `ansible_connection=local` hosts: the broker, the ledger and the
command line without the lab (the lab tests add sites whose SSH only their runners reach)."""

from __future__ import annotations

import json
import os
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
        "[gamma]\ng1 ansible_connection=local\n"
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
        env=environ(AUDITOR_BROKER_PASSWORD=broker.password),
        timeout=WAIT,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    hosts = _hosts(out)
    assert sorted(hosts) == ["a1", "a2", "b1", "g1"]
    for name in ("a1", "a2"):
        assert hosts[name]["runner"] == "alpha-1"
        assert hosts[name]["observations"][0]["outcome"] == "refused"
    assert hosts["g1"]["runner"] == "default-1"
    assert hosts["b1"]["host_outcome"] == "not_audited"
    assert hosts["b1"]["detail"] == "no runner of site beta took this host within 3 s"
    for path in out.iterdir():
        assert broker.password.encode() not in path.read_bytes()
    assert broker.password not in proc.stderr + workers[0].text()


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
