"""YAML inventories (`all: {hosts: ..., children: ..., vars: ...}`), as ansible-core's
`yaml` inventory plugin reads them, with the line of every host for messages.

Values keep their YAML types (YAML 1.1 as PyYAML reads it: `yes` is True). `!unsafe`
values become `UnsafeStr`, `!vault` values `Vaulted`. Where Ansible only warns and drops
part of the file (a misspelt `hosts` key, a group that is not a mapping) we raise an
InputError instead: an audit must not silently skip hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml

from auditor.errors import InputError
from auditor.inventory.addresses import expand_host_pattern
from auditor.inventory.builder import InventoryBuilder, kind_name
from auditor.inventory.model import Inventory, InventoryLimits
from auditor.inventory.reading import decode, nesting_guard
from auditor.inventory.values import Vaulted, mark_unsafe
from auditor.yamlbound import AliasBombError, load_bounded

# Where a key was written: line_of(mapping, key) -> 1-based line, or None if unknown.
LineOf = Callable[[Any, Any], "int | None"]
_SECTIONS = ("vars", "children", "hosts")
# The libyaml parser when present: it is what Ansible uses, so both read the same.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """PyYAML's safe loader plus Ansible's tags, remembering the line of each key."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.key_lines: dict[int, dict[Any, int]] = {}

    def construct_located_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        yield data
        data.update(self.construct_mapping(node))
        # construct_mapping has expanded merge keys (<<) into node.value; each key node is
        # cached, so constructing it again returns the same key object.
        self.key_lines[id(data)] = {
            self.construct_object(key_node): key_node.start_mark.line + 1
            for key_node, _value in node.value
        }

    def construct_unsafe(self, node: yaml.Node) -> Any:
        return mark_unsafe(self._construct_untagged(node))

    def construct_vault(self, node: yaml.Node) -> Vaulted:
        ciphertext = self._construct_untagged(node)
        if not isinstance(ciphertext, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"the {node.tag} tag needs a string value", node.start_mark
            )
        return Vaulted(ciphertext)

    def _construct_untagged(self, node: yaml.Node) -> Any:
        # As Ansible does: build the value as if the custom tag were not there (a plain
        # scalar `!unsafe 123` is an int, even quoted).
        plain: yaml.Node
        if isinstance(node, yaml.ScalarNode):
            tag = self.resolve(yaml.ScalarNode, node.value, (True, False))
            plain = yaml.ScalarNode(tag, node.value, node.start_mark, node.end_mark, node.style)
        elif isinstance(node, yaml.SequenceNode):
            plain = yaml.SequenceNode(
                "tag:yaml.org,2002:seq", node.value, node.start_mark, node.end_mark
            )
        else:
            plain = yaml.MappingNode(
                "tag:yaml.org,2002:map", node.value, node.start_mark, node.end_mark
            )
        return self.construct_object(plain, deep=True)


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_located_map)
_Loader.add_constructor("tag:yaml.org,2002:python/dict", _Loader.construct_located_map)
_Loader.add_constructor("tag:yaml.org,2002:python/unicode", _Loader.construct_yaml_str)
_Loader.add_constructor("!unsafe", _Loader.construct_unsafe)
_Loader.add_constructor("!vault", _Loader.construct_vault)
_Loader.add_constructor("!vault-encrypted", _Loader.construct_vault)


