"""Runs one task per host with bounded concurrency and one deadline per host.

The scheduler knows nothing of SSH or WinRM: it picks the transport for each host, runs the
platform's probe through it, turns failures into host-level results, and hands every result
to `on_result` the moment the host finishes (so results stream to disk as they come).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.errors import HostLevelError
from auditor.models import (
    AuditedHost,
    Connection,
    Host,
    HostResult,
    Platform,
    ProbeJob,
    RawOutput,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome
from auditor.probes import ProbeResult, ProbeSettings
from auditor.probes.registry import probe_for
from auditor.transports.base import Transport


@dataclass(frozen=True)
class Schedule:
    """How hard to push: concurrency, the per-host deadline and connection retries."""

    forks: int = 50
    timeout: float = 60.0
    retries: int = 0
    retry_delay: float = 1.0
    runner: str = ""


ResultCallback = Callable[[HostResult], None]


class Probes:
    """Builds each platform's job once per run and parses each host's output, through the
    one `Probe` interface; which probe serves which platform is the registry's business."""

    def __init__(self, targets: Sequence[Target], settings: ProbeSettings) -> None:
        self.targets = tuple(targets)
        self.settings = settings
        self._jobs: dict[Platform, ProbeJob] = {}

    def job(self, platform: Platform) -> ProbeJob:
        if platform not in self._jobs:
            self._jobs[platform] = probe_for(platform).build_job(self.targets, self.settings)
        return self._jobs[platform]

    def parse(self, platform: Platform, raw: RawOutput) -> ProbeResult:
        return probe_for(platform).parse(raw, self.targets, self.settings.nonce)


# Host-level outcomes worth another try: the network may have hiccupped. An auth failure or a
# changed host key will not fix itself, and retrying would hammer the host's auth log.
_RETRYABLE = {HostOutcome.UNREACHABLE}


async def audit_host(
    host: Host,
    transport: Transport,
    probes: Probes,
    schedule: Schedule,
) -> HostResult:
    """Audit one host within its deadline; never raises (except cancellation)."""
    start = time.monotonic()
    deadline = start + schedule.timeout
    attempt = 0
    while True:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise HostLevelError(
                    HostOutcome.SESSION_TIMEOUT, f"no answer within {schedule.timeout:g} s"
                )
            raw = await transport.run_job(host, probes.job(host.platform), remaining)
            parsed = probes.parse(host.platform, raw)
            return AuditedHost(
                host=host,
                observations=parsed.observations,
                duration=time.monotonic() - start,
                facts=parsed.facts,
                runner=schedule.runner,
                agent=parsed.agent,
            )
        except HostLevelError as exc:
            outcome = HostOutcome(exc.outcome)
            attempt += 1
            if (
                outcome in _RETRYABLE
                and attempt <= schedule.retries
                and deadline - time.monotonic() > schedule.retry_delay
            ):
                await asyncio.sleep(schedule.retry_delay)
                continue
            detail = exc.detail if attempt == 1 else f"{exc.detail} (after {attempt} attempts)"
            return UnauditedHost(host, outcome, detail, time.monotonic() - start, schedule.runner)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unforeseen library error: keep the run going
            detail = f"{type(exc).__name__}: {exc}"[:400]
            return UnauditedHost(
                host, HostOutcome.ERROR, detail, time.monotonic() - start, schedule.runner
            )


async def audit_hosts(
    hosts: Sequence[Host],
    transports: Mapping[Connection, Transport],
    probes: Probes,
    schedule: Schedule,
    on_result: ResultCallback,
    stop: asyncio.Event | None = None,
) -> int:
    """Audit every host, handing `on_result` exactly one result per host; returns how many.

    Hosts are taken in inventory order by `forks` workers, so memory holds the hosts in
    flight, not one task per host of the fleet; what is kept per host is one byte (done or
    not). When `stop` is set (Ctrl-C, SIGTERM), hosts in flight are cancelled and every host
    without a result is then reported, in inventory order, as not audited. A skipped host
    (`Host.skip`) gets its result without reaching a transport. If `on_result` raises (the
    results file cannot be written), the run stops and the exception propagates: a result
    is never silently lost.
    """
    done = bytearray(len(hosts))
    failures: list[BaseException] = []
    failed = asyncio.Event()
    queue = iter(enumerate(hosts))

    def deliver(index: int, result: HostResult) -> None:
        done[index] = 1
        try:
            on_result(result)
        except Exception as exc:
            failures.append(exc)
            failed.set()
            raise

    async def worker() -> None:
        # One shared iterator: the event loop runs one worker at a time, so every host is
        # taken by exactly one worker.
        for index, host in queue:
            if host.skip:
                deliver(index, _skipped(host, schedule))
                continue
            result = await audit_host(host, transports[host.connection], probes, schedule)
            deliver(index, result)

    workers = [
        asyncio.create_task(worker()) for _ in range(min(max(1, schedule.forks), len(hosts)))
    ]
    watchers = [asyncio.create_task(failed.wait())]
    if stop is not None:
        watchers.append(asyncio.create_task(stop.wait()))
    try:
        if workers:
            # asyncio.wait never raises a task's exception, so nothing is left unretrieved.
            all_done: asyncio.Future[Any] = asyncio.ensure_future(asyncio.wait(workers))
            await asyncio.wait({all_done, *watchers}, return_when=asyncio.FIRST_COMPLETED)
            all_done.cancel()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for watcher in watchers:
            watcher.cancel()
        for transport in transports.values():
            await transport.close()
    if failures:
        raise failures[0]
    for index, host in enumerate(hosts):
        if not done[index]:
            if host.skip:
                result: HostResult = _skipped(host, schedule)
            else:
                result = UnauditedHost(
                    host,
                    HostOutcome.NOT_AUDITED,
                    "the run was interrupted before this host finished",
                    0.0,
                    schedule.runner,
                )
            done[index] = 1
            on_result(result)
    return len(hosts)


def _skipped(host: Host, schedule: Schedule) -> UnauditedHost:
    return UnauditedHost(host, HostOutcome.SKIPPED, host.skip, 0.0, schedule.runner)
