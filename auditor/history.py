"""The run history: every audit's metadata and every host's result, in one SQLite file.

The history is fed from the same stream as `results.jsonl` (`HistoryRecorder` is a sink of
`auditor.audit.execute`), never by reading reports back. Each host's record is the very JSON
object `results.jsonl` holds for it, so a run read back from the history is the run the
reports were rendered from; like the results file, it never holds host variables, so no
inventory secret can reach the database.

The database is opened (and migrated, and checked writable) before any host is contacted:
a corrupt file, one from a newer tool, or one another process holds locked past the busy
timeout stops the run before it starts. A failure later in the run is kept, not raised:
the run goes on, its reports are written, and only then is the failure reported.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from auditor.aggregate import Tally, count
from auditor.diff import Change, RunDiff, diff_runs
from auditor.errors import AuditorError
from auditor.models import AuditRun, HostResult, RunInfo
from auditor.results import (
    info_from_dict,
    info_to_dict,
    result_from_dict,
    result_to_dict,
)

SCHEMA_VERSION = 1
"""The newest schema this tool writes; an older file is migrated forward on open."""

# Each step takes the database from version N-1 to N; a new version appends a step and
# never edits an old one (an old file replays them all).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT NOT NULL DEFAULT '',
            duration REAL NOT NULL DEFAULT 0,
            inventory TEXT NOT NULL,
            inventory_key TEXT NOT NULL,
            inventory_sha256 TEXT NOT NULL,
            tool_version TEXT NOT NULL,
            state TEXT NOT NULL,
            hosts INTEGER NOT NULL,
            info TEXT NOT NULL,
            summary TEXT
        )""",
        "CREATE INDEX runs_by_inventory ON runs (inventory_key, started)",
        """CREATE TABLE results (
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            host TEXT NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (run_id, host)
        )""",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


class HistoryError(AuditorError):
    """The history database cannot be used (corrupt, locked, newer, not a regular file)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: history: {reason}")


class RunState(StrEnum):
    """Where a recorded run stands."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


def default_path(env: Mapping[str, str]) -> Path:
    """`$XDG_DATA_HOME/fleet-auditor/history.sqlite`, else under `~/.local/share`."""
    base = env.get("XDG_DATA_HOME", "")
    # The XDG spec: a relative value is invalid and must be ignored.
    if not base or not os.path.isabs(base):
        home = env.get("HOME") or str(Path.home())
        base = os.path.join(home, ".local", "share")
    return Path(base) / "fleet-auditor" / "history.sqlite"


def inventory_identity(inventory: str) -> tuple[str, str]:
    """(key, sha256) of an inventory: the key is its absolute path (what "the same
    inventory" means for retention and diffs), the hash its content when recorded (a file's
    bytes; for a directory, every file's relative name and bytes in name order)."""
    if not inventory:
        return "", ""
    path = Path(inventory)
    # abspath, not resolve: "../prod.ini" and "prod.ini" from its own directory are the
    # same inventory, but a link is the user's name for it and is kept.
    key = os.path.abspath(inventory)
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            for item in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(str(item.relative_to(path)).encode("utf-8", "replace") + b"\0")
                digest.update(item.read_bytes())
        else:
            digest.update(path.read_bytes())
    except OSError:
        return key, ""
    return key, digest.hexdigest()


def _sqlite_reason(exc: sqlite3.Error) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "locked" in text or "busy" in text:
        return f"{text} (another process held it past the busy timeout)"
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return f"{text} (corrupt, or not a history file)"
    return text


