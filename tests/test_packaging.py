"""The wheel carries what the tool needs at run time: templates, probe scripts, type marker;
and reports render from it in any working directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_templates_and_probes_and_renders_from_anywhere(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "auditor/templates/report.html.j2",
        "auditor/probes/probe.sh",
        "auditor/probes/probe.ps1",
        "auditor/py.typed",
    ):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "bench/")) for n in names)

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import auditor; assert auditor.__file__.startswith(sys.argv[1]), auditor.__file__;"
        "from auditor.results import AuditRun, RunInfo;"
        "from auditor.reporters.html import HtmlReporter;"
        "from auditor.probes.posix import probe_source;"
        "html = HtmlReporter().render(AuditRun(RunInfo(run_id='x', started='now'), ()));"
        "assert '<html' in html and 'auditor_main' in probe_source()"
    )
    subprocess.run([sys.executable, "-c", script, str(unpacked)], check=True, cwd=elsewhere)
