"""A site runner: `auditor worker` takes the hosts of one site from the broker and audits them.

The runner holds the credentials (its own flags, environment and files, exactly as `audit`
takes them) and checks them before it takes any work, as `audit` does before it contacts a
host. From the broker it receives only `HostTask`s, which it validates and refuses when they
do not; to the broker it sends only results, scrubbed of every secret it holds.

Each task is one host: the ledger decides whether this runner may take it (not done, not
held by another, this attempt, this site), the probe runs on one long-lived event loop, and
the result is recorded in the ledger before Celery acknowledges the task (acks_late), so a
runner that dies at any point loses nothing and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from auditor.audit import AuditConfig, prepare_transports, without_secrets
from auditor.broker import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TTL,
    TASK_NAME,
    BrokerSettings,
    Holder,
    Ledger,
    beat,
    celery_app,
    check_broker,
    leave,
    redis_client,
)
from auditor.errors import AuditorError, InputError
from auditor.models import Connection, Host, HostResult, Platform, UnauditedHost
from auditor.outcomes import HostOutcome
from auditor.results import result_to_dict
from auditor.scheduler import Probes, audit_host
from auditor.settings import Settings
from auditor.sites import HostTask, check_site_name, queue_name
from auditor.transports.options import HostKeyPolicy

if TYPE_CHECKING:
    import redis

log = logging.getLogger("auditor.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """One runner: which site it serves, its name in reports, and its credentials."""

    site: str
    name: str
    concurrency: int
    settings: Settings
    broker: BrokerSettings


# A placeholder host per connection kind: preparing a transport for it loads the run-wide
# trust and credential material (known_hosts, key files, CA bundles) the way a run would.
CHECK_HOSTS = {
    Connection.SSH: Host("runner-credential-check", "127.0.0.1", Connection.SSH, Platform.LINUX),
}


def check_credentials(config: WorkerConfig) -> None:
    """Load every credential and trust file the runner was given, before it takes work; a
    bad one raises InputError and the runner never connects to the broker's queue."""
    audit = _audit_config(config, (), ())
    for host in CHECK_HOSTS.values():
        prepare_transports(replace(audit, hosts=(host,)))


def _audit_config(
    config: WorkerConfig, hosts: tuple[Host, ...], targets: tuple[Any, ...]
) -> AuditConfig:
    from pathlib import Path

    return AuditConfig(
        hosts=hosts,
        targets=targets,
        out_dir=Path("."),
        inventory="task",
        ssh=config.settings.ssh,
        winrm=config.settings.winrm,
    )