def load_yaml_document(text: str, source: str) -> tuple[Any, LineOf]:
    """Parse one YAML document; returns the data and a lookup for the line of a key."""
    loader = _Loader(text)
    try:
        data = load_bounded(loader)
    except AliasBombError as exc:
        raise InputError(f"invalid YAML: {exc}", source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        raise InputError(
            f"invalid YAML: {problem}", source, mark.line + 1 if mark else None
        ) from None
    except RecursionError:
        raise InputError("invalid YAML: nested too deeply", source) from None
    except Exception as exc:  # PyYAML lets ValueError etc. escape (e.g. a date 2024-13-01)
        raise InputError(f"invalid YAML: {exc}", source) from None
    finally:
        loader.dispose()
    key_lines = loader.key_lines

    def line_of(mapping: Any, key: Any) -> int | None:
        return key_lines.get(id(mapping), {}).get(key)

    return data, line_of


def load_yaml(data: bytes | str, source: str, limits: InventoryLimits | None = None) -> Inventory:
    """Read a YAML inventory; raises InputError."""
    document, line_of = load_yaml_document(decode(data, source), source)
    return build_from_yaml(document, source, line_of, limits).build()


def build_from_yaml(
    document: Any,
    source: str,
    line_of: LineOf | None = None,
    limits: InventoryLimits | None = None,
) -> InventoryBuilder:
    """Feed a parsed YAML-style inventory (YAML, or the same shape in JSON) to a builder."""
    reader = _YamlReader(source, line_of or (lambda _mapping, _key: None), limits)
    with nesting_guard(source):  # nested `children` are read recursively
        return reader.read(document)


class _YamlReader:
    def __init__(self, source: str, line_of: LineOf, limits: InventoryLimits | None) -> None:
        self.builder = InventoryBuilder(source, limits)
        self.line_of = line_of

    def read(self, document: Any) -> InventoryBuilder:
        if not document:
            raise self.builder.error("the inventory is empty")
        if not isinstance(document, Mapping):
            raise self.builder.error(
                "a YAML inventory must be a mapping of groups (all: ...), "
                f"not {kind_name(document)}"
            )
        if document.get("plugin"):
            raise self.builder.error(
                "this is an inventory plugin configuration, not an inventory; "
                "export it with `ansible-inventory -i FILE --list` and use that"
            )
        for name, group_data in document.items():
            self._group(name, group_data, self.line_of(document, name))
        return self.builder

    def _group(self, name: Any, data: Any, line: int | None) -> Any:
        if data is not None and not isinstance(data, Mapping):
            if isinstance(name, str) and (
                self.builder.has_group(name) or self.builder.has_host(name)
            ):
                return name  # Ansible skips the definition but still links the name.
            raise self.builder.error(
                f"group {name!r} must be a mapping with hosts, children or vars, "
                f"not {kind_name(data)}",
                line,
            )
        name = self.builder.add_group(name, line)
        if data is None:
            return name
        sections = {key: self._section(name, data, key) for key in _SECTIONS if key in data}
        for key in data:
            if key not in _SECTIONS:
                raise self.builder.error(
                    f"unexpected key {key!r} in group {name!r} (expected hosts, children or vars)",
                    self.line_of(data, key),
                )
            entries = sections[key]
            if entries is None:
                continue
            section_line = self.line_of(data, key)
            if key == "vars":
                for var, value in entries.items():
                    var_line = self.line_of(entries, var) or section_line
                    self.builder.set_group_var(name, var, value, var_line)
            elif key == "children":
                for child, child_data in entries.items():
                    child_line = self.line_of(entries, child) or section_line
                    child = self._group(child, child_data, child_line)
                    self.builder.add_child(name, child, child_line)
            else:
                for pattern, host_vars in entries.items():
                    self._hosts(
                        name, pattern, host_vars, self.line_of(entries, pattern) or section_line
                    )
        return name

    def _section(self, group: str, data: Mapping[Any, Any], key: str) -> Mapping[Any, Any] | None:
        entries = data[key]
        if isinstance(entries, str):
            return {entries: None}  # `hosts: web1` is short for `hosts: {web1: }`
        if entries is not None and not isinstance(entries, Mapping):
            raise self.builder.error(
                f"{key!r} of group {group!r} must be a mapping, not {kind_name(entries)}",
                self.line_of(data, key),
            )
        return entries

    def _hosts(self, group: str, pattern: Any, host_vars: Any, line: int | None) -> None:
        if not isinstance(pattern, str):
            raise self.builder.error(
                f"host {pattern!r} must be a string; quote numbers and addresses", line
            )
        try:
            names, port = expand_host_pattern(pattern)
        except ValueError as exc:
            raise self.builder.error(str(exc), line) from None
        host_vars = host_vars or {}
        if not isinstance(host_vars, Mapping):
            raise self.builder.error(
                f"variables of host {pattern!r} must be a mapping, not {kind_name(host_vars)}", line
            )
        for host in names:
            self.builder.add_host(host, group, port, line)
            for key, value in host_vars.items():
                self.builder.set_host_var(host, key, value, line)
