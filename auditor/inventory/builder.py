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
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from auditor.errors import InputError
from auditor.inventory.model import Group, Inventory
from auditor.models import Host


@dataclass
class _GroupDraft:
    name: str
    line: int | None
    hosts: dict[str, None] = field(default_factory=dict)  # an ordered set
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1


@dataclass
class _HostDraft:
    name: str
    line: int | None
    vars: dict[str, Any] = field(default_factory=dict)


class InventoryBuilder:
    """Collects groups, hosts and variables in file order, then resolves them once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._groups: dict[str, _GroupDraft] = {}
        self._hosts: dict[str, _HostDraft] = {}
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
        if name not in self._groups:
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
        if name == "all":
            # Ansible reads the pattern `all` as this one host then: nothing else is listed.
            raise self.error("a host cannot be named 'all'", line)
        if name not in self._hosts:
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
            self._hosts[host].vars[key] = value

    def set_group_var(self, group: str, key: Any, value: Any, line: int | None = None) -> None:
        draft = self._groups[group]
        if key != "ansible_group_priority":
            draft.vars[key] = value
            return
        try:
            draft.priority = int(value)
        except (TypeError, ValueError, OverflowError):
            raise self.error(
                f"ansible_group_priority of group {group!r} must be an integer, not {value!r}",
                line,
            ) from None

    def add_child(self, parent: str, child: str, line: int | None = None) -> None:
        """Make group (or host) `child` a member of group `parent`; cycles are errors."""
        if child in self._groups:
            if child == "all":
                raise self.error(f"group 'all' cannot be a child of group {parent!r}", line)
            if child == parent:
                raise self.error(f"group {parent!r} cannot be a child of itself", line)
            if child in self._groups[parent].children:
                return
            cycle = self._path_up(parent, child)
            if cycle:
                chain = " -> ".join([*reversed(cycle), child])
                raise self.error(f"group {child!r} in {parent!r} makes a cycle: {chain}", line)
            self._link(parent, child)
        elif child in self._hosts:
            self._groups[parent].hosts[child] = None
        else:
            raise self.error(f"{child!r} is not a known group or host", line)

    def _link(self, parent: str, child: str) -> None:
        self._groups[parent].children.append(child)
        self._groups[child].parents.append(parent)

    def _path_up(self, start: str, target: str) -> list[str]:
        """Groups from `start` up through parents to `target`, or [] if not an ancestor."""
        came_from: dict[str, str] = {}
        queue = deque([start])
        while queue:
            name = queue.popleft()
            for parent in self._groups[name].parents:
                if parent in came_from or parent == start:
                    continue
                came_from[parent] = name
                if parent == target:
                    path = [parent]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return list(reversed(path))
                queue.append(parent)
        return []

    def build(self) -> Inventory:
        """Resolve membership and variables, once all definitions are in (call it once).

        Raises InputError, with the host's line, for a host the auditor cannot use.
        """
        for name, group in self._groups.items():
            if name != "all" and not group.parents:
                self._link("all", name)
        depth, ancestors = self._depths_and_ancestors()
        memberships = self._memberships(ancestors)

        merged_cache: dict[frozenset[str], dict[str, Any]] = {}
        hosts: list[Host] = []
        for name, draft in self._hosts.items():
            if name not in memberships:
                continue
            groups = memberships[name]
            merged = merged_cache.get(groups)
            if merged is None:
                merged = merged_cache[groups] = self._group_vars(groups, depth)
            try:
                host = Host.from_vars(name, tuple(sorted(groups - {"all"})), merged | draft.vars)
            except ValueError as exc:
                raise self.error(str(exc), draft.line) from None
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
        )

    def _depths_and_ancestors(self) -> tuple[dict[str, int], dict[str, frozenset[str]]]:
        """Each group's longest distance from `all` and its set of ancestors.

        Groups are visited parents-first (Kahn's algorithm from `all`); cycles were refused
        when the edges were added, so every group is reached.
        """
        waiting = {name: len(draft.parents) for name, draft in self._groups.items()}
        depth: dict[str, int] = {}
        ancestors: dict[str, frozenset[str]] = {}
        queue = deque(["all"])
        while queue:
            name = queue.popleft()
            parents = self._groups[name].parents
            depth[name] = max((depth[p] + 1 for p in parents), default=0)
            ancestors[name] = frozenset(parents).union(*(ancestors[p] for p in parents))
            for child in self._groups[name].children:
                waiting[child] -= 1
                if waiting[child] == 0:
                    queue.append(child)
        return depth, ancestors

    def _memberships(self, ancestors: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
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
            groups = set(names).union(*(ancestors[n] for n in names))
            if "ungrouped" in groups:
                if groups - {"all", "ungrouped"} and host in ungrouped.hosts:
                    del ungrouped.hosts[host]
                    names.remove("ungrouped")
                    _leave_group(groups, "ungrouped", ancestors)
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
                groups |= {"ungrouped"} | ancestors["ungrouped"]
            if names:
                result[host] = frozenset(groups)
        return result

    def _group_vars(self, groups: frozenset[str], depth: dict[str, int]) -> dict[str, Any]:
        merged = dict(self._groups["all"].vars)
        ordered = sorted(groups - {"all"}, key=lambda n: (depth[n], self._groups[n].priority, n))
        for name in ordered:
            merged.update(self._groups[name].vars)
        return merged


def _leave_group(groups: set[str], name: str, ancestors: dict[str, frozenset[str]]) -> None:
    """Take group `name` from a host's `groups` with the ancestors only it brought in.

    This is ansible-core's Host.remove_group: an ancestor stays if another of the host's
    groups descends from it, but not merely because the host is in it directly.
    """
    groups.discard(name)
    for parent in sorted(ancestors[name]):
        if parent != "all" and parent in groups:
            if not any(parent in ancestors[other] for other in groups):
                _leave_group(groups, parent, ancestors)


def kind_name(value: object) -> str:
    """How a message names the type of a value the user wrote."""
    return "nothing" if value is None else type(value).__name__
