"""A site run: every host queued to its own site's runners through the broker, every result
taken from the run's ledger, and every inventory host accounted for exactly once.

The coordinator never connects to a host. It writes the same `results.jsonl` (and so the
same reports) as a local run, streaming each result as the ledger yields it. What it decides
itself, it records through the ledger too (first result wins), so a runner's late answer and
the coordinator's verdict can never both count:

- a host held by a runner whose heartbeat lapsed is queued again, as the next attempt, to
  the other runners of its site; the old attempt is refused by the ledger if it comes back;
- a host still waiting while its site has had no live runner for `queue_timeout` seconds is
  `not_audited`, naming the site;
- when the run ends (all hosts in, interrupted, or the broker gone) the ledger is closed and
  whatever is still missing is `not_audited` with the reason.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

from auditor import __version__
from auditor.audit import AuditConfig, ResultStream, RunSink
from auditor.broker import (
    SOCKET_TIMEOUT,
    TASK_NAME,
    BrokerError,
    BrokerSettings,
    Ledger,
    celery_app,
    check_broker,
    live_runners,
    redis_client,
)
from auditor.models import AuditRun, HostResult, RunInfo, UnauditedHost
from auditor.outcomes import HostOutcome
from auditor.results import result_from_dict, result_to_dict
from auditor.settings import Settings
from auditor.sites import HostTask, queue_name, site_of
from auditor.textsafe import for_terminal

if TYPE_CHECKING:
    import redis
    from celery import Celery

QUEUE_TIMEOUT = 60.0
# How long the coordinator waits on the ledger between looks at the runners' heartbeats.
TICK = 1.0
# Beyond a host's deadline, how long its runner may take to record the result (a runner
# retries a write for up to two minutes while the broker is away).
HOLD_GRACE = 180.0
# A broker unreachable for this long ends the run: what finished is kept.
BROKER_OUTAGE = 60.0
# A host nobody holds, whose site's queue has been empty this long while runners of the site
# beat, has lost its message (a runner took it from the queue and never ran it, as after a
# broker outage): it is queued again at its next attempt.
LOST_AFTER = 15.0


@dataclass(frozen=True)
class SiteRun:
    """What a site run needs beyond a local run's config."""

    broker: BrokerSettings
    settings: Settings
    queue_timeout: float = QUEUE_TIMEOUT
    broker_outage: float = BROKER_OUTAGE
    """Seconds the broker may stay unreachable before the run ends (`--broker-timeout`)."""
    progress_by_site: bool = False

    @property
    def call_timeout(self) -> float:
        """How long one call to the broker may take: never much more than the outage the run
        tolerates (a stopped broker hangs a call rather than refusing it), and longer than
        the wait for the next event."""
        return max(TICK + 2.0, min(SOCKET_TIMEOUT, self.broker_outage))


