"""The audit phase keeps counts, not results: each host's result goes to results.jsonl and
the finished run reads the results back from the file, lazily, as often as a report needs.

Real parts: the scheduler, the results stream and its file, the local transport running
the real probe against a loopback port, and the real reporters.
"""

from __future__ import annotations

import asyncio
import gc
import io
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.aggregate import SAMPLE, count
from auditor.audit import AuditConfig, execute, prepare_transports
from auditor.models import AuditRun, Connection, Host, HostResult, Platform, Target
from auditor.outcomes import HostOutcome
from auditor.reporters import REPORTERS, write_reports
from auditor.results import ResultsFile, read_results
from auditor.scheduler import Schedule
from tests.reporters.fleet import sample_run
from tests.support.loopback import Loopback, loopback_servers


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _skipped_hosts(count: int) -> tuple[Host, ...]:
    # A connection plugin with no transport here: the host's result is made without a
    # session, so a large fleet runs in a moment through the real scheduler and stream.
    return tuple(
        Host.from_vars(f"sw-{i:05d}", ("switches",), {"ansible_connection": "network_cli"})
        for i in range(count)
    )


def _out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    return out


def test_the_audit_phase_keeps_no_result_beyond_the_tallys_bounded_sample(tmp_path: Path) -> None:
    hosts = _skipped_hosts(SAMPLE + 300)
    targets = (Target(url="https://cdn.example.com/status", name="cdn"),)
    config = AuditConfig(hosts=hosts, targets=targets, out_dir=_out(tmp_path))
    seen: list[weakref.ref[HostResult]] = []

    def watch(result: HostResult) -> None:
        seen.append(weakref.ref(result))

    run, signum = execute(config, prepare_transports(config), on_result=watch)
    gc.collect()
    alive = sum(1 for ref in seen if ref() is not None)
    assert signum is None and len(seen) == len(hosts)
    # The tally keeps the first hosts of each kind by name (for the summaries that list
    # hosts); every other result is gone although the run is still held.
    assert alive <= SAMPLE
    # The run reads its results back from results.jsonl, in inventory order, every time.
    assert isinstance(run.results, ResultsFile)
    assert len(run.results) == len(hosts)
    first = [r.host.name for r in run.results]
    second = list(run.results)
    assert first == [h.name for h in hosts] == [r.host.name for r in second]
    assert all(r.outcome is HostOutcome.SKIPPED for r in second)  # type: ignore[union-attr]
    assert run.totals is not None and count(targets, run.results).hosts == len(hosts)


def test_hosts_are_taken_by_forks_workers_not_one_task_each(
    tmp_path: Path, servers: Loopback
) -> None:
    hosts = tuple(
        Host(f"box-{i:02d}", "127.0.0.1", Connection.LOCAL, Platform.LINUX) for i in range(60)
    )
    targets = (Target(url=f"http://127.0.0.1:{servers.closed_port}/", name="closed"),)
    config = AuditConfig(
        hosts=hosts,
        targets=targets,
        out_dir=_out(tmp_path),
        schedule=Schedule(forks=3, timeout=60.0),
    )
    tasks: list[int] = []

    def watch(result: HostResult) -> None:
        tasks.append(len(asyncio.all_tasks()))

    run, _ = execute(config, prepare_transports(config), on_result=watch)
    assert [r.host.name for r in run.results] == [h.name for h in hosts]
    assert all(r.audited for r in run.results)
    # 3 workers (each with the few tasks of its probe session), the run's own tasks: never
    # one task per host of the fleet.
    assert max(tasks) <= 20 < len(hosts)


class _Counted:
    """Results that count how often they are read through."""

    def __init__(self, results: tuple[HostResult, ...]) -> None:
        self.results = results
        self.passes = 0

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[HostResult]:
        self.passes += 1
        yield from self.results


@pytest.mark.parametrize("name", sorted(REPORTERS))
def test_every_format_reads_the_results_at_most_once(name: str) -> None:
    sample = sample_run()
    results = _Counted(tuple(sample.results))
    run = AuditRun(sample.info, results, totals=count(sample.info.targets, sample.results))
    REPORTERS[name]().write(run, io.StringIO())
    assert results.passes <= 1


def test_writing_every_report_of_a_run_read_back_counts_once_and_reads_once_per_format(
    tmp_path: Path,
) -> None:
    sample = sample_run()
    results = _Counted(tuple(sample.results))
    run = AuditRun(sample.info, results)
    formats = ["html", "csv", "json", "junit", "prom"]
    write_reports(run, _out(tmp_path), formats)
    # One pass to count the run, then one per format that lists hosts (prom lists none).
    assert results.passes == 1 + 4


def test_a_results_file_is_checked_and_counted_in_one_pass_then_read_lazily(
    tmp_path: Path,
) -> None:
    hosts = _skipped_hosts(40)
    config = AuditConfig(hosts=hosts, targets=(), out_dir=_out(tmp_path))
    execute(config, prepare_transports(config))
    counted: list[str] = []
    run = read_results(config.out_dir / "results.jsonl", lambda _, r: counted.append(r.host.name))
    assert counted == [h.name for h in hosts]
    assert isinstance(run.results, ResultsFile)
    assert [r.host.name for r in run.results] == counted
