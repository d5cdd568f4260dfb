"""The history database itself: created owner-only and never through a link, migrated
forward, refused with one line when corrupt, newer or locked; runs read back exactly."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from auditor.aggregate import count
from auditor.diff import ChangeKind
from auditor.history import (
    SCHEMA_VERSION,
    History,
    HistoryError,
    HistoryRecorder,
    RunState,
    default_path,
    run_context,
)
from auditor.models import AuditedHost, AuditRun
from auditor.outcomes import Outcome
from tests.reporters.fleet import TARGETS, observe, sample_run


def record(history: History, run: AuditRun, inventory: str | None = None) -> None:
    if inventory is not None:
        run = replace(run, info=replace(run.info, inventory=inventory))
    recorder = HistoryRecorder(history, len(run.results))
    recorder.start(run.info)
    # finishing order is not inventory order
    for position, result in reversed(list(enumerate(run.results))):
        recorder.host(result, position)
    recorder.end(run.info, count(run.info.targets, run.results))
    assert recorder.error is None


def _finite_only(run: AuditRun) -> AuditRun:
    """The sample without its NaN timings (a results file refuses them too)."""
    return replace(run, results=tuple(r for r in run.results if r.duration == r.duration))


def test_a_run_reads_back_exactly_as_recorded(tmp_path: Path) -> None:
    run = _finite_only(sample_run())
    with History.open(tmp_path / "h.sqlite") as history:
        record(history, run)
        loaded = history.load(run.info.run_id)
        # Read while the history is open: a loaded run reads its records when iterated.
        back = replace(loaded, results=tuple(loaded.results))
    assert back == run
    assert [r.host.name for r in back.results] == [r.host.name for r in run.results]


def test_non_finite_timings_are_stored_as_unknown_and_the_run_still_reads_back(
    tmp_path: Path,
) -> None:
    run = sample_run()
    with History.open(tmp_path / "h.sqlite") as history:
        record(history, run)
        loaded = history.load(run.info.run_id)
        # Read while the history is open: a loaded run reads its records when iterated.
        back = replace(loaded, results=tuple(loaded.results))
    (odd,) = [r for r in back.results if r.host.name.startswith("<img")]
    assert odd.duration == 0.0
    assert isinstance(odd, AuditedHost) and odd.observations[1].time_total is None
    assert len(back.results) == len(run.results)


def test_the_file_is_created_owner_only_in_an_owner_only_directory(tmp_path: Path) -> None:
    path = tmp_path / "data" / "fleet-auditor" / "history.sqlite"
    with History.open(path) as history:
        record(history, sample_run())
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_symlink_in_place_of_the_database_is_refused_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "h.sqlite"
    link.symlink_to(victim)
    with pytest.raises(HistoryError, match="symbolic link"):
        History.open(link)
    assert victim.read_text() == "precious"
    dangling = tmp_path / "d.sqlite"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(HistoryError, match="symbolic link"):
        History.open(dangling)
    assert not (tmp_path / "nowhere").exists()


def test_a_planted_write_ahead_log_link_is_refused_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    Path(f"{tmp_path / 'h.sqlite'}-wal").symlink_to(victim)
    with pytest.raises(HistoryError, match=r"h\.sqlite-wal is not a regular file"):
        History.open(tmp_path / "h.sqlite")
    assert victim.read_text() == "precious"


def test_a_directory_others_can_write_without_the_sticky_bit_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(HistoryError, match="its directory is writable by others"):
        History.open(shared / "h.sqlite")
    shared.chmod(0o1777)  # like /tmp: nobody can rename another's file there
    History.open(shared / "h.sqlite").close()


def test_a_database_others_can_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    History.open(path).close()
    path.chmod(0o666)
    with pytest.raises(HistoryError, match="writable by group or others"):
        History.open(path)


def test_a_corrupt_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"this is not a database\n" * 100)
    path.chmod(0o600)
    with pytest.raises(HistoryError) as caught:
        History.open(path)
    assert (
        str(caught.value)
        == f"{path}: history: file is not a database (corrupt, or not a history file)"
    )


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    History.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        History.open(path)


def test_an_empty_database_is_migrated_forward_and_a_current_one_is_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite"
    sqlite3.connect(path).close()  # version 0: no tables
    path.chmod(0o600)
    with History.open(path) as history:
        record(history, sample_run())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with History.open(path) as history:
        assert [r.run_id for r in history.runs()] == [sample_run().info.run_id]


def test_a_lock_held_past_the_timeout_is_one_line_before_anything_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite"
    History.open(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(HistoryError, match="another process held it past the busy timeout"):
            History.open(path, busy_timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_write_failing_mid_run_is_kept_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    run = sample_run()
    history = History.open(path, busy_timeout=0.2)
    recorder = HistoryRecorder(history, len(run.results))
    recorder.start(run.info)
    recorder.host(run.results[0], 0)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        recorder.host(run.results[1], 1)  # must not raise
        recorder.end(run.info, count(run.info.targets, run.results))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert recorder.error is not None and "busy timeout" in str(recorder.error)
    history.close()


def test_results_are_written_in_batches_and_a_quiet_spell_flushes_at_once(
    tmp_path: Path,
) -> None:
    run = sample_run()
    with History.open(tmp_path / "h.sqlite") as history:
        recorder = HistoryRecorder(history, len(run.results))
        recorder.BATCH_SECONDS = 3600.0
        recorder.BATCH = 4
        recorder.start(run.info)
        for position, result in enumerate(run.results[:3]):
            recorder.host(result, position)
        recorder.drain()
        assert history.runs()[0].recorded == 0
        recorder.host(run.results[3], 3)
        recorder.drain()
        assert history.runs()[0].recorded == 4
        recorder.BATCH_SECONDS = 0.0  # as if the next host came after a quiet spell
        recorder.host(run.results[4], 4)
        recorder.drain()
        assert history.runs()[0].recorded == 5
        recorder.end(run.info, count(run.info.targets, run.results))
        assert recorder.error is None and history.runs()[0].recorded == len(run.results)


def test_a_write_waiting_for_another_writer_never_holds_up_the_caller(tmp_path: Path) -> None:
    import time

    run = sample_run()
    path = tmp_path / "h.sqlite"
    with History.open(path, busy_timeout=60.0) as history:
        recorder = HistoryRecorder(history, len(run.results))
        recorder.BATCH = 1
        recorder.start(run.info)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another audit's write, in progress
        try:
            t0 = time.monotonic()
            for position, result in enumerate(run.results):
                recorder.host(result, position)  # each one a batch for the writer, which must wait
            assert time.monotonic() - t0 < 5.0  # not the 60 s the writer may wait
        finally:
            holder.execute("COMMIT")
            holder.close()
        recorder.end(
            run.info, count(run.info.targets, run.results)
        )  # the writer waited the other write out
        assert recorder.error is None
        assert history.runs()[0].recorded == len(run.results)


def test_a_run_whose_process_died_reads_back_as_interrupted(tmp_path: Path) -> None:
    run = sample_run()
    with History.open(tmp_path / "h.sqlite") as history:
        recorder = HistoryRecorder(history, len(run.results))
        recorder.start(run.info)
        for position, result in enumerate(run.results[:3]):
            recorder.host(result, position)
        recorder.flush()  # what had been written when the process died
        recorder.drain()
        (listed,) = history.runs()
        loaded = history.load(run.info.run_id)
        # Read while the history is open: a loaded run reads its records when iterated.
        back = replace(loaded, results=tuple(loaded.results))
    assert listed.state == RunState.RUNNING and listed.recorded == 3
    assert back.info.interrupted is True and len(back.results) == 3


def test_a_run_stopped_by_an_error_is_marked_interrupted_and_pruned_like_any(
    tmp_path: Path,
) -> None:
    run = sample_run()
    with History.open(tmp_path / "h.sqlite") as history:
        recorder = HistoryRecorder(history, len(run.results))
        recorder.start(run.info)
        recorder.host(run.results[0], 0)
        recorder.abandon()
        (listed,) = history.runs()
        assert (listed.state, listed.recorded) == (RunState.INTERRUPTED, 1)
        assert history.prune(listed.inventory_key, keep=None, keep_days=1) == 1


def test_keep_never_counts_out_a_run_still_being_recorded(tmp_path: Path) -> None:
    base = sample_run()
    with History.open(tmp_path / "h.sqlite") as history:
        record(history, _at(base, "old", "2026-01-01T00:00:00+00:00", Outcome.REACHABLE))
        live = _at(base, "live", "2026-01-02T00:00:00+00:00", Outcome.REACHABLE)
        HistoryRecorder(history, 0).start(live.info)
        record(history, _at(base, "new", "2026-01-03T00:00:00+00:00", Outcome.REACHABLE))
        key = history.runs()[0].inventory_key
        assert history.prune(key, keep=1, keep_days=None) == 1
        assert [r.run_id for r in history.runs()] == ["new", "live"]


def _at(run: AuditRun, run_id: str, started: str, cdn: Outcome) -> AuditRun:
    """`run` with a new id and time, its first host seeing the CDN as `cdn`."""
    first = run.results[0]
    assert isinstance(first, AuditedHost)
    changed = replace(first, observations=(observe(TARGETS[0], cdn), *first.observations[1:]))
    return replace(
        run,
        info=replace(run.info, run_id=run_id, started=started, finished=started),
        results=(changed, *run.results[1:]),
    )


def test_retention_keeps_the_newest_runs_of_that_inventory_only(tmp_path: Path) -> None:
    base = sample_run()
    with History.open(tmp_path / "h.sqlite") as history:
        for day in range(1, 6):
            record(
                history,
                _at(base, f"a{day}", f"2026-01-0{day}T00:00:00+00:00", Outcome.REACHABLE),
                "a.ini",
            )
        record(history, _at(base, "b1", "2020-01-01T00:00:00+00:00", Outcome.REACHABLE), "b.ini")
        key = next(r.inventory_key for r in history.runs() if r.run_id == "a1")
        assert history.prune(key, keep=2, keep_days=None) == 3
        assert [r.run_id for r in history.runs()] == ["a5", "a4", "b1"]
        assert history.prune(key, keep=None, keep_days=1) == 2  # both are years old
        assert [r.run_id for r in history.runs()] == ["b1"]
    with sqlite3.connect(tmp_path / "h.sqlite") as conn:
        left = {row[0] for row in conn.execute("SELECT DISTINCT run_id FROM results")}
    assert left == {"b1"}


def test_run_context_gives_changes_since_the_previous_run_and_trends(tmp_path: Path) -> None:
    base = sample_run()
    with History.open(tmp_path / "h.sqlite") as history:
        record(history, _at(base, "r1", "2026-01-01T00:00:00+00:00", Outcome.REACHABLE), "a.ini")
        first = run_context(history, "r1")
        record(history, _at(base, "r2", "2026-01-02T00:00:00+00:00", Outcome.TIMEOUT), "a.ini")
        record(history, _at(base, "r3", "2026-01-03T00:00:00+00:00", Outcome.REACHABLE), "a.ini")
        second = run_context(history, "r2")
        third = run_context(history, "r3", last=2)
    assert first.previous_run_id is None and first.changes is None
    assert second.previous_run_id == "r1"
    assert second.changes is not None
    assert [(c.kind, c.host, c.url) for c in second.changes] == [
        (ChangeKind.REGRESSION, "web-01", TARGETS[0].url)
    ]
    assert third.changes is not None and [c.kind for c in third.changes] == [ChangeKind.FIX]
    cdn = second.trends[0]
    assert cdn.url == TARGETS[0].url
    assert [p.run_id for p in cdn.points] == ["r1", "r2"]
    assert cdn.points[0].ready == cdn.points[1].ready + 1
    assert cdn.points[0].total == len(base.results)
    assert [p.run_id for p in third.trends[0].points] == ["r2", "r3"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}, "/data/fleet-auditor/history.sqlite"),
        ({"HOME": "/home/u"}, "/home/u/.local/share/fleet-auditor/history.sqlite"),
        (
            {"XDG_DATA_HOME": "rel", "HOME": "/home/u"},
            "/home/u/.local/share/fleet-auditor/history.sqlite",
        ),
    ],
)
def test_the_default_location(env: dict[str, str], expected: str) -> None:
    assert default_path(env) == Path(expected)


def test_an_inventory_is_known_by_its_absolute_path_and_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from auditor.history import inventory_identity

    (tmp_path / "sub").mkdir()
    inv = tmp_path / "prod.ini"
    inv.write_text("[g]\nh1\n")
    monkeypatch.chdir(tmp_path / "sub")
    key, sha = inventory_identity("../prod.ini")
    assert key == str(inv) and sha == hashlib.sha256(b"[g]\nh1\n").hexdigest()
    assert inventory_identity(str(inv)) == (key, sha)


def test_the_test_session_never_writes_the_developers_history() -> None:
    assert os.environ["XDG_DATA_HOME"].startswith(
        os.path.realpath(os.environ.get("TMPDIR", "/tmp"))
    )