class _Coordinator:
    def __init__(
        self,
        config: AuditConfig,
        site_run: SiteRun,
        record: Callable[[HostResult], None],
        stop: threading.Event,
        watch: Callable[[Mapping[str, Sequence[str]]], None] | None = None,
    ) -> None:
        self.watch = watch
        self.config = config
        self.site_run = site_run
        self.record_result = record
        self.stop = stop
        self.run_id = secrets.token_hex(8)
        # One try per call: the run loop tries again, and counts how long the broker has
        # been away (the client's own retries would hide it for minutes).
        self.client: redis.Redis = redis_client(
            site_run.broker, retry=False, timeout=site_run.call_timeout
        )
        self.ledger = Ledger(self.client, self.run_id)
        self.app: Celery = celery_app(site_run.broker, timeout=site_run.call_timeout)
        self.hosts = {h.name: h for h in config.hosts if not h.skip}
        self.site = {name: site_of(h) for name, h in self.hosts.items()}
        self.done: set[str] = set()
        self.queued_at: dict[str, float] = {}
        self.outbox: dict[str, int] = {}
        self.site_seen: dict[str, float] = {}
        self.queue_empty_since: dict[str, float] = {}
        self.runners_seen: dict[str, None] = {}
        self.error: BrokerError | None = None
        self.cause = ""
        """What the broker's client last said, for the run's error line (not the hosts')."""

    # -- sending -----------------------------------------------------------------------

    def _send(self, attempts: Mapping[str, int]) -> None:
        """Queue these hosts at these attempts. What could not be sent (the broker went
        away) stays in the outbox and is sent again on the next look: a re-queued host is
        never left with no message for its current attempt."""
        self.outbox.update(attempts)
        with self.app.producer_or_acquire() as producer:
            for name in sorted(self.outbox):
                task = HostTask.for_host(
                    self.run_id,
                    self.hosts[name],
                    self.config.targets,
                    self.site_run.settings,
                    self.outbox[name],
                )
                self.app.send_task(
                    TASK_NAME,
                    args=[task.to_json()],
                    queue=queue_name(self.site[name]),
                    producer=producer,
                )
                self.queued_at[name] = time.monotonic()
                del self.outbox[name]

    # -- receiving ---------------------------------------------------------------------

    def _take(self, name: str, text: str | None) -> None:
        """Keep the ledger's result for host `name` (once)."""
        if name in self.done or name not in self.hosts or text is None:
            return
        try:
            result = result_from_dict(json.loads(text), len(self.config.targets))
        except (ValueError, RecursionError) as exc:
            result = UnauditedHost(
                self.hosts[name], HostOutcome.ERROR, f"a runner sent a bad result: {exc}"[:400]
            )
        if result.host.name != name:
            result = UnauditedHost(
                self.hosts[name], HostOutcome.ERROR, "a runner sent another host's result"
            )
        # The coordinator's host, not the runner's copy: the same fields, and its variables
        # for scrubbing with the inventory's own passwords.
        result = replace(result, host=self.hosts[name])
        if result.runner:
            self.runners_seen[result.runner] = None
        self.done.add(name)
        self.record_result(result)

    def _decide(self, name: str, outcome: HostOutcome, detail: str) -> None:
        """Record the coordinator's own verdict for a host, unless a runner's came first."""
        verdict = UnauditedHost(self.hosts[name], outcome, detail)
        # Whichever came first, the runner's result or this verdict, is the host's result.
        self.ledger.record(name, json.dumps(result_to_dict(verdict)))
        self._take(name, self.ledger.result(name))

    # -- housekeeping ------------------------------------------------------------------

    def _look(self) -> None:
        pending = [n for n in self.hosts if n not in self.done]
        sites = sorted({self.site[n] for n in pending})
        live = live_runners(self.client, sites)
        now = time.monotonic()
        for site, names in live.items():
            if names:
                self.site_seen[site] = now
        if self.watch is not None:
            self.watch(live)
        holders = self.ledger.holders()
        requeue: dict[str, int] = {}
        # A host held far past its own deadline is lost even if its runner still beats
        # (its result could not be recorded): it goes to the site's runners again.
        overdue = time.time() - (self.site_run.settings.schedule.timeout + HOLD_GRACE)
        for name, holder in holders.items():
            if name in self.done or name not in self.hosts:
                continue
            if holder.runner not in live.get(holder.site, []) or holder.since < overdue:
                attempt = self.ledger.requeue(name, holder.encode())
                if attempt:
                    requeue[name] = attempt
        requeue.update(self._lost(pending, holders, live, requeue, now))
        if requeue:
            self._send(requeue)
        timeout = self.site_run.queue_timeout
        for name in pending:
            if (name in holders and name not in requeue) or name in self.outbox:
                continue
            site = self.site[name]
            waited_since = max(self.queued_at[name], self.site_seen.get(site, 0.0))
            if now - waited_since >= timeout:
                self._decide(
                    name,
                    HostOutcome.NOT_AUDITED,
                    f"no runner of site {site} took this host within {timeout:g} s",
                )

    def _lost(
        self,
        pending: Sequence[str],
        holders: Mapping[str, Any],
        live: Mapping[str, Sequence[str]],
        requeue: Mapping[str, int],
        now: float,
    ) -> dict[str, int]:
        """The next attempt of each pending host whose message is gone: nobody holds it, no
        message waits in its site's queue, and the site's runners beat. A host of a site
        without runners is left to --queue-timeout instead. Safe against a message that only
        seemed lost: its attempt is now stale, and the ledger refuses it."""
        lost: dict[str, int] = {}
        for site, runners in live.items():
            if not runners or self.client.llen(queue_name(site)) > 0:
                self.queue_empty_since.pop(site, None)
                continue
            since = self.queue_empty_since.setdefault(site, now)
            for name in pending:
                if (
                    self.site[name] != site
                    or name in holders
                    or name in requeue
                    or name in self.outbox
                    or now - max(since, self.queued_at[name]) < LOST_AFTER
                ):
                    continue
                attempt = self.ledger.requeue(name, "")
                if attempt:
                    lost[name] = attempt
        return lost

    # -- the run -----------------------------------------------------------------------

    def run(self) -> None:
        import redis as redis_lib
        from kombu.exceptions import OperationalError

        check_broker(self.site_run.broker)
        try:
            self.ledger.create(self.site)
        except (redis_lib.RedisError, OSError) as exc:
            raise BrokerError(
                f"broker {self.site_run.broker.url}: cannot start the run: {self._said(exc)}"
            ) from None
        self.outbox.update(dict.fromkeys(self.hosts, 1))
        last_look = 0.0
        outage_since: float | None = None
        while len(self.done) < len(self.hosts) and not self.stop.is_set():
            try:
                if self.outbox:
                    self._send({})
                name = self.ledger.next_event(TICK)
                if name is not None:
                    self._take(name, self.ledger.result(name))
                if time.monotonic() - last_look >= TICK:
                    if not self.ledger.exists():
                        raise BrokerError(
                            "the broker lost this run's ledger (was Redis restarted without "
                            "its data?)"
                        )
                    self._look()
                    last_look = time.monotonic()
                outage_since = None
            except (
                redis_lib.ConnectionError,
                redis_lib.TimeoutError,
                OSError,
                OperationalError,
            ) as exc:
                now = time.monotonic()
                outage_since = outage_since or now
                if now - outage_since >= self.site_run.broker_outage:
                    self.error = BrokerError(
                        f"broker {self.site_run.broker.url} unreachable for "
                        f"{self.site_run.broker_outage:g} s"
                    )
                    self.cause = self._said(exc)
                    break
                # Back off without spinning while the broker is away.
                self.stop.wait(0.5)
            except BrokerError as exc:
                self.error = exc
                break
        self._finish()

    def _said(self, exc: BaseException) -> str:
        """An error of the broker's client as one short line, the broker password masked."""
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        password = self.site_run.broker.password
        if password is not None and password.reveal():
            text = text.replace(password.reveal(), "********")
        return text

    def _finish(self) -> None:
        """Close the ledger, keep every result it holds, and account for the rest."""
        import redis as redis_lib

        try:
            self.ledger.close()
            for name, text in self.ledger.all_results().items():
                self._take(name, text)
        except (redis_lib.RedisError, OSError):
            pass  # the broker is gone: what it still held is lost to this run, said below
        if self.stop.is_set():
            reason = "the run was interrupted before this host finished"
        elif self.error is not None:
            reason = f"the run ended without this host's result: {self.error}"
        else:
            reason = "no result from a runner of this host's site"
        for name in self.hosts:
            if name not in self.done:
                self._take(
                    name,
                    json.dumps(
                        result_to_dict(
                            UnauditedHost(self.hosts[name], HostOutcome.NOT_AUDITED, reason)
                        )
                    ),
                )


