"""The README stays true to the tree: every test it cites exists, and its layout table names
every module of the package and of the lab."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

_CITATION = re.compile(r"`(tests/[\w/]+\.py)((?:::[\w\[\]-]+)?)`((?:,? `::[\w\[\]-]+`)*)")


def test_every_test_the_readme_cites_exists() -> None:
    missing = []
    for match in _CITATION.finditer(README):
        path = ROOT / match.group(1)
        if not path.is_file():
            missing.append(match.group(1))
            continue
        names = [match.group(2)[2:]] if match.group(2) else []
        names += re.findall(r"`::([\w\[\]-]+)`", match.group(3))
        source = path.read_text(encoding="utf-8")
        for name in names:
            if not re.search(rf"def {re.escape(name.split('[')[0])}\b", source):
                missing.append(f"{match.group(1)}::{name}")
    assert missing == []


def test_the_layout_table_names_every_module() -> None:
    layout = README[README.index("## Development") :]
    unnamed = []
    for path in sorted((ROOT / "auditor").iterdir()):
        if path.name.startswith("_") or path.name == "py.typed":
            continue
        if path.suffix == ".py" or (path / "__init__.py").is_file():
            name = path.name if path.suffix == ".py" else path.name + "/"
            if f"`auditor/{name}`" not in layout and f"`{name}`" not in layout:
                unnamed.append(path.name)
    assert unnamed == []
    assert "`lab/`" in layout
