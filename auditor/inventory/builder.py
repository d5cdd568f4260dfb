"""Builds an `Inventory` from parsed definitions, with ansible-core's rules.

Every format's loader feeds the same builder, so groups, `all`/`ungrouped`, nesting and
variable precedence behave alike whatever the file format. The rules are ansible-core's
(`inventory/data.py`, `inventory/group.py`, `vars/manager.py`):

- `all` and `ungrouped` always exist; a group without parents becomes a child of `all`.
- A host that ends up in no group but `all` joins `ungrouped`; a host that was put in
  `ungrouped` and is also in another group leaves it.
- A host's variables are those of `all`, then of its other groups sorted by (depth,
  `ansible_group_priority`, name) so deeper and higher-priority groups win, then its own.
- `ansible_group_priority` sets the group's priority and is not itself a variable.

Every step is linear in the size of the inventory (plus what it must output: a host in a
chain of N nested groups is in N groups): cycles are found once, when the inventory is
built, and ancestors are collected per distinct set of groups, never stored per group.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from auditor.errors import InputError
from auditor.inventory.model import Group, Inventory, InventoryLimits, InventoryWarning
from auditor.inventory.reading import is_text
from auditor.inventory.values import Vaulted
from auditor.models import UNAUDITED_PLUGINS, Host, connection_plugin

_CONNECTION_VAR = "ansible_connection"


@dataclass
class _GroupDraft:
    name: str
    line: int | None
    hosts: dict[str, None] = field(default_factory=dict)  # an ordered set
    children: dict[str, None] = field(default_factory=dict)  # an ordered set
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1
    connection_line: int | None = None  # where its ansible_connection was set


@dataclass
class _HostDraft:
    name: str
    line: int | None
    vars: dict[str, Any] = field(default_factory=dict)
    connection_line: int | None = None


class InventoryBuilder:
    """Collects groups, hosts and variables in file order, then resolves them once."""

    def __init__(self, source: str, limits: InventoryLimits | None = None) -> None:
        self.source = source
        self.limits = limits or InventoryLimits()
        self._groups: dict[str, _GroupDraft] = {}
        self._hosts: dict[str, _HostDraft] = {}
        # Child links in the order they were made, with their lines: a cycle is reported
        # at the link that closed it, as if it had been checked when it was made.
        self._edges: list[tuple[str, str, int | None]] = []
        for name in ("all", "ungrouped"):
            self._groups[name] = _GroupDraft(name, None)
        self._link("all", "ungrouped")

    def error(self, message: str, line: int | None = None) -> InputError:
        """An InputError naming this inventory and `line`."""
        return InputError(message, source=self.source, line=line)

    def has_group(self, name: str) -> bool:
        return name in self._groups

    def has_host(self, name: str) -> bool:
        return name in self._hosts

    def add_group(self, name: object, line: int | None = None) -> str:
        """Declare group `name` (declaring it again is harmless) and return its name."""
        if not isinstance(name, str):
            raise self.error(f"group name must be a string, not {kind_name(name)}: {name!r}", line)
        if not name:
            raise self.error("empty group name", line)
        if not is_text(name):
            raise self.error(f"group name {name!r} is not valid text (a lone surrogate)", line)
        if name not in self._groups:
            if len(self._groups) - 2 >= self.limits.max_groups:  # `all` and `ungrouped`
                raise self.error(
                    f"more than {self.limits.max_groups} groups "
                    "(raise the limit with --max-groups)",
                    line,
                )
            self._groups[name] = _GroupDraft(name, line)
        return name

    def add_host(
        self, name: object, group: str | None, port: int | None = None, line: int | None = None
    ) -> None:
        """Declare host `name`, as a member of `group` if given.

        As in Ansible, the port counts only where the host is first defined (0 means none).
        """
        if not isinstance(name, str):
            raise self.error(f"host name must be a string, not {kind_name(name)}: {name!r}", line)
        if not name:
            raise self.error("empty host name", line)
        if not is_text(name):
            raise self.error(f"host name {name!r} is not valid text (a lone surrogate)", line)
        if name == "all":
            # Ansible reads the pattern `all` as this one host then: nothing else is listed.
            raise self.error("a host cannot be named 'all'", line)
        if name not in self._hosts:
            if len(self._hosts) >= self.limits.max_hosts:
                raise self.error(
                    f"more than {self.limits.max_hosts} hosts (raise the limit with --max-hosts)",
                    line,
                )
            host = self._hosts[name] = _HostDraft(name, line)
            if port:
                host.vars["ansible_port"] = port
        if group is not None:
            self._groups[group].hosts[name] = None

    def set_host_var(self, host: str, key: Any, value: Any, line: int | None = None) -> None:
        if host in self._groups:
            # Ansible looks the name up as a group first: a host named like an existing
            # group gives its variables to that group (Ansible warns about such names).
            self.set_group_var(host, key, value, line)
        else:
            draft = self._hosts[host]
            draft.vars[key] = value
            if key == _CONNECTION_VAR:
                draft.connection_line = line

    def set_group_var(self, group: str, key: Any, value: Any, line: int | None = None) -> None:
        draft = self._groups[group]
        if key != "ansible_group_priority":
            draft.vars[key] = value
            if key == _CONNECTION_VAR:
                draft.connection_line = line
            return
        try:
            draft.priority = int(value)
        except (TypeError, ValueError, OverflowError):
            raise self.error(
                f"ansible_group_priority of group {group!r} must be an integer, not {value!r}",
                line,
            ) from None

    def add_child(self, parent: str, child: str, line: int | None = None) -> None:
        """Make group (or host) `child` a member of group `parent`.

        A cycle is an error, raised by `build` with the line of the link that closed it.
        """
        if child in self._groups:
            if child == "all":
                raise self.error(f"group 'all' cannot be a child of group {parent!r}", line)
            if child == parent:
                raise self.error(f"group {parent!r} cannot be a child of itself", line)
            if child in self._groups[parent].children:
                return
            self._link(parent, child, line)
        elif child in self._hosts:
            self._groups[parent].hosts[child] = None
        else:
            raise self.error(f"{child!r} is not a known group or host", line)

    def _link(self, parent: str, child: str, line: int | None = None) -> None:
        self._groups[parent].children[child] = None
        self._groups[child].parents.append(parent)
        self._edges.append((parent, child, line))

    def _cycle_error(self) -> InputError:
        """The error for the first link, in the order links were made, that closed a cycle.

        Only called when the graph has a cycle. A binary search over prefixes of the links
        (each tested in linear time) finds it in O(E log E).
        """
        low, high = 1, len(self._edges)  # the first `high` links have a cycle
        while low < high:
            middle = (low + high) // 2
            if _has_cycle(self._edges[:middle]):
                high = middle
            else:
                low = middle + 1
        parent, child, line = self._edges[high - 1]
        path = _path_down(self._edges[: high - 1], child, parent)
        chain = " -> ".join([*path, child])
        return self.error(f"group {child!r} in {parent!r} makes a cycle: {chain}", line)

    def build(self) -> Inventory:
        """Resolve membership and variables, once all definitions are in (call it once).

        Raises InputError, with the line, for a cycle of groups or a host the auditor
        cannot use.
        """
        for name, group in self._groups.items():
            if name != "all" and not group.parents:
                self._link("all", name)
        depth = self._depths()
        self._check_text()
        ancestry = _Ancestry(self._groups)
        memberships = self._memberships(ancestry)

        merged_cache: dict[frozenset[str], tuple[dict[str, Any], tuple[str, ...]]] = {}
        hosts: list[Host] = []
        warnings: list[InventoryWarning] = []
        for name, draft in self._hosts.items():
            if name not in memberships:
                continue
            groups = memberships[name]
            cached = merged_cache.get(groups)
            if cached is None:
                cached = merged_cache[groups] = (
                    self._group_vars(groups, depth),
                    tuple(sorted(groups - {"all"})),
                )
            merged, group_names = cached
            try:
                host = Host.from_vars(name, group_names, merged | draft.vars)
            except ValueError as exc:
                raise self.error(str(exc), draft.line) from None
            if host.skip:
                plugin = connection_plugin(host.vars)
                if plugin not in UNAUDITED_PLUGINS:
                    warnings.append(
                        InventoryWarning(
                            f"host {name!r}: unknown connection plugin {plugin!r}; "
                            "the host is skipped",
                            self.source,
                            self._connection_line(draft, groups, depth),
                            name,
                        )
                    )
            hosts.append(host)

        groups_out = {
            name: Group(
                name=name,
                hosts=tuple(draft.hosts),
                children=tuple(draft.children),
                vars=MappingProxyType(dict(draft.vars)),
                priority=draft.priority,
                depth=depth[name],
                line=draft.line,
            )
            for name, draft in self._groups.items()
        }
        lines = {h.name: line for h in hosts if (line := self._hosts[h.name].line) is not None}
        return Inventory(
            hosts=tuple(hosts),
            groups=MappingProxyType(groups_out),
            source=self.source,
            lines=MappingProxyType(lines),
            warnings=tuple(warnings),
        )

    def _check_text(self) -> None:
        """Refuse any variable name or value that is not valid text (see `is_text`)."""
        seen: set[int] = set()  # containers already checked (aliases share them)
        owners: list[tuple[str, str, dict[str, Any], int | None]] = [
            ("group", g.name, g.vars, g.line) for g in self._groups.values()
        ]
        owners += [("host", h.name, h.vars, h.line) for h in self._hosts.values()]
        for kind, name, variables, line in owners:
            for key, value in variables.items():
                if not _all_text(key, seen) or not _all_text(value, seen):
                    raise self.error(
                        f"variable {key!r} of {kind} {name!r} is not valid text (a lone surrogate)",
                        line,
                    )

    def _connection_line(
        self, draft: _HostDraft, groups: frozenset[str], depth: dict[str, int]
    ) -> int | None:
        """The line that set the host's effective ansible_connection (else the host's)."""
        if _CONNECTION_VAR in draft.vars:
            return draft.connection_line or draft.line
        for name in reversed(self._ordered_groups(groups, depth)):
            group = self._groups[name]
            if _CONNECTION_VAR in group.vars:
                return group.connection_line or draft.line
        return self._groups["all"].connection_line or draft.line

    def _depths(self) -> dict[str, int]:
        """Each group's longest distance from `all`; InputError if the groups make a cycle.

        Groups are visited parents-first (Kahn's algorithm from `all`): a group never
        reached is on, or below, a cycle.
        """
        waiting = {name: len(draft.parents) for name, draft in self._groups.items()}
        depth: dict[str, int] = {}
        queue = deque(["all"])
        while queue:
            name = queue.popleft()
            depth[name] = max((depth[p] + 1 for p in self._groups[name].parents), default=0)
            for child in self._groups[name].children:
                waiting[child] -= 1
                if waiting[child] == 0:
                    queue.append(child)
        if len(depth) < len(self._groups):
            raise self._cycle_error()
        return depth

    def _memberships(self, ancestry: _Ancestry) -> dict[str, frozenset[str]]:
        """Every group each host belongs to, after Ansible's `ungrouped` clean-up.

        A host left in no group at all (it was only in `ungrouped`, and `ungrouped` is a
        child of one of its other groups) is missing from the result: Ansible drops it.
        """
        direct: dict[str, list[str]] = {name: [] for name in self._hosts}
        for group in self._groups.values():
            for host in group.hosts:
                direct[host].append(group.name)

        ungrouped = self._groups["ungrouped"]
        result: dict[str, frozenset[str]] = {}
        for host, names in direct.items():
            groups = set(ancestry.closure(names))
            if "ungrouped" in groups:
                if groups - {"all", "ungrouped"} and host in ungrouped.hosts:
                    del ungrouped.hosts[host]
                    names.remove("ungrouped")
                    _leave_group(groups, "ungrouped", ancestry)
            elif groups <= {"all"}:
                if host in self._groups:
                    # Ansible would file the group of that name under ungrouped instead.
                    raise self.error(
                        f"host {host!r} is in no group but 'all' and has the name of a group; "
                        "rename one, or put the host in a group",
                        self._hosts[host].line,
                    )
                ungrouped.hosts[host] = None
                names.append("ungrouped")
                groups |= ancestry.closure(["ungrouped"])
            if names:
                result[host] = frozenset(groups)
        return result

    def _ordered_groups(self, groups: frozenset[str], depth: dict[str, int]) -> list[str]:
        """A host's groups but `all`, in the order their variables apply (last wins)."""
        return sorted(groups - {"all"}, key=lambda n: (depth[n], self._groups[n].priority, n))

    def _group_vars(self, groups: frozenset[str], depth: dict[str, int]) -> dict[str, Any]:
        merged = dict(self._groups["all"].vars)
        for name in self._ordered_groups(groups, depth):
            merged.update(self._groups[name].vars)
        return merged


class _Ancestry:
    """Ancestors of groups, collected on demand by walking up the parent links.

    Computing every group's ancestor set up front costs quadratic memory on a long chain
    of nested groups; hosts share few distinct sets of direct groups, so closures are
    cached per set instead.
    """

    def __init__(self, groups: dict[str, _GroupDraft]) -> None:
        self._groups = groups
        self._closures: dict[frozenset[str], frozenset[str]] = {}

    def closure(self, names: list[str]) -> frozenset[str]:
        """`names` and all their ancestors."""
        key = frozenset(names)
        found = self._closures.get(key)
        if found is None:
            seen = set(key)
            stack = list(key)
            while stack:
                for parent in self._groups[stack.pop()].parents:
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
            found = self._closures[key] = frozenset(seen)
        return found

    def of(self, name: str) -> frozenset[str]:
        """The ancestors of group `name` (not `name` itself)."""
        return self.closure([name]) - {name}


def _leave_group(groups: set[str], name: str, ancestry: _Ancestry) -> None:
    """Take group `name` from a host's `groups` with the ancestors only it brought in.

    This is ansible-core's Host.remove_group: an ancestor stays if another of the host's
    groups descends from it, but not merely because the host is in it directly.
    """
    groups.discard(name)
    for parent in sorted(ancestry.of(name)):
        if parent != "all" and parent in groups:
            if not any(parent in ancestry.of(other) for other in groups):
                _leave_group(groups, parent, ancestry)


def _all_text(value: Any, seen: set[int]) -> bool:
    """Whether every string in `value` (keys included, nested) is valid text."""
    if type(value) is str:  # nearly every variable: no stack needed
        return is_text(value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                return False
        elif isinstance(item, Vaulted):
            stack.append(item.ciphertext)
        elif isinstance(item, dict | list | tuple | set | frozenset):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
    return True


def _has_cycle(edges: list[tuple[str, str, int | None]]) -> bool:
    """Whether the directed graph of `edges` (parent, child, line) has a cycle."""
    children: dict[str, list[str]] = {}
    waiting: dict[str, int] = {}
    for parent, child, _line in edges:
        children.setdefault(parent, []).append(child)
        waiting.setdefault(parent, 0)
        waiting[child] = waiting.get(child, 0) + 1
    queue = deque(name for name, count in waiting.items() if count == 0)
    visited = 0
    while queue:
        name = queue.popleft()
        visited += 1
        for child in children.get(name, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                queue.append(child)
    return visited < len(waiting)


def _path_down(edges: list[tuple[str, str, int | None]], start: str, target: str) -> list[str]:
    """The shortest chain of groups from `start` down through children to `target`."""
    children: dict[str, list[str]] = {}
    for parent, child, _line in edges:
        children.setdefault(parent, []).append(child)
    came_from: dict[str, str] = {start: start}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        if name == target:
            break
        for child in children.get(name, ()):
            if child not in came_from:
                came_from[child] = name
                queue.append(child)
    path = [target]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    return list(reversed(path))


def kind_name(value: object) -> str:
    """How a message names the type of a value the user wrote."""
    return "nothing" if value is None else type(value).__name__
