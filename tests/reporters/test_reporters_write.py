"""write_reports: every format, atomically, with the requested file mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TextIO

import pytest

from auditor.errors import InputError
from auditor.models import AuditRun
from auditor.reporters import REPORTERS, write_reports
from auditor.reporters.base import Reporter
from auditor.reporters.csv import CsvReporter
from auditor.results import ResultsWriter
from tests.reporters.fleet import sample_run


def test_registry() -> None:
    assert list(REPORTERS) == ["html", "csv", "json", "junit", "prom"]
    assert {cls.filename for cls in REPORTERS.values()} == {
        "report.html",
        "report.csv",
        "report.json",
        "junit.xml",
        "report.prom",
    }
    assert all(issubclass(cls, Reporter) for cls in REPORTERS.values())


def test_writes_every_format(tmp_path: Path) -> None:
    paths = write_reports(sample_run(), tmp_path, ["html", "csv", "json", "junit"])
    assert [p.name for p in paths] == ["report.html", "report.csv", "report.json", "junit.xml"]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)  # no temp files left
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["hosts"]
    # The CSV keeps its CRLF record separators on disk.
    assert (tmp_path / "report.csv").read_bytes().split(b"\n")[0].endswith(b"\r")


def test_mode_and_duplicates(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        paths = write_reports(sample_run(), tmp_path, ["csv", "csv"], mode=0o640)
    finally:
        os.umask(old)
    assert [p.name for p in paths] == ["report.csv"]
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o640


def test_replaces_existing_files_and_symlinks(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "report.csv").symlink_to(victim)
    (tmp_path / "report.json").write_text("old")
    write_reports(sample_run(), tmp_path, ["csv", "json"])
    assert victim.read_text() == "keep me"  # the link was replaced, not followed
    assert not (tmp_path / "report.csv").is_symlink()
    assert (tmp_path / "report.csv").read_text(encoding="utf-8").startswith("host,address")
    assert (tmp_path / "report.json").read_text(encoding="utf-8") != "old"


def test_unknown_format_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown report format 'pdf'"):
        write_reports(sample_run(), tmp_path, ["csv", "pdf"])
    assert os.listdir(tmp_path) == []


def test_render_failure_leaves_directory_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "report.csv").write_text("previous")

    def boom(self: Reporter, run: AuditRun, out: TextIO) -> None:
        # Half a report written, then a failure: neither it nor its temporary file stays.
        out.write("{half")
        raise RuntimeError("boom")

    monkeypatch.setattr(REPORTERS["json"], "write", boom)
    with pytest.raises(RuntimeError):
        write_reports(sample_run(), tmp_path, ["csv", "json"])
    assert os.listdir(tmp_path) == ["report.csv"]
    assert (tmp_path / "report.csv").read_text() == "previous"


def test_write_failure_cleans_up_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_replace(
        src: str | os.PathLike[str], dst: str | os.PathLike[str], **dir_fds: int | None
    ) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_reports(sample_run(), tmp_path, ["csv"])
    assert os.listdir(tmp_path) == []


def test_surrogates_never_break_writing(tmp_path: Path) -> None:
    class Broken(CsvReporter):
        def write(self, run: AuditRun, out: TextIO) -> None:
            out.write("x\ud800y\n")

    REPORTERS["broken-test"] = Broken
    try:
        (path,) = write_reports(sample_run(), tmp_path, ["broken-test"])
    finally:
        del REPORTERS["broken-test"]
    assert path.read_bytes() == b"x?y\n"


def test_a_directory_another_user_owns_is_refused_before_rendering(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory away")
    os.chown(tmp_path, 65534, 65534)
    with pytest.raises(InputError, match="owned by uid 65534"):
        write_reports(sample_run(), tmp_path, ["csv"])
    assert os.listdir(tmp_path) == []


def test_a_group_writable_directory_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o770)
    with pytest.raises(InputError, match="writable by group or others"):
        write_reports(sample_run(), tmp_path, ["csv"])
    assert os.listdir(tmp_path) == []


def test_results_writer_replaces_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "out").mkdir(mode=0o700)
    planted = tmp_path / "out" / "results.jsonl"
    planted.symlink_to(victim)
    writer = ResultsWriter(planted, 0o600)
    writer.start(sample_run().info)
    writer.close()
    assert victim.read_text() == "keep me"
    assert not planted.is_symlink()
    assert json.loads(planted.read_text(encoding="utf-8"))["type"] == "run"


def test_a_report_directory_swapped_during_the_run_is_refused(tmp_path: Path) -> None:
    """Whoever can write the parent of `-o` may rename the prepared directory away and put
    another one (owned by the same user, owner-only) in its place between the run's opens:
    the results stream and the reports refuse to write into it."""
    from auditor.audit import prepare_out_dir

    out = tmp_path / "out"
    pinned = prepare_out_dir(out, False, 0o600)
    out.rename(tmp_path / "moved")
    out.mkdir(mode=0o700)
    (out / "report.html").write_text("someone else's file\n")
    with pytest.raises(InputError, match="replaced during the run"):
        ResultsWriter(out / "results.jsonl", 0o600, pinned)
    with pytest.raises(InputError, match="replaced during the run"):
        write_reports(sample_run(), out, ["html"], 0o600, pinned)
    assert (out / "report.html").read_text() == "someone else's file\n"
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    # The directory the run prepared is still accepted wherever it is named from.
    write_reports(sample_run(), tmp_path / "moved", ["html"], 0o600, pinned)


def test_a_result_missing_an_observation_reads_as_an_error_in_every_figure() -> None:
    """A results file cut short (fewer observations than targets) is an error for the missing
    URL in the per-URL figures, never an IndexError and never reachable."""
    from auditor.aggregate import summarize_targets
    from auditor.models import (
        AuditedHost,
        AuditRun,
        Connection,
        Host,
        Observation,
        Platform,
        RunInfo,
        Target,
    )
    from auditor.outcomes import Outcome

    targets = (Target("a", "https://a.example/"), Target("b", "https://b.example/"))
    host = AuditedHost(
        Host("h1", "10.0.0.1", Connection.LOCAL, Platform.LINUX),
        (Observation("https://a.example/", Outcome.REACHABLE),),
    )
    run = AuditRun(RunInfo(run_id="r", started="now", targets=targets), (host,))
    first, second = summarize_targets(run)
    assert first.reachable == 1
    assert second.reachable == 0 and dict(second.outcomes) == {Outcome.ERROR: 1}
