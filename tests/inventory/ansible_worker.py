"""ansible-core, in one long-lived process, as an oracle for the inventory tests.

`ansible-inventory` costs about a second per run, too slow for property tests. This worker
imports ansible-core once and answers requests on stdin (one JSON object per line):

    {"op": "list", "path": P, "limit": null}
        -> {"ok": <what `ansible-inventory -i P --list [--limit L]` prints>}
    {"op": "expand", "pattern": S}
        -> {"ok": [names, port]}   (the INI plugin's host-definition expansion)

and `{"error": "..."}` whenever ansible-core raises. `list` runs the CLI's own
`json_inventory` code, so it prints exactly what the command would. The environment
(set by the caller) picks the inventory plugins (ANSIBLE_INVENTORY_ENABLED) and isolates
the worker from any user configuration.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> None:
    # ansible-core reads its configuration when first imported; the caller set the env.
    from ansible import context
    from ansible._internal._json._profiles import _inventory_legacy
    from ansible.cli.inventory import InventoryCLI
    from ansible.inventory.manager import InventoryManager
    from ansible.module_utils.common.collections import ImmutableDict
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.inventory.ini import InventoryModule as IniPlugin
    from ansible.plugins.loader import init_plugin_loader
    from ansible.vars.manager import VariableManager

    init_plugin_loader()
    context.CLIARGS = ImmutableDict(export=False, basedir=None, yaml=False, toml=False)
    cli = InventoryCLI(["ansible-inventory", "--list"])
    ini_plugin = IniPlugin()

    def listing(request: dict[str, Any]) -> Any:
        loader = DataLoader()
        inventory = InventoryManager(loader=loader, sources=[request["path"]])
        if request.get("limit") is not None:
            inventory.subset(request["limit"])
        cli.loader, cli.inventory = loader, inventory
        cli.vm = VariableManager(loader=loader, inventory=inventory)
        data = cli.json_inventory(inventory.groups["all"])
        return json.loads(json.dumps(data, cls=_inventory_legacy.Encoder, sort_keys=True))

    def expand(request: dict[str, Any]) -> Any:
        names, port = ini_plugin._expand_hostpattern(request["pattern"])
        return [list(names), port]

    ops = {"list": listing, "expand": expand}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply: dict[str, Any] = {"ok": ops[request["op"]](request)}
        except BaseException as exc:  # every failure is an answer
            if isinstance(exc, KeyboardInterrupt):
                raise
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
