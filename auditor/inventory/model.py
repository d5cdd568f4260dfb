"""The loaded inventory: hosts with resolved variables, and groups as Ansible builds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from auditor.inventory.patterns import apply_limit
from auditor.inventory.render import ansible_graph, ansible_list
from auditor.models import Host


def _no_vars() -> Mapping[str, Any]:
    return MappingProxyType({})


def _no_lines() -> Mapping[str, int]:
    return MappingProxyType({})


# Totals per inventory file. The per-line range cap (addresses.MAX_EXPANSION) alone lets
# ten range lines make a million hosts; these bound the whole file. A Host costs about
# 1 KiB with its variables, so the default host cap keeps a run well under 1 GiB.
DEFAULT_MAX_HOSTS = 200_000
DEFAULT_MAX_GROUPS = 20_000


@dataclass(frozen=True)
class InventoryLimits:
    """How large an inventory may be; anything larger is refused as bad input."""

    max_hosts: int = DEFAULT_MAX_HOSTS
    max_groups: int = DEFAULT_MAX_GROUPS

    @classmethod
    def of(cls, max_hosts: int | None = None, max_groups: int | None = None) -> InventoryLimits:
        """Limits with the defaults for what is not given."""
        return cls(max_hosts or DEFAULT_MAX_HOSTS, max_groups or DEFAULT_MAX_GROUPS)


@dataclass(frozen=True)
class InventoryWarning:
    """Something in the inventory worth telling the user that does not stop the run.

    `message` quotes (repr) every name taken from the file, so it is safe to print.
    """

    message: str
    source: str
    line: int | None = None
    host: str = ""

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Group:
    """One inventory group.

    `hosts` and `children` are the direct members in Ansible's order (what
    `ansible-inventory --list` prints); `vars` are the group's own variables, before any
    inheritance. `depth` is the longest path from `all` (0) and, with `priority`
    (`ansible_group_priority`), decides which group's variables win.
    """

    name: str
    hosts: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=_no_vars, compare=False)
    priority: int = 1
    depth: int = 0
    line: int | None = None


@dataclass(frozen=True)
class Inventory:
    """Every host once, in order of first appearance, and every group including `all`.

    Invariant: every host named in a group's `hosts` is in `hosts`.
    """

    hosts: tuple[Host, ...]
    groups: Mapping[str, Group]
    source: str
    lines: Mapping[str, int] = field(default_factory=_no_lines, repr=False, compare=False)
    warnings: tuple[InventoryWarning, ...] = ()

    def host_line(self, name: str) -> int | None:
        """The line where host `name` was first defined, when the format has lines."""
        return self.lines.get(name)

    def group_hosts(self, name: str) -> list[str]:
        """Hosts of group `name` and of all its descendants, as Ansible enumerates them.

        The group's own hosts come first, then its children's, level by level.
        """
        ordered: list[str] = []
        seen_hosts: set[str] = set()
        seen_groups = {name}
        level = [name]
        while level:
            next_level: list[str] = []
            for group_name in level:
                group = self.groups[group_name]
                for host in group.hosts:
                    if host not in seen_hosts:
                        seen_hosts.add(host)
                        ordered.append(host)
                for child in group.children:
                    if child not in seen_groups:
                        seen_groups.add(child)
                        next_level.append(child)
            level = next_level
        return ordered

    def limit(self, pattern: str) -> Inventory:
        """The hosts matching an Ansible `--limit` pattern; raises InputError if none do."""
        return apply_limit(self, pattern)

    def to_ansible_list(self) -> dict[str, Any]:
        """The data `ansible-inventory -i FILE --list` prints for this inventory."""
        return ansible_list(self)

    def graph(self, max_lines: int = 1_000_000) -> str:
        """The tree `ansible-inventory -i FILE --graph` prints for this inventory.

        Raises InputError when it would be longer than `max_lines` (a group with several
        parents is printed under each, so shared groups can multiply the output).
        """
        return ansible_graph(self, max_lines)
