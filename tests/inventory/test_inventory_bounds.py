"""Hostile inventories and targets files are refused fast, in bounded time and memory.

YAML alias bombs, inventories that amplify into millions of hosts, long chains of nested
groups, names that are not valid text, and names that carry terminal escapes: each is a
real file given to the installed commands (or to the loader), and each ends in a one-line
error with exit status 2, or in output that is safe to print.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.inventory import InventoryLimits, load_inventory
from auditor.yamlbound import expanded_size
from tests.support.cli import BIN

# "Billion laughs": nine levels of nine aliases, 9^9 = 387 million strings in 600 bytes.
BILLION_LAUGHS = "\n".join(
    [
        "all:",
        "  vars:",
        '    l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"    l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)),
        "    boom: *l8",
        "  hosts:",
        "    h1:",
        "",
    ]
)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _one_line_exit_2(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_the_billion_laughs_file_is_small() -> None:
    assert len(BILLION_LAUGHS.encode()) < 700


@pytest.mark.parametrize("command", ["inventory", "audit"])
def test_a_yaml_alias_bomb_inventory_is_refused_fast(tmp_path: Path, command: str) -> None:
    bomb = tmp_path / "bomb.yml"
    bomb.write_text(BILLION_LAUGHS)
    args = ("auditor", "inventory", "-i", str(bomb), "--list")
    if command == "audit":
        args = ("audit", "-i", str(bomb), "-o", str(tmp_path / "out"))
    started = time.monotonic()
    proc = _run(*args)
    # Generous: the refusal is a linear walk over ~100 nodes; the bomb itself never ends.
    assert time.monotonic() - started < 120
    _one_line_exit_2(proc, str(bomb), "aliases expand")
    assert not (tmp_path / "out").exists()


def test_a_yaml_alias_bomb_in_a_targets_file_is_refused(tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("box ansible_connection=local\n")
    targets = tmp_path / "targets.yml"
    body = ["x0: &x0 [200, 204, 301, 302, 200, 204, 301, 302, 200]"]
    body += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 9)]
    targets.write_text(
        "anchors:\n"
        + "".join(f"  {line}\n" for line in body)
        + "targets:\n  - url: https://example.com/\n    expected_status: *x8\n"
    )
    assert len(targets.read_bytes()) < 700
    proc = _run("audit", "-i", str(inv), "--targets", str(targets), "-o", str(tmp_path / "o"))
    _one_line_exit_2(proc, str(targets), "aliases expand")


def test_a_tree_of_aliased_children_is_refused(tmp_path: Path) -> None:
    """Each level names the previous level's group twice: the tree doubles per level."""
    lines = ["all:", "  children:", "    g0: &g0", "      hosts: {h1: }"]
    for level in range(1, 30):
        lines += [
            f"    g{level}: &g{level}",
            "      children:",
            f"        a{level}: *g{level - 1}",
            f"        b{level}: *g{level - 1}",
        ]
    tree = tmp_path / "tree.yml"
    tree.write_text("\n".join(lines) + "\n")
    assert len(tree.read_bytes()) < 2000
    started = time.monotonic()
    with pytest.raises(InputError, match="aliases expand"):
        load_inventory(tree)
    assert time.monotonic() - started < 60


def test_aliases_used_in_proportion_are_fine(tmp_path: Path) -> None:
    """A `vars: &common` aliased by every host is what anchors are for."""
    hosts = "".join(f"    h{i}: *common\n" for i in range(2000))
    inv = tmp_path / "fleet.yml"
    inv.write_text(
        "all:\n  vars:\n    base: &common {ansible_user: ops, ansible_port: 2222}\n"
        "  hosts:\n" + hosts
    )
    inventory = load_inventory(inv)
    assert len(inventory.hosts) == 2000
    assert inventory.hosts[-1].port == 2222


def test_expanded_size_counts_each_alias_as_written_out() -> None:
    import yaml

    node = yaml.compose("a: &x [1, 2]\nb: *x\nc: [*x, *x]\n")
    distinct, expanded = expanded_size(node)
    # mapping + 3 keys + list x (1 + 2 items) + list c; x written out 4 times
    assert distinct == 1 + 3 + 3 + 1
    assert expanded == 1 + 3 + 4 * 3 + 1


def test_ten_range_lines_cannot_make_a_million_hosts(tmp_path: Path) -> None:
    inv = tmp_path / "million.ini"
    inv.write_text("[w]\n" + "".join(f"r{i}-[0:99999]\n" for i in range(10)))
    proc = _run("auditor", "inventory", "-i", str(inv), "--graph")
    line = _one_line_exit_2(proc, f"{inv}:4:", "more than 200000 hosts", "--max-hosts")
    assert line


