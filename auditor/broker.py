"""The broker between a coordinator and the site runners: Redis, through Celery, JSON only.

Two things live in Redis:

- the Celery queues, one per site (`site.NAME`), carrying `HostTask` JSON texts;
- the run's *ledger*, which makes every host count exactly once whatever Celery delivers:
  the hosts expected, which runner holds which host, the first result per host (kept
  atomically; a late or duplicate one is dropped), and an event list the coordinator
  blocks on. Runners keep a heartbeat key alive; a host held by a runner whose heartbeat
  lapsed is queued again by the coordinator, within seconds, not after Redis's visibility
  timeout.

The broker password comes from the environment or a file, never from a URL on a command
line; it lives in memory only, inside the URLs and clients this module builds.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from auditor.errors import AuditorError, InputError
from auditor.secret import Secret, secret_from_env, secret_from_file

if TYPE_CHECKING:
    import redis
    from celery import Celery

BROKER_PASSWORD_ENV = "AUDITOR_BROKER_PASSWORD"  # noqa: S105 - a variable name
TASK_NAME = "auditor.audit_host"
HEARTBEAT_INTERVAL = 1.0
"""How often a runner renews its heartbeat."""
HEARTBEAT_TTL = 4.0
"""A runner not heard from for this long is dead: its hosts are queued again."""
# Far beyond any host's deadline: Redis hands an unacknowledged task to another worker only
# after this. The ledger's heartbeats re-queue a dead runner's hosts long before.
VISIBILITY_TIMEOUT = 3600
# A ledger outlives its run by a day, for `auditor` to be asked about it; then Redis drops it.
LEDGER_TTL = 86400
# Network calls to Redis give up after this, so a stopped broker is noticed, not waited on.
SOCKET_TIMEOUT = 10.0


class BrokerError(AuditorError):
    """The broker cannot be reached or lost the run's state."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to log in; the password never leaves memory."""

    url: str
    password: Secret | None = field(default=None, repr=False, compare=False)
    ca_file: Path | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 6379

    @property
    def db(self) -> int:
        path = urlsplit(self.url).path.strip("/")
        return int(path) if path else 0

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    def celery_url(self) -> str:
        """The URL Celery connects with, password included: for this process's memory only."""
        auth = f":{quote(self.password.reveal(), safe='')}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def ssl_options(self) -> dict[str, Any] | None:
        if not self.tls:
            return None
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if self.ca_file is not None:
            options["ssl_ca_certs"] = str(self.ca_file)
        return options