class Runner:
    """The work of one runner process; `serve` blocks until the worker is stopped."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        # The heartbeat and holder identity: unique per process, so two runners given one
        # name (two machines with the default host name) never vouch for each other.
        self.instance = f"{config.name}#{secrets.token_hex(4)}"
        self.client: redis.Redis = redis_client(config.broker)
        # The heartbeat's own client tries once, briefly: a beat that cannot be sent is
        # reported within seconds (the ledger's client retries patiently instead).
        self.beat_client: redis.Redis = redis_client(
            config.broker, retry=False, timeout=HEARTBEAT_TTL
        )
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        self._pause = pause_point(os.environ)

    # -- the parts that run in the background -------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _heartbeat(self) -> None:
        import redis as redis_lib

        while not self._stopped.is_set():
            try:
                beat(self.beat_client, self.config.site, self.instance)
            except (redis_lib.RedisError, OSError) as exc:
                log.warning("heartbeat: broker unreachable: %s", exc)
            self._stopped.wait(HEARTBEAT_INTERVAL)

    # -- one task ------------------------------------------------------------------------

    def handle(self, payload: object) -> str:
        """Audit the host of one task (or refuse it); returns what became of it."""
        try:
            task = HostTask.from_json(payload)
        except InputError as exc:
            log.error("refused a task: %s", exc)
            return "refused"
        if task.site != self.config.site:
            log.error(
                "refused a task of site %s (this runner serves %s)", task.site, self.config.site
            )
            return "refused"
        ledger = Ledger(self.client, task.run_id)
        holder = Holder(self.instance, self.config.site, _now())
        verdict = ledger.take(task.host_name, holder, task.attempt)
        if verdict != "ok":
            log.info("host %s: not taken (%s)", task.host_name, verdict)
            return verdict
        result = self._audit(task)
        text = _json(result_to_dict(result))
        outcome = self._patiently(lambda: ledger.record(task.host_name, text))
        log.info("host %s: %s (%s)", task.host_name, _summary(result), outcome)
        if self._pause is not None and outcome == "ok":
            _hold_forever(self._pause, task.host_name)
        return outcome

    def _audit(self, task: HostTask) -> HostResult:
        try:
            host = task.host()
        except InputError as exc:
            return UnauditedHost(
                _placeholder(task), HostOutcome.ERROR, exc.message, 0.0, self.config.name
            )
        config = _audit_config(self.config, (host,), task.targets)
        schedule = replace(task.settings.schedule, runner=self.config.name)
        try:
            transports = prepare_transports(config)
        except AuditorError as exc:
            # A host setting this runner cannot use (a key file it lacks): the host's result.
            return UnauditedHost(host, HostOutcome.ERROR, str(exc)[:400], 0.0, self.config.name)
        probes = Probes(task.targets, task.settings.probe)

        async def one() -> HostResult:
            try:
                return await audit_host(host, transports[host.connection], probes, schedule)
            finally:
                for transport in transports.values():
                    await transport.close()

        result = asyncio.run_coroutine_threadsafe(one(), self._loop).result()
        # Trust this runner was told to weaken for the host travels with its result, so the
        # report flags it as a local run's would.
        warnings = transports[host.connection].host_warnings(host)
        if host.connection is Connection.SSH and (
            self.config.settings.ssh.host_key_policy is HostKeyPolicy.NONE
        ):
            warnings = (
                f"HOST KEY CHECKING WAS DISABLED on runner {self.config.name} "
                "(--no-host-key-check): results could come from an impostor host",
                *warnings,
            )
        if warnings:
            result = replace(result, warnings=warnings)
        from auditor.audit import _run_secrets, _scrubber

        # Scrubbed here, before the result reaches the broker: a host that learned one of
        # this runner's secrets must not get it into Redis.
        return without_secrets(result, _scrubber(_run_secrets(config), host))

    def _patiently(self, call: Callable[[], str]) -> str:
        """`call` (a ledger write), tried again while the broker is briefly away: a result
        already paid for is not given up for a blip. After RECORD_PATIENCE seconds the error
        stands; the coordinator then re-queues the host as overdue."""
        import redis as redis_lib

        deadline = _monotonic() + RECORD_PATIENCE
        while True:
            try:
                return call()
            except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                if _monotonic() > deadline:
                    raise
                log.warning("broker unreachable, result kept for another try: %s", exc)
                self._stopped.wait(1.0)

    # -- the process ---------------------------------------------------------------------

    def serve(self, ready: Callable[[], None] | None = None) -> int:
        check_broker(self.config.broker)
        threading.Thread(target=self._run_loop, name="probe-loop", daemon=True).start()
        beat(self.client, self.config.site, self.instance)
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        app = celery_app(self.config.broker)
        runner = self

        @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
        def audit_host_task(payload: object) -> str:
            return runner.handle(payload)

        def on_ready(*_args: Any, **_kw: Any) -> None:
            if ready is not None:
                ready()

        from celery.signals import worker_ready

        worker_ready.connect(on_ready, weak=False)
        worker = app.Worker(
            hostname=f"{self.instance}@{self.config.site}",
            pool_cls="threads",
            concurrency=self.config.concurrency,
            queues=[queue_name(self.config.site)],
            without_heartbeat=True,
            without_gossip=True,
            without_mingle=True,
            quiet=True,
            loglevel="INFO",
        )
        try:
            worker.start()
        finally:
            self._stopped.set()
            try:
                leave(self.client, self.config.site, self.instance)
            except Exception as exc:  # the broker may be gone; the heartbeat lapses anyway
                log.warning("could not sign off: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
        return int(worker.exitcode or 0)


RECORD_PATIENCE = 120.0

PAUSE_AFTER_RECORD_ENV = "AUDITOR_TEST_PAUSE_AFTER_RECORD"
"""For crash tests only. A runner whose own environment names, here, a FIFO that a test
made (owned by this user, no access for others) stops each task for good right after its
result is in the ledger and before Celery acknowledges it, and writes the host's name into
the FIFO; the test then kills the runner at exactly that point. Read once, at start, from
the runner's environment (a task cannot set it); any other value stops the runner."""


def pause_point(env: Mapping[str, str]) -> str | None:
    """The FIFO named by PAUSE_AFTER_RECORD_ENV, or None when it is not set. A value that is
    not an owner-only FIFO of this user is an InputError: a stray variable never pauses a
    runner, and never silently does nothing either."""
    value = env.get(PAUSE_AFTER_RECORD_ENV)
    if not value:
        return None
    try:
        info = os.lstat(value)
    except OSError as exc:
        raise InputError(f"{PAUSE_AFTER_RECORD_ENV}: {exc.strerror}", value) from None
    if not stat.S_ISFIFO(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise InputError(
            f"{PAUSE_AFTER_RECORD_ENV} is for tests only and must name an owner-only FIFO",
            value,
        )
    return value


def _hold_forever(fifo: str, host: str) -> None:
    """The test's pause point: say which host was recorded, then never return (so the task
    is never acknowledged) until the test kills this runner."""
    log.warning("host %s: recorded; holding before the acknowledgement (test pause)", host)
    fd = os.open(fifo, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, f"{host}\n".encode())
    finally:
        os.close(fd)
    threading.Event().wait()


def _monotonic() -> float:
    import time

    return time.monotonic()


def _now() -> float:
    import time

    return time.time()


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


def _summary(result: HostResult) -> str:
    return "audited" if result.audited else f"{getattr(result, 'outcome', '')}"


def _placeholder(task: HostTask) -> Host:
    return Host(task.host_name, task.host_name, Connection.NONE, Platform.LINUX)


def worker_config(
    settings: Settings, broker: BrokerSettings, site: str, name: str, concurrency: int
) -> WorkerConfig:
    check_site_name(site, "--site")
    if not name or len(name) > 200 or any(not c.isprintable() or c in "#@" for c in name):
        raise InputError("a runner name is 1-200 printable characters without '#' or '@'", "--name")
    return WorkerConfig(
        site=site, name=name, concurrency=concurrency, settings=settings, broker=broker
    )


__all__ = ["Runner", "WorkerConfig", "check_credentials", "worker_config"]
