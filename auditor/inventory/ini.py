"""Ansible INI inventories, read the way ansible-core's `ini` inventory plugin reads them.

- `[group]` lists hosts, `[group:vars]` sets variables, `[group:children]` nests groups
  (a child may be declared further down; cycles are errors). Lines before any section
  are hosts of `ungrouped`.
- A host line is a definition (`web[01:10].example.com`, `db:2222`, `[::1]:22`) and
  `key=value` pairs split like a shell would (see `shellwords`), `#` starting a comment.
- Values go through `ast.literal_eval`, on host lines and in `:vars` sections alike (the
  Ansible docs say `:vars` values stay strings; ansible-core 2.19 does not do that):
  `22` is an int, `'22'` and `web` strings, `[1, 2]` a list.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from auditor.inventory.addresses import expand_host_pattern
from auditor.inventory.builder import InventoryBuilder
from auditor.inventory.model import Inventory, InventoryLimits
from auditor.inventory.reading import decode
from auditor.inventory.shellwords import split_words
from auditor.inventory.values import UnsafeStr

COMMENT_MARKERS = ("#", ";")
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
# Values literal_eval would only refuse (names, dotted and dashed words) or read as a plain
# int; skipping the parser for them makes large inventories load several times faster.
_PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_PLAIN_INT = re.compile(r"[1-9][0-9]{0,17}|0")
_LITERAL_WORDS = {"True": True, "False": False, "None": None}
# Text that ast.literal_eval can only refuse (a SyntaxError), so the slow call is skipped: a
# dotted quad or version ("10.0.1.2", "1.2.3"), or a colon outside any bracket or quote
# ("fe80::1", "host:22") and no '#' (after which Python sees a comment: "23 # note" is 23).
# In a 100,000-host inventory, nearly every ansible_host is one of these.
_NEVER_LITERAL = re.compile(r"[0-9]+(?:\.[0-9]+){2,}|[^'\"\[\]{}()#]*:[^'\"\[\]{}()#]*")


@dataclass
class _Declaration:
    """A group used before its own section: as a child, or by a `[group:vars]` section."""

    kind: str  # "children" or "vars"
    line: int
    parents: list[str] = field(default_factory=list)


def load_ini(data: bytes | str, source: str, limits: InventoryLimits | None = None) -> Inventory:
    """Read an INI inventory; raises InputError naming the line of any mistake."""
    return parse_ini(decode(data, source, COMMENT_MARKERS), source, limits).build()


def parse_ini(text: str, source: str, limits: InventoryLimits | None = None) -> InventoryBuilder:
    """Feed INI inventory `text` to a builder; raises InputError naming the line."""
    return _IniReader(source, limits).read(text)


class _IniReader:
    def __init__(self, source: str, limits: InventoryLimits | None = None) -> None:
        self.builder = InventoryBuilder(source, limits)
        self.pending: dict[str, _Declaration] = {}
        self.group = "ungrouped"
        self.state = "hosts"

    def read(self, text: str) -> InventoryBuilder:
        handlers: dict[str, Callable[[str, int], None]] = {
            "hosts": self._host_line,
            "vars": self._vars_line,
            "children": self._child_line,
        }
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith(COMMENT_MARKERS):
                continue
            section = _SECTION.match(line)
            if section:
                self._section(section.group(1), section.group(2) or "hosts", number)
            elif line.startswith("[") and line.endswith("]"):
                raise self.builder.error(
                    f"invalid section header {line!r}: no spaces or ':' allowed in a group "
                    f"name, and the only section types are :vars and :children",
                    number,
                )
            else:
                handlers[self.state](line, number)
        self._check_pending()
        return self.builder

    def _section(self, group: str, kind: str, line: int) -> None:
        if kind not in ("hosts", "children", "vars"):
            raise self.builder.error(
                f"section [{group}:{kind}] has unknown type {kind!r} "
                "(expected [group], [group:vars] or [group:children])",
                line,
            )
        self.group, self.state = group, kind
        if not self.builder.has_group(group):
            # [g:vars] alone does not declare g: it must have a [g] or [g:children]
            # section somewhere. Note it and check at the end.
            if kind == "vars" and group not in self.pending:
                self.pending[group] = _Declaration("vars", line)
            self.builder.add_group(group, line)
        declared = self.pending.get(group)
        if declared is not None and kind != "vars":
            if declared.kind == "children":
                self._add_pending_children(group, line)
            else:
                del self.pending[group]

    def _add_pending_children(self, group: str, line: int) -> None:
        # Children named before their section are added when that section appears, and
        # so land in their parents' `children` in that order, as in Ansible.
        declared = self.pending.pop(group)
        for parent in declared.parents:
            self.builder.add_child(parent, group, line)
            parent_declared = self.pending.get(parent)
            if parent_declared is not None and parent_declared.kind == "children":
                self._add_pending_children(parent, line)

    def _check_pending(self) -> None:
        for name, declared in self.pending.items():
            if declared.kind == "vars":
                message = f"section [{name}:vars] is for group {name!r}, which is never defined"
            else:
                message = (
                    f"section [{declared.parents[-1]}:children] names group {name!r}, "
                    "which is never defined"
                )
            raise self.builder.error(message, declared.line)

    def _host_line(self, line: str, number: int) -> None:
        tokens = self._split(line, number)
        pattern, assignments = tokens[0], tokens[1:]
        try:
            names, port = expand_ini_host(pattern)
        except ValueError as exc:
            raise self.builder.error(str(exc), number) from None
        variables: dict[str, Any] = {}
        for token in assignments:
            key, sep, value = token.partition("=")
            if not sep:
                raise self.builder.error(
                    f"expected key=value after the host name, got {token!r}", number
                )
            variables[key] = self._value(value, number)
        for name in names:
            self.builder.add_host(name, self.group, port, number)
            for key, value in variables.items():
                self.builder.set_host_var(name, key, value, number)

    def _split(self, line: str, number: int) -> list[str]:
        try:
            tokens = split_words(line)
        except ValueError as exc:
            raise self.builder.error(f"cannot parse host line {line!r}: {exc}", number) from None
        if not tokens:
            raise self.builder.error(f"expected a host definition, got {line!r}", number)
        return tokens

    def _vars_line(self, line: str, number: int) -> None:
        key, sep, value = line.partition("=")
        if not sep:
            raise self.builder.error(f"expected key=value, got {line!r}", number)
        self.builder.set_group_var(
            self.group, key.strip(), self._value(value.strip(), number), number
        )

    def _child_line(self, line: str, number: int) -> None:
        match = _GROUP_NAME.match(line)
        if not match:
            raise self.builder.error(f"expected a group name, got {line!r}", number)
        child = match.group(1)
        if self.builder.has_group(child):
            self.builder.add_child(self.group, child, number)
        elif child in self.pending:
            self.pending[child].parents.append(self.group)
        else:
            self.pending[child] = _Declaration("children", number, [self.group])

    def _value(self, text: str, number: int) -> Any:
        try:
            return parse_value(text)
        except ValueError as exc:
            raise self.builder.error(str(exc), number) from None


def expand_ini_host(pattern: str) -> tuple[list[str], int | None]:
    """Host names and port of an INI host definition; ValueError if it is invalid.

    On top of the common rules, INI refuses a trailing ':' with no port and '---'.
    """
    names, port = expand_host_pattern(pattern)
    if pattern.strip().endswith(":") and port is None:
        raise ValueError(f"invalid host {pattern!r}: ':' must be followed by a port number")
    if any(name.strip() == "---" for name in names):
        raise ValueError(f"invalid host {pattern!r}: '---' usually means this is a YAML file")
    return names, port


def parse_value(text: str) -> Any:
    """Type an INI value like Ansible: a Python literal if it is one, else the text.

    Raises ValueError for input that breaks the literal parser itself (Ansible fails on
    it too): unhashable dict keys, nesting too deep to parse.
    """
    if _PLAIN_WORD.fullmatch(text):
        return _LITERAL_WORDS.get(text, text)
    if _PLAIN_INT.fullmatch(text):
        return int(text)
    if _NEVER_LITERAL.fullmatch(text):
        return text
    return literal_value(text)


def literal_value(text: str) -> Any:
    """`parse_value` without its shortcuts: ast.literal_eval and Ansible's conversions."""
    try:
        with warnings.catch_warnings():
            # `"\d"` in a value is fine here; do not print Python's escape warnings
            # (a DeprecationWarning until 3.11, a SyntaxWarning from 3.12).
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    except Exception as exc:  # TypeError, RecursionError, MemoryError: Ansible fails too
        raise ValueError(f"cannot read value {_preview(text)}: {type(exc).__name__}") from None
    return _coerce(value)


def _coerce(value: Any) -> Any:
    """Literal types Ansible does not keep: tuples and sets become lists, bytes and
    complex numbers strings, `...` the string '...'."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        # Ansible decodes bytes literals into strings it will not template.
        return UnsafeStr(value.decode("utf-8", "surrogateescape"))
    if isinstance(value, list | tuple | set):
        return [_coerce(item) for item in value]
    if isinstance(value, dict):
        return {key: _coerce(item) for key, item in value.items()}
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    return value


def _preview(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
