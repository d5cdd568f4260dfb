"""The package's shape, enforced: imports go down the layers, never up or sideways.

An AST walk over every module of `auditor` (function-level imports included) checks that:
- the domain imports no pipeline stage;
- each stage imports only the domain and the layers below it, and siblings on one layer
  (inventory, targets, transports, probes) never import each other;
- nothing imports the CLI, and nothing in the product imports the lab (`auditor_lab`);
- the lab is the product's client, never the reverse; every module has a layer, so a new one
  must be placed in this table before it can land.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "auditor"
LAB = ROOT / "lab" / "auditor_lab"

# (layer, component): component names are module names or package prefixes. A module may
# import its own component, the domain, and any component on a strictly lower layer.
LAYERS: tuple[tuple[int, str], ...] = (
    # The domain: types, verdict rules and small safe-I/O helpers every stage shares.
    (0, "auditor"),
    (0, "auditor.errors"),
    (0, "auditor.outcomes"),
    (0, "auditor.models"),
    (0, "auditor.classify"),
    (0, "auditor.agent"),
    (0, "auditor.textsafe"),
    (0, "auditor.material"),
    (0, "auditor.yamlbound"),
    (0, "auditor.secret"),
    (0, "auditor.reportdir"),
    (0, "auditor.inventory.values"),
    # Reading the inputs, and the two tools the scheduler drives: siblings, independent.
    (1, "auditor.inventory"),
    (1, "auditor.targets"),
    (1, "auditor.transports"),
    (1, "auditor.probes"),
    # One task per host: runs the transports and the probes.
    (2, "auditor.scheduler"),
    # What comes out, in order: the results stream, the figures, the reports.
    (3, "auditor.results"),
    (4, "auditor.aggregate"),
    # Judging a run, and comparing two: pure functions over runs.
    (5, "auditor.gate"),
    (5, "auditor.diff"),
    # The run history: fed from the results stream; reporters may show what it holds.
    (6, "auditor.history"),
    (7, "auditor.reporters"),
    # The edge: settings built once from every source; one audit end to end; resolution.
    (8, "auditor.settings"),
    (9, "auditor.audit"),
    (9, "auditor.resolve"),
    # Sites: the task a runner receives, and the broker with the run's ledger; then the two
    # ends of a site run, the runner and the coordinator.
    (9, "auditor.sites"),
    (9, "auditor.broker"),
    (10, "auditor.worker"),
    (10, "auditor.coordinator"),
    (11, "auditor.cli"),
)


def component(module: str) -> tuple[int, str] | None:
    """The most specific entry of LAYERS that `module` belongs to."""
    best: tuple[int, str] | None = None
    for layer, name in LAYERS:
        if module == name or (module.startswith(name + ".") and name != "auditor"):
            if best is None or len(name) > len(best[1]):
                best = (layer, name)
    return best


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in `tree`, relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            # `from auditor import cli` imports the module auditor.cli.
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """Every forbidden import in one module of the product."""
    own = component(module)
    if own is None:
        return [f"{module}: not placed in LAYERS (tests/test_architecture.py)"]
    found = []
    seen: set[tuple[int, tuple[int, str] | str]] = set()
    for line, target in imports(ast.parse(source), module, is_package):
        root = target.split(".")[0]
        key = (line, component(target) or root)
        if key in seen:
            continue
        seen.add(key)
        if root == "auditor_lab":
            found.append(f"{module}:{line}: imports the lab ({target})")
            continue
        if root != "auditor":
            continue
        other = component(target)
        if other is None or other == own:
            continue
        layer, name = other
        if name == "auditor.cli":
            found.append(f"{module}:{line}: imports the CLI ({target})")
        elif layer >= own[0] and layer != 0:
            found.append(
                f"{module}:{line}: layer {own[0]} ({own[1]}) imports layer {layer} ({target})"
            )
    return found


def _modules(root: Path, prefix: Path) -> Iterable[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        yield module_name(path, prefix), path


def test_every_product_import_goes_down_the_layers() -> None:
    found = []
    for module, path in _modules(PACKAGE, ROOT):
        found += violations(module, path.read_text(), path.name == "__init__.py")
    assert found == []


def test_the_lab_uses_the_product_and_the_product_never_the_lab() -> None:
    uses_product = False
    for module, path in _modules(LAB, LAB.parent):
        for _line, target in imports(ast.parse(path.read_text()), module, False):
            uses_product |= target.split(".")[0] == "auditor"
            assert not target.startswith("auditor.cli"), f"{module} imports the product's CLI"
    assert uses_product


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("auditor.models", "from auditor.scheduler import Schedule\n", "layer 0"),
        ("auditor.aggregate", "from auditor.reporters.json import x\n", "layer 4"),
        ("auditor.transports.ssh", "from auditor.probes import Scrubber\n", "layer 1"),
        ("auditor.results", "def f():\n    from auditor import cli\n", "imports the CLI"),
        ("auditor.reporters.html", "import auditor_lab.fleet\n", "imports the lab"),
        ("auditor.transports.ssh", "from ..audit import AuditConfig\n", "layer 1"),
        ("auditor.newthing", "import os\n", "not placed in LAYERS"),
    ],
)
def test_the_checker_catches_each_kind_of_forbidden_import(
    module: str, source: str, expected: str
) -> None:
    (problem,) = violations(module, source)
    assert expected in problem


def test_the_checker_allows_what_the_layers_allow() -> None:
    assert violations("auditor.reporters.csv", "from auditor.aggregate import run_totals\n") == []
    assert violations("auditor.scheduler", "from auditor.transports.base import Transport\n") == []
    assert violations("auditor.transports.ssh", "from .sshconfig import X\n") == []
    assert violations("auditor.inventory.ini", "from auditor.inventory.values import V\n") == []
