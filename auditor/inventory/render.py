"""The inventory as `ansible-inventory --list` and `--graph` print it.

These views let a user check that the auditor reads an inventory exactly as Ansible does,
and let the tests compare the two tools directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auditor.errors import InputError
from auditor.inventory.values import to_json

if TYPE_CHECKING:
    from auditor.inventory.model import Inventory

# Names ansible-inventory leaves out of host variables: Ansible sets them itself
# (ansible-core's constants.INTERNAL_STATIC_VARS).
INTERNAL_VARS = frozenset(
    {
        "ansible_async_path",
        "ansible_collection_name",
        "ansible_config_file",
        "ansible_dependent_role_names",
        "ansible_diff_mode",
        "ansible_facts",
        "ansible_forks",
        "ansible_inventory_sources",
        "ansible_limit",
        "ansible_play_batch",
        "ansible_play_hosts",
        "ansible_play_hosts_all",
        "ansible_play_role_names",
        "ansible_playbook_python",
        "ansible_role_name",
        "ansible_role_names",
        "ansible_run_tags",
        "ansible_skip_tags",
        "ansible_verbosity",
        "ansible_version",
        "inventory_dir",
        "inventory_file",
        "inventory_hostname",
        "inventory_hostname_short",
        "groups",
        "group_names",
        "hostvars",
        "playbook_dir",
        "play_hosts",
        "role_name",
        "role_names",
        "role_path",
        "role_uuid",
    }
)


def ansible_list(inventory: Inventory) -> dict[str, Any]:
    """`ansible-inventory --list` output: groups with hosts/children, `_meta.hostvars`.

    Like ansible-core 2.19, variables appear resolved per host and never under a group;
    empty `hosts`/`children` keys are left out and so are groups left with neither (they
    still appear in their parent's `children`).
    """
    result: dict[str, Any] = {}
    hostvars: dict[str, Any] = {}
    for host in inventory.hosts:
        visible = {k: v for k, v in host.vars.items() if k not in INTERNAL_VARS}
        if visible:
            hostvars[host.name] = to_json(visible)
    result["_meta"] = {"hostvars": hostvars, "profile": "inventory_legacy"}
    for name, group in inventory.groups.items():
        entry: dict[str, list[str]] = {}
        if name != "all" and group.hosts:
            entry["hosts"] = list(group.hosts)
        if group.children:
            entry["children"] = list(group.children)
        if entry:
            result[name] = entry
    return result


def ansible_graph(inventory: Inventory, max_lines: int = 1_000_000) -> str:
    """`ansible-inventory --graph` output: `@group:` lines with children, then hosts.

    As in Ansible, a group with several parents appears under each of them, so a few
    lines of shared groups can stand for billions of graph lines: the length is counted
    first (linear time) and more than `max_lines` is an InputError.
    """
    size = _graph_size(inventory)
    if size > max_lines:
        raise InputError(
            f"the group graph would be {size} lines long (groups with several parents are "
            f"printed under each); use the --list view",
            inventory.source,
        )
    lines: list[str] = []
    # An explicit stack instead of recursion: nesting depth is the user's to choose.
    stack: list[tuple[str, str, int]] = [("group", "all", 0)]
    while stack:
        kind, name, depth = stack.pop()
        prefix = "  |" * depth + "--" if depth else ""
        if kind == "host":
            lines.append(prefix + name)
            continue
        lines.append(f"{prefix}@{name}:")
        group = inventory.groups[name]
        below: list[tuple[str, str, int]] = [("group", c, depth + 1) for c in group.children]
        if name != "all":
            below += [("host", h, depth + 1) for h in group.hosts]
        stack.extend(reversed(below))
    return "\n".join(lines)


def _graph_size(inventory: Inventory) -> int:
    """How many lines `ansible_graph` prints: one per group occurrence and its hosts."""
    groups = inventory.groups
    size: dict[str, int] = {}
    # Post-order without recursion; the group graph has no cycles (the builder checks).
    stack: list[tuple[str, bool]] = [("all", False)]
    while stack:
        name, expanded = stack.pop()
        if name in size:
            continue
        group = groups[name]
        if not expanded:
            stack.append((name, True))
            stack.extend((child, False) for child in group.children if child not in size)
            continue
        own = 0 if name == "all" else len(group.hosts)
        size[name] = 1 + own + sum(size[child] for child in group.children)
    return size["all"]