def broker_settings(
    url: str,
    env: Mapping[str, str],
    password_file: Path | None = None,
    ca_file: Path | None = None,
) -> BrokerSettings:
    """Check the broker URL and find its password (the environment, else `password_file`).

    A URL carrying credentials is refused: it would sit in argv, readable by every user."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"not a broker URL: {exc}", "--broker") from None
    if parts.scheme not in ("redis", "rediss"):
        raise InputError("the broker URL must start with redis:// or rediss://", "--broker")
    if parts.username or parts.password or "@" in parts.netloc:
        raise InputError(
            f"no credentials in the broker URL (command lines are visible to every user): "
            f"set {BROKER_PASSWORD_ENV} or --broker-password-file",
            "--broker",
        )
    if not parts.hostname:
        raise InputError("the broker URL names no host", "--broker")
    path = parts.path.strip("/")
    if path and not (path.isdigit() and int(path) < 1 << 16):
        raise InputError(f"database {path[:20]!r} is not a number", "--broker")
    if parts.query or parts.fragment:
        raise InputError("no query or fragment in the broker URL", "--broker")
    if ca_file is not None and parts.scheme != "rediss":
        raise InputError("--broker-ca needs a rediss:// broker", "--broker-ca")
    if ca_file is not None and not ca_file.is_file():
        raise InputError("not a readable file", str(ca_file))
    password = secret_from_env(BROKER_PASSWORD_ENV)
    if password is None and password_file is not None:
        password = secret_from_file(password_file, "--broker-password-file")
    scheme = parts.scheme
    return BrokerSettings(
        url=f"{scheme}://{parts.hostname}:{port or 6379}/{int(path or 0)}",
        password=password,
        ca_file=ca_file,
    )


def celery_app(broker: BrokerSettings, timeout: float = SOCKET_TIMEOUT) -> Celery:
    """A Celery app that speaks JSON only and acknowledges a task after it ran.

    `task_acks_late` + `task_reject_on_worker_lost`: a task whose runner dies goes back to
    the queue instead of being lost; `worker_prefetch_multiplier=1`: a runner holds no more
    tasks than it runs, so a dead one strands few hosts and a slow one starves no other."""
    from celery import Celery

    app = Celery("auditor", broker=broker.celery_url(), set_as_current=False)
    transport: dict[str, Any] = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_use_ssl=broker.ssl_options(),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=False,
        task_create_missing_queues=True,
    )
    return app


def redis_client(
    broker: BrokerSettings, retry: bool = True, timeout: float = SOCKET_TIMEOUT
) -> redis.Redis:
    """A client for the ledger and heartbeats. `retry=False`: one try only (for the login
    check, which must fail fast: a refused password is not a network blip; and for the
    coordinator, whose own loop tries again and counts how long the broker has been away).
    `timeout` bounds each network call."""
    import redis as redis_lib
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "db": broker.db,
        "password": broker.password.reveal() if broker.password else None,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
    }
    if not retry:
        kwargs["retry"] = Retry(NoBackoff(), 0)
    if broker.tls:
        kwargs["ssl"] = True
        kwargs["ssl_cert_reqs"] = "required"
        if broker.ca_file is not None:
            kwargs["ssl_ca_certs"] = str(broker.ca_file)
    return redis_lib.Redis(**kwargs)


def check_broker(broker: BrokerSettings) -> None:
    """Fail closed before any work: the broker answers and accepts our login."""
    import redis as redis_lib

    client = redis_client(broker, retry=False)
    try:
        client.ping()
    except redis_lib.AuthenticationError:
        raise BrokerError(
            f"broker {broker.url}: login refused (check {BROKER_PASSWORD_ENV} or "
            "--broker-password-file)"
        ) from None
    except redis_lib.ResponseError as exc:
        if "NOAUTH" in str(exc):
            raise BrokerError(
                f"broker {broker.url}: needs a password ({BROKER_PASSWORD_ENV} or "
                "--broker-password-file)"
            ) from None
        raise BrokerError(f"broker {broker.url}: {exc}") from None
    except (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError) as exc:
        raise BrokerError(f"broker {broker.url}: cannot connect: {exc}") from None
    finally:
        client.close()


# --- the ledger -----------------------------------------------------------------------------

# Taking a host: only once per attempt, never after the host has a result or the run closed.
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'unknown' end
if redis.call('HGET', KEYS[1], 'closed') == '1' then return 'closed' end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 'done' end
local site = redis.call('HGET', KEYS[5], ARGV[1])
if not site then return 'unknown' end
if site ~= ARGV[4] then return 'wrong-site' end
local attempt = redis.call('HGET', KEYS[3], ARGV[1])
if attempt ~= ARGV[3] then return 'stale' end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return 'held' end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
return 'ok'
"""

# Recording: the first result per host wins (HSETNX); the event wakes the coordinator.
_RECORD = """
if redis.call('HGET', KEYS[1], 'closed') == '1' then return 'closed' end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 'duplicate' end
redis.call('RPUSH', KEYS[3], ARGV[1])
return 'ok'
"""

