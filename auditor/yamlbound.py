"""YAML with a bound on alias expansion, for every YAML file the auditor reads.

An alias (`*name`) stands for the whole node its anchor names, so a few hundred bytes of
nested aliases ("billion laughs") describe a document of billions of nodes. PyYAML builds
such a document cheaply (aliases share one object), but anything that walks it, copies it
or prints it then runs out of time or memory. The composed node graph is measured before
anything is built from it: the size the document would have with every alias written
out, computed once per distinct node (linear time), must stay within a budget.

The budget follows go-yaml's reasoning: aliases are normal, and a document may use them
to repeat itself, but only in proportion to its own size.
"""

from __future__ import annotations

from typing import Any

import yaml

# Nodes a document may reach through aliases, beyond its own: this many outright, plus
# `ALIAS_FACTOR` times its own node count. A fleet-wide `vars: &common` aliased by 200,000
# hosts stays far below; "billion laughs" (10^9 nodes from 30) is refused.
ALIAS_ALLOWANCE = 1_000_000
ALIAS_FACTOR = 10


class AliasBombError(ValueError):
    """A YAML document whose aliases expand it beyond the budget, or into itself."""


def expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(distinct nodes, nodes with every alias written out) of a composed document.

    Raises AliasBombError if an alias refers to a node that contains it (a document that
    contains itself can never be written out).
    """
    size: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        children = _children(node)
        if leaving:
            in_progress.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in children)
            continue
        if key in size:
            continue
        if key in in_progress:
            raise AliasBombError("an alias (*name) refers to its own anchor")
        in_progress.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in in_progress:
                raise AliasBombError("an alias (*name) refers to its own anchor")
            if id(child) not in size:
                stack.append((child, False))
    return len(size), size[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def check_expansion(root: yaml.Node) -> None:
    """Raise AliasBombError if aliases make `root` larger than its budget."""
    distinct, expanded = expanded_size(root)
    budget = ALIAS_ALLOWANCE + ALIAS_FACTOR * distinct
    if expanded > budget:
        raise AliasBombError(
            f"aliases expand this document to {expanded} nodes from {distinct} "
            f"(at most {budget} allowed); write the repeated parts out or use fewer aliases"
        )


def load_bounded(loader: Any) -> Any:
    """`loader.get_single_data()`, refusing a document whose aliases expand too far.

    `loader` is any PyYAML loader instance (its composer and constructor are used as
    they are); raises AliasBombError, or PyYAML's own errors.
    """
    node = loader.get_single_node()
    if node is None:
        return None
    check_expansion(node)
    return loader.construct_document(node)