def test_the_host_and_group_caps_are_configurable(tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("[a]\nh[1:5]\n[b]\nh6\n[c]\nh7\n")
    proc = _run("auditor", "inventory", "-i", str(inv), "--max-hosts", "6")
    _one_line_exit_2(proc, f"{inv}:6:", "more than 6 hosts")
    env = {**os.environ, "AUDITOR_MAX_GROUPS": "2"}
    proc = _run("auditor", "inventory", "-i", str(inv), env=env)
    _one_line_exit_2(proc, f"{inv}:5:", "more than 2 groups", "--max-groups")
    proc = _run("audit", "-i", str(inv), "--max-hosts", "3", "-o", str(tmp_path / "o"))
    _one_line_exit_2(proc, "more than 3 hosts")
    assert len(load_inventory(inv, InventoryLimits(max_hosts=7, max_groups=3)).hosts) == 7


def _chain_ini(length: int) -> str:
    """Groups g0 > g1 > ... > g(length-1), a host at the bottom and one on top."""
    parts = ["[g0]\ntop\n"]
    parts += [f"[g{i}:children]\ng{i + 1}\n" for i in range(length - 1)]
    parts.append(f"[g{length - 1}]\nbottom\n")
    return "".join(parts)


def _chain_yaml(length: int) -> str:
    """The same chain in YAML, each group at top level naming the next as its child."""
    parts = [f"g{i}:\n  children:\n    g{i + 1}:\n" for i in range(length - 1)]
    parts.append(f"g{length - 1}:\n  hosts:\n    bottom:\n")
    return "all:\n  hosts:\n    top:\n" + "".join(parts)


def _peak_memory(path: Path) -> int:
    tracemalloc.start()
    try:
        inventory = load_inventory(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bottom = next(h for h in inventory.hosts if h.name == "bottom")
    assert len(bottom.groups) == sum(1 for g in inventory.groups if g.startswith("g"))
    return peak


@pytest.mark.parametrize("make", [_chain_ini, _chain_yaml], ids=["ini", "yaml"])
def test_a_long_chain_of_groups_resolves_in_linear_memory(tmp_path: Path, make: object) -> None:
    """Memory is the deterministic measure: per-group ancestor sets (the old way) make it
    grow with the square of the chain, about 25 times from 1,000 to 5,000 groups."""
    assert callable(make)
    small, large = tmp_path / "small.inv", tmp_path / "large.inv"
    small.write_text(make(1000))
    large.write_text(make(5000))
    ratio = _peak_memory(large) / _peak_memory(small)
    assert ratio < 10, ratio  # linear gives about 5


def test_a_long_chain_of_groups_resolves_in_linear_time(tmp_path: Path) -> None:
    """A generous bound relative to a smaller chain: quadratic work is 25 times slower.

    The garbage collector is off while timing: its cost depends on everything else the
    test process holds, not on the algorithm under test.
    """
    small, large = tmp_path / "small.ini", tmp_path / "large.ini"
    small.write_text(_chain_ini(1000))
    large.write_text(_chain_ini(5000))

    def best(path: Path) -> float:
        times = []
        for _ in range(5):
            gc.collect()
            gc.disable()
            try:
                started = time.perf_counter()
                load_inventory(path)
                times.append(time.perf_counter() - started)
            finally:
                gc.enable()
        return min(times)

    best(small)  # warm up imports and caches
    assert best(large) / best(small) < 12  # linear gives about 5


def test_a_cycle_in_a_long_chain_names_the_link_that_closed_it(tmp_path: Path) -> None:
    inv = tmp_path / "cycle.ini"
    inv.write_text(_chain_ini(300) + "[g299:children]\ng0\n")
    with pytest.raises(InputError) as caught:
        load_inventory(inv)
    message = str(caught.value)
    assert message.startswith(f"{inv}:{2 + 2 * 299 + 2 + 2}: group 'g0' in 'g299' makes a cycle")
    assert message.endswith(
        "g0 -> g1 -> g2 -> " + " -> ".join(f"g{i}" for i in range(3, 300)) + " -> g0"
    )


def test_a_graph_that_would_explode_is_refused(tmp_path: Path) -> None:
    """Two groups per level, each a child of both above: 2^40 paths in 160 lines."""
    parts = ["[l0a]\nh1\n[l0b]\nh2\n"]
    for level in range(1, 40):
        for side in "ab":
            parts.append(f"[l{level - 1}{side}:children]\nl{level}a\nl{level}b\n")
    parts.append("[l39a]\nh3\n[l39b]\nh4\n")
    inv = tmp_path / "lattice.ini"
    inv.write_text("".join(parts))
    started = time.monotonic()
    proc = _run("auditor", "inventory", "-i", str(inv), "--graph")
    assert time.monotonic() - started < 120
    _one_line_exit_2(proc, str(inv), "group graph would be")
    listed = _run("auditor", "inventory", "-i", str(inv), "--list")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["l39b"]["hosts"] == ["h4"]