def execute_sites(
    config: AuditConfig,
    site_run: SiteRun,
    on_result: Callable[[HostResult], None] | None = None,
    sinks: Sequence[RunSink] = (),
    watch: Callable[[Mapping[str, Sequence[str]]], None] | None = None,
) -> tuple[AuditRun, int | None]:
    """Run the audit through the broker; returns the run and the signal that interrupted it.

    Results stream to `results.jsonl` as the ledger yields them; a broker that stays away
    ends the run with a BrokerError after the results file is complete (every host present,
    the missing ones `not_audited`)."""
    started = datetime.now(UTC)
    info = RunInfo(
        run_id="",
        started=started.isoformat(timespec="seconds"),
        inventory=config.inventory,
        targets=config.targets,
        tool_version=__version__,
        options=MappingProxyType(dict(config.options_shown)),
        warnings=config.warnings,
    )
    stop = threading.Event()
    caught: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        caught.append(signum)
        stop.set()

    # The same stream as a local run: scrubbed, written, counted and handed on, once a host.
    stream = ResultStream(config, on_result, sinks)
    coordinator = _Coordinator(config, site_run, stream.record, stop, watch)
    info = replace(info, run_id=coordinator.run_id)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    try:
        stream.start(info)
        for host in config.hosts:
            if host.skip:
                stream.record(UnauditedHost(host, HostOutcome.SKIPPED, host.skip))
        coordinator.run()
        final = replace(
            info,
            runners=tuple(coordinator.runners_seen),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            duration=round(time.monotonic() - t0, 3),
            interrupted=bool(caught) or coordinator.error is not None,
        )
        stream.end(final)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stream.close()
    run = stream.run(final)
    if coordinator.error is not None:
        raise SiteRunError(coordinator.error, run, coordinator.cause)
    return run, (caught[0] if caught else None)