# Re-queueing: the next attempt, only while the host still has no result and is held by
# the runner that was found dead (or by nobody).
_REQUEUE = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local holder = redis.call('HGET', KEYS[4], ARGV[1])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
return redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
"""


@dataclass(frozen=True)
class Holder:
    """Who holds a host: a runner of a site, since when."""

    runner: str
    site: str
    since: float

    def encode(self) -> str:
        return json.dumps([self.runner, self.site, self.since])

    @classmethod
    def decode(cls, text: str) -> Holder:
        runner, site, since = json.loads(text)
        return cls(str(runner), str(site), float(since))


def runner_key(site: str, runner: str) -> str:
    return f"auditor:runner:{site}:{runner}"


def site_runners_key(site: str) -> str:
    return f"auditor:site:{site}:runners"


class Ledger:
    """One run's ledger in Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        base = f"auditor:run:{run_id}"
        self.meta = f"{base}:meta"
        self.results = f"{base}:results"
        self.attempts = f"{base}:attempts"
        self.held = f"{base}:held"
        self.sites = f"{base}:sites"
        self.events = f"{base}:events"
        self._take = client.register_script(_TAKE)
        self._record = client.register_script(_RECORD)
        self._requeue = client.register_script(_REQUEUE)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.meta, self.results, self.attempts, self.held, self.sites, self.events)

    def create(self, sites: Mapping[str, str]) -> None:
        """Expect each host (name -> site) at attempt 1."""
        pipe = self.client.pipeline(transaction=True)
        meta: dict[str | bytes, str | bytes] = {"closed": "0", "created": str(time.time())}
        pipe.hset(self.meta, mapping=meta)  # type: ignore[arg-type]
        if sites:
            pipe.hset(self.sites, mapping=dict(sites))  # type: ignore[arg-type]
            pipe.hset(self.attempts, mapping=dict.fromkeys(sites, "1"))
        for key in self.keys:
            pipe.expire(key, LEDGER_TTL)
        pipe.execute()

    def take(self, host: str, holder: Holder, attempt: int) -> str:
        """'ok' when `holder` may audit `host` now; otherwise why not ('done', 'closed',
        'stale', 'held', 'wrong-site', 'unknown')."""
        keys = [self.meta, self.results, self.attempts, self.held, self.sites]
        args = [host, holder.encode(), str(attempt), holder.site]
        return str(self._take(keys=keys, args=args))

    def record(self, host: str, result_json: str) -> str:
        """'ok' when this is the host's first result; 'duplicate' or 'closed' when dropped."""
        keys = [self.meta, self.results, self.events]
        return str(self._record(keys=keys, args=[host, result_json]))

    def requeue(self, host: str, dead_holder: str) -> int:
        """The host's next attempt number, or 0 when it needs none (it has a result, or
        another runner took it meanwhile)."""
        keys = [self.meta, self.results, self.attempts, self.held]
        return int(self._requeue(keys=keys, args=[host, dead_holder]))

    def next_event(self, timeout: float) -> str | None:
        """The next host with a new result, waiting up to `timeout` seconds for one."""
        found = self.client.blpop([self.events], timeout=max(1, round(timeout)))
        return None if found is None else str(found[1])

    def result(self, host: str) -> str | None:
        value = self.client.hget(self.results, host)
        return None if value is None else str(value)

    def all_results(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.client.hgetall(self.results).items()}

    def holders(self) -> dict[str, Holder]:
        return {str(k): Holder.decode(str(v)) for k, v in self.client.hgetall(self.held).items()}

    def exists(self) -> bool:
        return bool(self.client.exists(self.meta))

    def close(self) -> None:
        """No result is accepted and no host taken from here on."""
        self.client.hset(self.meta, "closed", "1")


def live_runners(client: redis.Redis, sites: Sequence[str]) -> dict[str, list[str]]:
    """Per site, the runners whose heartbeat is current."""
    found: dict[str, list[str]] = {}
    for site in sites:
        names = sorted(str(n) for n in client.smembers(site_runners_key(site)))
        if not names:
            found[site] = []
            continue
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.exists(runner_key(site, name))
        alive = pipe.execute()
        found[site] = [n for n, up in zip(names, alive, strict=True) if up]
        # A runner whose heartbeat is gone is forgotten, so the set does not grow with every
        # runner restart (each process has its own identity).
        gone = [n for n, up in zip(names, alive, strict=True) if not up]
        if gone:
            client.srem(site_runners_key(site), *gone)
    return found


def beat(client: redis.Redis, site: str, runner: str) -> None:
    """One heartbeat: this runner of `site` is alive for the next HEARTBEAT_TTL seconds."""
    pipe = client.pipeline(transaction=False)
    pipe.sadd(site_runners_key(site), runner)
    pipe.set(runner_key(site, runner), str(time.time()), px=int(HEARTBEAT_TTL * 1000))
    pipe.execute()


def leave(client: redis.Redis, site: str, runner: str) -> None:
    """A runner stopping cleanly: its heartbeat ends at once."""
    client.delete(runner_key(site, runner))
