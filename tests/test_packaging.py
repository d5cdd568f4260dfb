"""The wheel carries what the tool needs at run time: templates, probe scripts, type marker;
and reports render from it in any working directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _source_copy(tmp_path: Path) -> Path:
    """The tracked sources, copied: a build leaves build/ and egg-info behind, and those
    belong in the test's directory, not the checkout."""
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    copy = tmp_path / "src"
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def _wheel(tmp_path: Path, project: str = "") -> Path:
    """Build the wheel of the product (or of `project`, a subdirectory) from a copy."""
    source = _source_copy(tmp_path) / project
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def test_the_wheel_ships_templates_and_probes_and_renders_from_anywhere(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "auditor/templates/report.html.j2",
        "auditor/probes/probe.sh",
        "auditor/probes/probe.ps1",
        "auditor/py.typed",
    ):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    # The lab is its own distribution: no line of it ships in the product.
    assert not any("lab" in n.split("/")[0] or n.startswith("auditor/lab") for n in names), sorted(
        n for n in names if "lab" in n
    )
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert not any("cryptography" in r or "spnego" in r or "lab" in r for r in requires), requires

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import auditor; assert auditor.__file__.startswith(sys.argv[1]), auditor.__file__;"
        "from auditor.models import AuditRun, RunInfo;"
        "from auditor.reporters.html import HtmlReporter;"
        "from auditor.reporters.base import render;"
        "from auditor.probes.posix import probe_source;"
        "html = render(HtmlReporter(), AuditRun(RunInfo(run_id='x', started='now'), ()));"
        "assert '<html' in html and 'auditor_main' in probe_source()"
    )
    subprocess.run([sys.executable, "-c", script, str(unpacked)], check=True, cwd=elsewhere)


def test_the_lab_is_a_second_distribution_that_depends_on_the_product(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, "lab")
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert "auditor_lab/wsman.py" in names and "auditor_lab/cli.py" in names
    assert not any(n.startswith("auditor/") for n in names), (
        "the lab wheel must not carry the product"
    )
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = archive.read(metadata).decode()
    assert "Requires-Dist: fleet-auditor" in text
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "auditor-lab = auditor_lab.cli:main" in archive.read(entry_points).decode()


def test_the_product_command_has_no_lab_subcommand() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auditor.cli", "lab", "up"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "No such command 'lab'" in done.stderr