class SiteRunError(BrokerError):
    """The broker failed mid-run; `run` holds every host (what finished, the rest not
    audited), already in results.jsonl."""

    def __init__(self, error: BrokerError, run: AuditRun, cause: str = "") -> None:
        super().__init__(str(error))
        self.run = run
        self.cause = cause


__all__ = ["QUEUE_TIMEOUT", "SiteProgress", "SiteRun", "SiteRunError", "execute_sites"]


def run_through_broker(settings: Settings, site_run: SiteRun, warn: Callable[[str], None]) -> int:
    """`audit --broker`: like a local run (the same results file, reports, history, gate and
    exit status), but every host is audited by a runner of its site. The coordinator holds
    no host credential. `warn` shows a run-level warning line."""
    from auditor.audit import build_config, run_and_report

    config = build_config(settings)
    # Every host's site and task are checked before anything is queued or written.
    for host in config.hosts:
        if not host.skip:
            HostTask.for_host("0" * 16, host, config.targets, settings, 1)
    check_broker(site_run.broker)
    failures: list[SiteRunError] = []

    def through_broker(
        chosen: AuditConfig, on_result: Callable[[HostResult], None], sinks: Sequence[RunSink]
    ) -> tuple[AuditRun, int | None]:
        by_site = None
        if site_run.progress_by_site and not settings.report.quiet:
            # A line per site, drawn above the fleet's line (which `on_result` draws).
            by_site = SiteProgress({h.name: site_of(h) for h in chosen.hosts})
            fleet = on_result

            def on_result(result: HostResult) -> None:
                by_site.update(result)
                fleet(result)

        try:
            return execute_sites(
                chosen, site_run, on_result, sinks, None if by_site is None else by_site.live
            )
        except SiteRunError as exc:
            # Every host is in the run (the missing ones not audited, with the reason): its
            # reports are written, then the failure is the run's error.
            failures.append(exc)
            return exc.run, None
        finally:
            if by_site is not None:
                by_site.close()

    status = run_and_report(settings, config, through_broker, warn)
    if failures:
        failure = failures[0]
        cause = f" ({failure.cause})" if failure.cause else ""
        raise BrokerError(
            f"{failure}{cause}; the run could not finish, the reports hold what finished"
        )
    return status


@dataclass
class _SiteCount:
    total: int
    done: int = 0
    ok: int = 0
    blocked: int = 0
    not_audited: int = 0
    skipped: int = 0