def _create_file(path: Path) -> None:
    """Create the database file owner-only if it does not exist, never through a link;
    an existing entry must be a regular file this user owns."""
    parent = path.parent
    if not parent.exists():
        # Only the history's own directory is made, owner-only.
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        where = parent.stat()
    except OSError as exc:
        raise HistoryError(path, f"cannot use its directory: {exc.strerror}") from None
    # SQLite reopens the file (and its -wal and -shm files) by name: in a directory others
    # may write to without the sticky bit, they could swap a link in after these checks.
    if where.st_mode & 0o022 and not where.st_mode & stat.S_ISVTX:
        raise HistoryError(path, "its directory is writable by others; choose another place")
    for suffix in ("-wal", "-shm", "-journal"):
        side = Path(f"{path}{suffix}")
        try:
            st = side.lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise HistoryError(path, f"cannot check {side.name}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise HistoryError(path, f"{side.name} is not a regular file of this user's")
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the final component is a symbolic link
            raise HistoryError(path, "is a symbolic link; refusing to follow it") from None
        raise HistoryError(path, f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise HistoryError(path, "not a regular file")
        if st.st_uid != os.geteuid():
            raise HistoryError(path, "owned by another user")
        if st.st_mode & 0o022:
            raise HistoryError(path, "writable by group or others (chmod 600)")
    finally:
        os.close(fd)


class History:
    """One open history database. Use `History.open` (or as a context manager)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def open(cls, path: Path, busy_timeout: float = 30.0, create: bool = True) -> History:
        """Open (creating if `create`) and migrate the database; raises HistoryError with a
        one-line reason for a corrupt file, a newer schema, or a lock held past the timeout."""
        if not create and not os.path.lexists(path):
            raise HistoryError(path, "no such history file")
        # The same checks for reading: migrating an old file, or switching it to WAL, writes.
        _create_file(path)
        try:
            conn = sqlite3.connect(
                str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise HistoryError(path, _sqlite_reason(exc)) from None
        history = cls(path, conn)
        try:
            history._prepare()
        except sqlite3.Error as exc:
            conn.close()
            raise HistoryError(path, _sqlite_reason(exc)) from None
        except HistoryError:
            conn.close()
            raise
        return history

    def _prepare(self) -> None:
        conn = self._conn
        # Checks the header first: a file that is not SQLite fails here, before any write.
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise HistoryError(
                self.path,
                f"schema version {version} is newer than this tool's ({SCHEMA_VERSION}); "
                "use a newer auditor or another --history file",
            )
        # WAL: readers never block the writer, and two audits' writes interleave (each
        # waits out the other's short transactions up to the busy timeout).
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryError(self.path, f"cannot use write-ahead logging (journal mode {mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        # One write transaction now, even with nothing to migrate: a database another
        # process holds locked past the timeout is found before the run starts.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for number in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[number]:
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("SELECT count(*) FROM runs").fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    def _write(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise HistoryError(self.path, _sqlite_reason(exc)) from None

    def begin_run(self, info: RunInfo, hosts: int, inventory_key: str, sha256: str) -> None:
        self._write(
            "INSERT INTO runs (run_id, started, inventory, inventory_key, inventory_sha256,"
            " tool_version, state, hosts, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                info.run_id,
                info.started,
                info.inventory,
                inventory_key,
                sha256,
                info.tool_version,
                RunState.RUNNING,
                hosts,
                _dumps(info_to_dict(info)),
            ),
        )

    def add_results(self, run_id: str, results: Sequence[tuple[int, HostResult]]) -> None:
        """Record (inventory position, result) pairs in one short transaction."""
        rows = []
        for position, result in results:
            record = _finite(result_to_dict(result))
            if record["duration"] is None:
                record["duration"] = 0.0
            rows.append((run_id, position, result.host.name, _dumps(record)))
        try:
            with self._transaction():
                # OR IGNORE: a host is recorded once; the end of a run may offer it again.
                self._conn.executemany(
                    "INSERT OR IGNORE INTO results (run_id, position, host, record)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            raise HistoryError(self.path, _sqlite_reason(exc)) from None

    def abandon_run(self, run_id: str) -> None:
        """Mark a run whose audit stopped on an error as interrupted, with what it recorded."""
        self._write(
            "UPDATE runs SET state = ?, finished = ? WHERE run_id = ? AND state = ?",
            (
                RunState.INTERRUPTED,
                datetime.now(UTC).isoformat(timespec="seconds"),
                run_id,
                RunState.RUNNING,
            ),
        )

    def end_run(self, info: RunInfo, totals: Tally) -> None:
        state = RunState.INTERRUPTED if info.interrupted else RunState.FINISHED
        self._write(
            "UPDATE runs SET finished = ?, duration = ?, state = ?, info = ?, summary = ?"
            " WHERE run_id = ?",
            (
                info.finished,
                info.duration if math.isfinite(info.duration) else 0.0,
                state,
                _dumps(info_to_dict(info)),
                _dumps(_summary(totals)),
                info.run_id,
            ),
        )

    def prune(self, inventory_key: str, keep: int | None, keep_days: float | None) -> int:
        """Remove the inventory's runs beyond the newest `keep` and those started more than
        `keep_days` ago (never a run still being recorded); returns how many went."""
        rows = self._conn.execute(
            "SELECT run_id, started, state FROM runs WHERE inventory_key = ?"
            " ORDER BY started DESC, rowid DESC",
            (inventory_key,),
        ).fetchall()
        doomed: list[str] = []
        cutoff = None
        if keep_days is not None:
            cutoff = datetime.now(UTC) - timedelta(days=keep_days)
        for index, (run_id, started, state) in enumerate(rows):
            too_old = cutoff is not None and _parse_time(started) < cutoff
            # A run still being recorded (another audit's) is never counted out by --keep;
            # one "running" for longer than --keep-days is a process that died long ago.
            too_many = keep is not None and index >= keep and state != RunState.RUNNING
            if too_many or too_old:
                doomed.append(run_id)
        if doomed:
            try:
                with self._transaction():
                    for run_id in doomed:
                        self._conn.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
                        self._conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            except sqlite3.Error as exc:
                raise HistoryError(self.path, _sqlite_reason(exc)) from None
        return len(doomed)

    def _transaction(self) -> _Txn:
        return _Txn(self._conn)

    # --- reading ---------------------------------------------------------------------------

    def runs(self, inventory_key: str | None = None) -> tuple[RunRecord, ...]:
        """The recorded runs, newest first (only `inventory_key`'s when given)."""
        sql = (
            "SELECT run_id, started, finished, duration, inventory, inventory_key,"
            " inventory_sha256, tool_version, state, hosts, summary FROM runs"
        )
        params: tuple[str, ...] = ()
        if inventory_key is not None:
            sql += " WHERE inventory_key = ?"
            params = (inventory_key,)
        sql += " ORDER BY started DESC, rowid DESC"
        try:
            rows = self._conn.execute(sql, params).fetchall()
            return tuple(self._record(row) for row in rows)
        except sqlite3.Error as exc:
            raise HistoryError(self.path, _sqlite_reason(exc)) from None

    def _record(self, row: Sequence[Any]) -> RunRecord:
        (run_id, started, finished, duration, inventory, key, sha, version, state, hosts, summ) = (
            row
        )
        if summ is None:
            # Still running, or its process died: counted from what was recorded.
            run = self.load(run_id)
            summ = _dumps(_summary(count(run.info.targets, run.results)))
        data = json.loads(summ)
        return RunRecord(
            run_id=run_id,
            started=started,
            finished=finished,
            duration=float(duration),
            inventory=inventory,
            inventory_key=key,
            inventory_sha256=sha,
            tool_version=version,
            state=RunState(state),
            hosts=int(hosts),
            recorded=int(data["recorded"]),
            audited=int(data["audited"]),
            urls=tuple(
                UrlReadiness(
                    url=u["url"],
                    name=u["name"],
                    reachable=int(u["reachable"]),
                    audited=int(u["audited"]),
                    in_scope=int(u["in_scope"]),
                )
                for u in data["urls"]
            ),
        )

    def resolve(self, ref: str) -> str:
        """The run id `ref` names: a whole id or a unique prefix of one."""
        if not ref or any(c not in "0123456789abcdef" for c in ref.lower()):
            raise HistoryError(self.path, f"{ref!r} is not a run id")
        rows = self._conn.execute(
            "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ?", (len(ref), ref.lower())
        ).fetchall()
        if not rows:
            raise HistoryError(self.path, f"no run {ref}")
        if len(rows) > 1:
            raise HistoryError(self.path, f"run id {ref} is ambiguous ({len(rows)} runs)")
        return str(rows[0][0])

    def load(self, run_id: str) -> AuditRun:
        """The run as recorded, its hosts in inventory order, read from the database each
        time the results are iterated (one host in memory at a time); a run whose process
        died is marked interrupted and holds the hosts that finished. A record that does
        not read back raises HistoryError when it is reached."""
        try:
            row = self._conn.execute(
                "SELECT info, state FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise HistoryError(self.path, f"no run {run_id}")
            hosts = int(
                self._conn.execute(
                    "SELECT count(*) FROM results WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
            )
        except sqlite3.Error as exc:
            raise HistoryError(self.path, _sqlite_reason(exc)) from None
        try:
            info = info_from_dict(json.loads(row[0]))
        except (ValueError, RecursionError) as exc:
            raise HistoryError(self.path, f"run {run_id}: bad record: {exc}") from None
        if row[1] == RunState.RUNNING:
            info = replace(info, interrupted=True)
        return AuditRun(info=info, results=_RecordedResults(self, run_id, hosts, len(info.targets)))

    def _records(self, run_id: str) -> Iterator[str]:
        """The run's host records in inventory order, fetched a batch at a time."""
        try:
            cursor = self._conn.execute(
                "SELECT record FROM results WHERE run_id = ? ORDER BY position, host", (run_id,)
            )
            while batch := cursor.fetchmany(256):
                for (record,) in batch:
                    yield str(record)
        except sqlite3.Error as exc:
            raise HistoryError(self.path, _sqlite_reason(exc)) from None

    def previous(self, run_id: str) -> str | None:
        """The run of the same inventory recorded just before `run_id`, if any."""
        row = self._conn.execute(
            "SELECT r.run_id FROM runs r, runs me WHERE me.run_id = ?"
            " AND r.inventory_key = me.inventory_key AND r.state != ?"
            " AND (r.started < me.started OR (r.started = me.started AND r.rowid < me.rowid))"
            " ORDER BY r.started DESC, r.rowid DESC LIMIT 1",
            (run_id, RunState.RUNNING),
        ).fetchone()
        return None if row is None else str(row[0])

    def last_two(self, inventory_key: str | None = None) -> tuple[str, str]:
        """The two newest finished runs of one inventory (the newest run's, by default)."""
        runs = [r for r in self.runs(inventory_key) if r.state != RunState.RUNNING]
        if not runs:
            raise HistoryError(self.path, "no recorded runs")
        newest = runs[0]
        same = [r for r in runs if r.inventory_key == newest.inventory_key]
        if len(same) < 2:
            raise HistoryError(
                self.path, f"only one recorded run of {newest.inventory or 'this inventory'}"
            )
        return same[1].run_id, same[0].run_id


class _RecordedResults:
    """A recorded run's results, read from the history whenever they are iterated."""

    def __init__(self, history: History, run_id: str, hosts: int, targets: int) -> None:
        self._history = history
        self._run_id = run_id
        self._hosts = hosts
        self._targets = targets

    def __len__(self) -> int:
        return self._hosts

    def __iter__(self) -> Iterator[HostResult]:
        for record in self._history._records(self._run_id):
            try:
                yield result_from_dict(json.loads(record), self._targets)
            except (ValueError, RecursionError) as exc:
                raise HistoryError(
                    self._history.path, f"run {self._run_id}: bad record: {exc}"
                ) from None


class _Txn:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self._conn.execute("COMMIT" if kind is None else "ROLLBACK")


def _dumps(data: Any) -> str:
    # ensure_ascii: a lone surrogate from a host's output is kept as a \u escape, since
    # SQLite text must be valid UTF-8.
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None: a record read back is checked like a
    results file, which refuses them (no real timing is ever one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _summary(totals: Tally) -> dict[str, Any]:
    scope = totals.hosts - totals.skipped
    return {
        "recorded": totals.hosts,
        "audited": totals.audited,
        "urls": [
            {
                "url": s.target.url,
                "name": s.target.name,
                "reachable": s.reachable,
                "audited": s.audited,
                "in_scope": scope,
            }
            for s in totals.summaries()
        ],
    }


@dataclass(frozen=True)
class UrlReadiness:
    """One URL's counts in one run."""

    url: str
    name: str
    reachable: int
    audited: int
    in_scope: int
    """Hosts the gate counts: every host but the skipped ones, audited or not."""


@dataclass(frozen=True)
class RunRecord:
    """One recorded run as `auditor runs` lists it."""

    run_id: str
    started: str
    finished: str
    duration: float
    inventory: str
    inventory_key: str
    inventory_sha256: str
    tool_version: str
    state: RunState
    hosts: int
    recorded: int
    audited: int
    urls: tuple[UrlReadiness, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started": self.started,
            "finished": self.finished,
            "duration": self.duration,
            "state": self.state,
            "inventory": self.inventory,
            "inventory_path": self.inventory_key,
            "inventory_sha256": self.inventory_sha256,
            "tool_version": self.tool_version,
            "hosts": self.hosts,
            "recorded": self.recorded,
            "audited": self.audited,
            "readiness": [
                {
                    "url": u.url,
                    "name": u.name,
                    "reachable": u.reachable,
                    "audited": u.audited,
                    "in_scope": u.in_scope,
                    "percent": None if u.audited == 0 else 100.0 * u.reachable / u.audited,
                }
                for u in self.urls
            ],
        }


class HistoryRecorder:
    """A sink of the results stream that writes the run into the history as it goes.

    A write that fails during the run (the database locked past the timeout, a full disk)
    is kept in `error` and stops further writes; the audit goes on and writes its reports,
    and the caller reports the error afterwards.

    Batches are written by a thread of their own: a commit that waits for another audit's
    write, or a checkpoint's fsync, never stalls the event loop that keeps every host's
    deadline. The run's first and last records are written in the caller's thread.
    """

    # Results are written in small batches: a commit per host costs more than the host's
    # record at fleet scale, and each batch is one short transaction, so another audit
    # writing the same file waits milliseconds, never the length of a run.
    BATCH = 64
    BATCH_SECONDS = 0.5

    def __init__(self, history: History, hosts: int) -> None:
        self.history = history
        self._hosts = hosts
        self._run_id = ""
        self._pending: list[tuple[int, HostResult]] = []
        self._flushed = time.monotonic()
        self.error: HistoryError | None = None
        self.inventory_key = ""
        self._queue: queue.Queue[list[tuple[int, HostResult]] | None] = queue.Queue()
        self._writer: threading.Thread | None = None

    def _guard(self, write: Any, *args: Any) -> None:
        if self.error is not None:
            return
        try:
            write(*args)
        except HistoryError as exc:
            self.error = exc

    def start(self, info: RunInfo) -> None:
        self._run_id = info.run_id
        key, sha = inventory_identity(info.inventory)
        self.inventory_key = key
        self._guard(self.history.begin_run, info, self._hosts, key, sha)
        self._writer = threading.Thread(target=self._write_batches, name="history", daemon=True)
        self._writer.start()

    def _write_batches(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                self._guard(self.history.add_results, self._run_id, batch)
            finally:
                self._queue.task_done()

    def host(self, result: HostResult, position: int) -> None:
        """Record one host's result at its inventory position (in the next batch)."""
        self._pending.append((position, result))
        if (
            len(self._pending) >= self.BATCH
            or time.monotonic() - self._flushed >= self.BATCH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Hand the results not yet written to the writer (written in the caller's thread
        when there is no writer)."""
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        if not pending:
            return
        if self._writer is None:
            self._guard(self.history.add_results, self._run_id, pending)
        else:
            self._queue.put(pending)

    def drain(self) -> None:
        """Wait until every batch handed to the writer is written (or has failed)."""
        self._queue.join()

    def _stop(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    def abandon(self) -> None:
        """The audit stopped on an error: keep what finished, and say it was interrupted."""
        if self._run_id:
            self.flush()
            self._stop()
            self._guard(self.history.abandon_run, self._run_id)

    def end(self, info: RunInfo, totals: Tally) -> None:
        """The run ended: write what is pending, then the run's final record and counts (the
        stream has offered every host of the run exactly once)."""
        self.flush()
        self._stop()
        self._guard(self.history.end_run, info, totals)


# --- what the HTML report shows about the past --------------------------------------------


@dataclass(frozen=True)
class TrendPoint:
    """One run's readiness for one URL."""

    run_id: str
    started: str
    ready: int
    total: int
    """Hosts in scope (the gate's denominator: skipped hosts excluded)."""


@dataclass(frozen=True)
class UrlTrend:
    url: str
    name: str
    points: tuple[TrendPoint, ...]
    """Oldest first, ending with the run itself."""


@dataclass(frozen=True)
class RunContext:
    """What the history adds to a run's report: the changes since the previous run of the
    same inventory (None when there is none) and per-URL readiness over the last runs."""

    previous_run_id: str | None
    changes: tuple[Change, ...] | None
    trends: tuple[UrlTrend, ...]


def run_context(history: History, run_id: str, last: int = 10) -> RunContext:
    """Changes since the previous run and readiness trends over the last `last` runs of the
    same inventory, up to and including `run_id`."""
    run = history.load(run_id)
    previous = history.previous(run_id)
    changes: tuple[Change, ...] | None = None
    if previous is not None:
        found: RunDiff = diff_runs(history.load(previous), run)
        changes = found.changes
    me = next(r for r in history.runs() if r.run_id == run_id)
    chain = [
        r
        for r in history.runs(me.inventory_key)
        if r.state != RunState.RUNNING or r.run_id == run_id
    ]
    chain = list(_up_to(chain, run_id))[:last]
    chain.reverse()
    trends = []
    for target in run.info.targets:
        points = tuple(
            TrendPoint(r.run_id, r.started, u.reachable, u.in_scope)
            for r in chain
            for u in r.urls
            if u.url == target.url
        )
        trends.append(UrlTrend(target.url, target.name, points))
    return RunContext(previous, changes, tuple(trends))


def _up_to(runs: Sequence[RunRecord], run_id: str) -> Iterator[RunRecord]:
    """Newest-first `runs` from `run_id` on (older ones), skipping newer runs."""
    seen = False
    for record in runs:
        if record.run_id == run_id:
            seen = True
        if seen:
            yield record


__all__ = [
    "SCHEMA_VERSION",
    "History",
    "HistoryError",
    "HistoryRecorder",
    "RunContext",
    "RunRecord",
    "TrendPoint",
    "UrlReadiness",
    "UrlTrend",
    "default_path",
    "inventory_identity",
    "run_context",
]
