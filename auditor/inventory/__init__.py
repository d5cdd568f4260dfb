"""Ansible inventories (INI, YAML, `ansible-inventory --list` JSON) read as Ansible reads them.

    inventory = load_inventory("prod.ini")          # InputError on any bad input
    web = inventory.limit("web:&dc2:!web07")        # Ansible --limit patterns
    inventory.to_ansible_list()                     # == ansible-inventory -i prod.ini --list

Each host comes out as an `auditor.models.Host` with its groups and fully resolved
variables, in the order hosts first appear in the file. The rules are ansible-core 2.19's,
checked against `ansible-inventory` by the tests (tests/inventory). On purpose, where
Ansible would quietly produce an inventory that cannot be what the user meant, we raise
an InputError instead:

- a range that yields no host (`web[5:1]`) or more than 100,000 from one line;
- in YAML, a group or section that is not a mapping, or a key other than hosts, children
  and vars (Ansible warns and skips it, and with it hosts), and an empty document;
- a host named `all`, or a host in no group but `all` that is named like a group;
- a file that is not UTF-8 (outside INI comment lines) or that defines no hosts, and any
  name or value that is not valid text (a lone surrogate such as JSON's `"\\udfff"`);
- more hosts or groups than `InventoryLimits` allows (200,000 and 20,000 by default), and
  YAML whose aliases expand it far beyond its own size (see `auditor.yamlbound`);
- a host setting the auditor cannot use (`ansible_port=99999`).

A host whose connection the auditor has no transport for (`network_cli`, `docker`, ...)
is not an error: it is loaded with `Host.skip` set and reported as `skipped`; a connection
plugin name nobody knows also adds an `InventoryWarning` naming its line.

We also read a UTF-8 byte-order mark, and `ansible-inventory --list` JSON from a plain
file (Ansible needs it printed by an executable inventory script). Not supported:
inventory directories, `group_vars/` and `host_vars/` next to the file, inventory plugins
(`plugin:` files) and decrypting vault values (they stay `Vaulted`).
"""

from __future__ import annotations

from pathlib import Path

from auditor.errors import InputError
from auditor.inventory.builder import InventoryBuilder
from auditor.inventory.ini import COMMENT_MARKERS, parse_ini
from auditor.inventory.jsoninv import build_from_json, load_json_document
from auditor.inventory.model import Group, Inventory, InventoryLimits, InventoryWarning
from auditor.inventory.reading import decode, is_text, read_source, sniff_format
from auditor.inventory.values import UnsafeStr, Vaulted
from auditor.inventory.yamlinv import build_from_yaml, load_yaml_document

__all__ = [
    "Group",
    "Inventory",
    "InventoryLimits",
    "InventoryWarning",
    "UnsafeStr",
    "Vaulted",
    "load_inventory",
    "parse_inventory",
]


def load_inventory(path: str | Path, limits: InventoryLimits | None = None) -> Inventory:
    """Load the inventory file at `path`, choosing INI, YAML or JSON by its content.

    Raises InputError (naming the file, and the line where known) for anything wrong,
    including a file that defines no hosts.
    """
    source = str(path)
    if not is_text(source):
        # The path travels into results and reports; bytes that are not UTF-8 (from argv)
        # cannot be written there faithfully.
        shown = source.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise InputError("the inventory path is not valid UTF-8; rename the file", shown)
    return parse_inventory(read_source(path), source, limits)


def parse_inventory(
    data: bytes | str, source: str, limits: InventoryLimits | None = None
) -> Inventory:
    """Parse inventory content that came from `source` (a path, for messages)."""
    text = decode(data, source, COMMENT_MARKERS)
    if sniff_format(source, text) == "ini":
        builder = parse_ini(text, source, limits)
    else:
        # Strict UTF-8 here: the comment leniency above is for INI only.
        text = decode(data, source)
        builder = _parse_structured(text, source, limits)
    inventory = builder.build()
    if not inventory.hosts:
        raise InputError("the inventory defines no hosts", source)
    return inventory


def _parse_structured(text: str, source: str, limits: InventoryLimits | None) -> InventoryBuilder:
    # Like Ansible, JSON first, then YAML (a YAML flow mapping also starts with '{'); but
    # a .json file that is not JSON gets the JSON error, which says what is wrong.
    json_name = Path(source).suffix.lower() == ".json"
    if json_name or text.lstrip().startswith("{"):
        try:
            document = load_json_document(text, source)
        except InputError:
            if json_name:
                raise
        else:
            return build_from_json(document, source, limits)
    # YAML is always read in the YAML inventory shape (`ansible-inventory --list --yaml`
    # prints that shape too); only JSON comes in the script shape.
    document, line_of = load_yaml_document(text, source)
    return build_from_yaml(document, source, line_of, limits)