class SiteProgress:
    """`audit --broker --progress-by-site`: one line per site, with the site's hosts done of
    its total, how they came out, the runners that sent its results and how many of its
    runners are alive.

    On a terminal the lines are redrawn in place (at most every `interval` seconds); into a
    pipe or a log, a site's line is written when its count changes, at most every
    `log_interval` seconds per site, and always when the site is complete, so a log shows
    each site's last state without a line per host."""

    def __init__(
        self,
        site_of_host: Mapping[str, str],
        stream: TextIO | None = None,
        *,
        interval: float = 0.2,
        log_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site_of_host = dict(site_of_host)
        self.stream: TextIO = sys.stderr if stream is None else stream
        self.interval = interval
        self.log_interval = log_interval
        self.clock = clock
        self.counts: dict[str, _SiteCount] = {}
        for site in sorted(set(self.site_of_host.values())):
            total = sum(1 for s in self.site_of_host.values() if s == site)
            self.counts[site] = _SiteCount(total)
        self.runners: dict[str, dict[str, None]] = {site: {} for site in self.counts}
        self.alive: dict[str, int] = {}
        self._lock = threading.RLock()  # results come from the run loop, draws too
        self._drawn = 0
        self._last_draw: float | None = None
        self._logged: dict[str, tuple[float, int]] = {}
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            self.tty = False

    def update(self, result: HostResult) -> None:
        """Count one host's result under its site."""
        from auditor.aggregate import fully_ready

        with self._lock:
            site = self.site_of_host.get(result.host.name, site_of(result.host))
            count = self.counts.setdefault(site, _SiteCount(0))
            count.done += 1
            if isinstance(result, UnauditedHost) and result.skipped:
                count.skipped += 1
            elif isinstance(result, UnauditedHost):
                count.not_audited += 1
            elif fully_ready(result):
                count.ok += 1
            else:
                count.blocked += 1
            if result.runner:
                self.runners.setdefault(site, {})[result.runner] = None
            self._show(site)

    def live(self, runners: Mapping[str, Sequence[str]]) -> None:
        """The runners whose heartbeat is current, per site (as the coordinator saw them)."""
        with self._lock:
            for site, names in runners.items():
                self.alive[site] = len(names)
            self._show(None)

    def line(self, site: str) -> str:
        count = self.counts[site]
        seen = ", ".join(self.runners.get(site, {})) or "none yet"
        alive = self.alive.get(site)
        live = "" if alive is None or count.done >= count.total else f" ({alive} alive)"
        text = (
            f"site {site}: {count.done}/{count.total} hosts  ok {count.ok}  blocked "
            f"{count.blocked}  not audited {count.not_audited}  "
            + (f"skipped {count.skipped}  " if count.skipped else "")
            + f"runners {seen}{live}"
        )
        return for_terminal(text)

    def _show(self, site: str | None, force: bool = False) -> None:
        if self.tty:
            self._redraw(force)
        elif site is not None:
            self._log(site, force)

    def _redraw(self, force: bool) -> None:
        now = self.clock()
        done = all(c.done >= c.total for c in self.counts.values())
        if not force and not done and self._last_draw is not None:
            if now - self._last_draw < self.interval:
                return
        self._last_draw = now
        # Back to the first line of the block, then each line rewritten in place; the fleet's
        # own progress line (drawn with a carriage return) stays on the line below it.
        out = f"\x1b[{self._drawn}F" if self._drawn else "\r\x1b[2K"
        out += "".join(f"\x1b[2K{self.line(site)}\n" for site in self.counts)
        self._drawn = len(self.counts)
        self._write(out)

    def _log(self, site: str, force: bool) -> None:
        count = self.counts[site]
        now = self.clock()
        last = self._logged.get(site)
        if last is not None and last[1] == count.done:
            return
        complete = count.done >= count.total
        if not (force or complete or last is None or now - last[0] >= self.log_interval):
            return
        self._logged[site] = (now, count.done)
        self._write(self.line(site) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not end the run

    def close(self) -> None:
        """Show every site's final state once more (a log gets each site's last line)."""
        with self._lock:
            if self.tty:
                self._redraw(force=True)
            else:
                for site in self.counts:
                    self._log(site, force=True)
