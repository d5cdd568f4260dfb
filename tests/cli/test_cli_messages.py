"""Errors and warnings the CLI prints quote input files; no escape sequence, control, bidi or
zero-width character from a file ever reaches the terminal raw, and an error stays one line."""

from __future__ import annotations

import json
import re
import subprocess
import warnings
from pathlib import Path

import pytest

from tests.support.cli import BIN, audit

HOSTILE = (
    "a\x1b]0;pwned\x07\x1b[2J\x1b]8;;https://evil.example/\x1b\\b\x9b1m\u202ec\u200bd\u2066e\nf"
)
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _assert_clean_one_line(proc: subprocess.CompletedProcess[str], expect: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip("\n").split("\n")
    assert len(lines) == 1, proc.stderr
    assert not UNSAFE.search(proc.stderr), ascii(proc.stderr)
    assert expect in lines[0], ascii(proc.stderr)


def test_a_json_inventory_host_name_cannot_drive_the_terminal(tmp_path: Path) -> None:
    inv = tmp_path / "inv.json"
    inv.write_text(
        json.dumps(
            {
                "_meta": {"hostvars": {HOSTILE: {"ansible_port": "not-a-port"}}},
                "all": {"children": ["g"]},
                "g": {"hosts": [HOSTILE]},
            }
        )
    )
    proc = audit("-i", str(inv), "--url", "https://x.example/", "-o", str(tmp_path / "out"))
    _assert_clean_one_line(proc, "is not a number")
    assert "host ab c d e f:" in proc.stderr  # the text stays; escapes go, controls blank


def test_a_targets_file_key_cannot_drive_the_terminal(tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("box ansible_connection=local\n")
    targets = tmp_path / "targets.yml"
    targets.write_text(json.dumps([{"url": "https://x.example/", HOSTILE: 1}]))
    proc = audit("-i", str(inv), "--targets", str(targets), "-o", str(tmp_path / "out"))
    _assert_clean_one_line(proc, "unknown target field")


@pytest.mark.parametrize("command", ["report", "merge"])
def test_a_results_file_cannot_drive_the_terminal(tmp_path: Path, command: str) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"type": HOSTILE}) + "\n")
    proc = subprocess.run(
        [str(BIN / "auditor"), command, str(results), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _assert_clean_one_line(proc, f"{results}:1:")


def test_the_report_directory_name_in_an_error_is_sanitised(tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("box ansible_connection=local\n")
    out = tmp_path / "out\x1b[2J\u202e"
    out.mkdir()
    out.chmod(0o777)
    proc = audit("-i", str(inv), "--url", "https://x.example/", "-o", str(out))
    _assert_clean_one_line(proc, "writable by group or others")


def test_python_warnings_print_sanitised_through_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A library warning (urllib3 names the host it talks to) goes through the CLI's printer.
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    from auditor import cli

    cli._route_warnings()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"talking to {HOSTILE}", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.startswith("WARNING: UserWarning: talking to a"), ascii(err)
    assert err.count("\n") == 1 and not UNSAFE.search(err), ascii(err)
