"""JSON inventories: what `ansible-inventory --list` (or an inventory script) prints.

That shape is `{"group": {"hosts": [...], "children": [...], "vars": {...}},
"_meta": {"hostvars": {...}}}`; the older script form `{"group": ["host", ...]}` is read
too, with ansible-core's `script` plugin rules. A JSON document in the YAML inventory
shape (`{"all": {"hosts": {"web1": {}}}}`) is read as YAML would be, as Ansible does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from auditor.errors import InputError
from auditor.inventory.builder import InventoryBuilder, kind_name
from auditor.inventory.model import Inventory, InventoryLimits
from auditor.inventory.reading import decode, nesting_guard
from auditor.inventory.values import UnsafeStr, Vaulted, mark_unsafe
from auditor.inventory.yamlinv import build_from_yaml


def load_json_document(text: str, source: str) -> Any:
    """Parse JSON, turning Ansible's `__ansible_unsafe`/`__ansible_vault` objects back into
    values; raises InputError."""
    try:
        return json.loads(text, object_hook=_ansible_object)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", source, exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"invalid JSON: {exc}", source) from None


def _ansible_object(pairs: dict[str, Any]) -> Any:
    for key, make in (("__ansible_unsafe", UnsafeStr), ("__ansible_vault", Vaulted)):
        if key in pairs:
            value = pairs[key]
            if not isinstance(value, str):
                raise ValueError(f"{key} must hold a string, not {type(value).__name__}")
            return make(value)
    return pairs


def is_script_output(document: Any) -> bool:
    """True for the `--list` / script shape, False for the YAML inventory shape."""
    if not isinstance(document, Mapping) or isinstance(document.get("plugin"), str):
        return False
    if "_meta" in document:
        return True
    for group in document.values():
        if isinstance(group, list):
            return True
        if isinstance(group, Mapping) and any(
            isinstance(group.get(key), list) for key in ("hosts", "children")
        ):
            return True
    return False


def load_json(data: bytes | str, source: str, limits: InventoryLimits | None = None) -> Inventory:
    """Read a JSON inventory in either shape; raises InputError."""
    document = load_json_document(decode(data, source), source)
    return build_from_json(document, source, limits).build()


def build_from_json(
    document: Any, source: str, limits: InventoryLimits | None = None
) -> InventoryBuilder:
    """Feed a parsed JSON inventory to a builder, choosing the rules by its shape."""
    if is_script_output(document):
        with nesting_guard(source):
            return _ScriptReader(source, limits).read(document)
    return build_from_yaml(document, source, limits=limits)


class _ScriptReader:
    def __init__(self, source: str, limits: InventoryLimits | None) -> None:
        self.builder = InventoryBuilder(source, limits)
        self.listed: dict[str, None] = {}

    def read(self, document: Mapping[str, Any]) -> InventoryBuilder:
        hostvars: Mapping[str, Any] = {}
        for name, data in document.items():
            if name == "_meta":
                hostvars = self._meta(data)
            else:
                self._group(name, data)
        # As Ansible does, _meta.hostvars only adds variables to hosts some group lists.
        for host in self.listed:
            host_vars = hostvars.get(host, {})
            if not isinstance(host_vars, Mapping):
                raise self.builder.error(
                    f"_meta.hostvars of {host!r} must be an object, not {kind_name(host_vars)}"
                )
            for key, value in host_vars.items():
                self.builder.set_host_var(host, key, value)
        return self.builder

    def _meta(self, data: Any) -> Mapping[str, Any]:
        hostvars = data.get("hostvars") if isinstance(data, Mapping) else None
        if not isinstance(hostvars, Mapping):
            raise self.builder.error("_meta must be an object holding a 'hostvars' object")
        return hostvars

    def _group(self, name: Any, data: Any) -> None:
        name = self.builder.add_group(name)
        if not isinstance(data, Mapping):
            data = {"hosts": data}  # old script form: the group is its list of hosts
        elif not any(key in data for key in ("hosts", "vars", "children")):
            # Ansible reads such a group as one host of that name with these variables,
            # which it will not template.
            data = {"hosts": [name], "vars": mark_unsafe(data)}
        hosts = data.get("hosts", [])
        if not isinstance(hosts, list):
            raise self.builder.error(f"{name}.hosts must be a list, not {kind_name(hosts)}")
        for host in hosts:
            self.builder.add_host(host, name)
            self.listed[host] = None
        group_vars = data.get("vars", {})
        if not isinstance(group_vars, Mapping):
            raise self.builder.error(f"{name}.vars must be an object, not {kind_name(group_vars)}")
        for key, value in group_vars.items():
            self.builder.set_group_var(name, key, value)
        children = data.get("children", [])
        if not isinstance(children, list):
            raise self.builder.error(f"{name}.children must be a list, not {kind_name(children)}")
        for child in children:
            self.builder.add_child(name, self.builder.add_group(child))
