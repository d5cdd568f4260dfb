"""`Inventory.limit`: every Ansible host-pattern form (the oracle tests compare a set of
them with `ansible-inventory --limit`; these pin the semantics one form at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.inventory import Inventory, load_inventory
from auditor.inventory.patterns import split_patterns

INVENTORY = """\
loose
[web]
web1
web2
web3
[db]
db1
db2
[dc1]
web1
db1
[dc2]
web2
web3
db2
[prod:children]
web
db
[web:vars]
x=1
[extra]
web1
"""


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    path = tmp_path_factory.mktemp("patterns") / "fleet.ini"
    path.write_text(INVENTORY)
    return load_inventory(path)


def names(inventory: Inventory, pattern: str) -> list[str]:
    return [h.name for h in inventory.limit(pattern).hosts]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("all", ["loose", "web1", "web2", "web3", "db1", "db2"]),
        ("*", ["loose", "web1", "web2", "web3", "db1", "db2"]),
        ("web", ["web1", "web2", "web3"]),  # a group
        ("prod", ["web1", "web2", "web3", "db1", "db2"]),  # with its children's hosts
        ("db2", ["db2"]),  # a host
        ("ungrouped", ["loose"]),
        ("web[1-2]", ["web2", "web3"]),  # the old x-y subscript form, still read
        ("nothing*", []),
        ("db*", ["db1", "db2"]),  # a glob, over group and host names
        ("*2", ["web2", "web3", "db2"]),  # group dc2 matches, and hosts web2 and db2
        ("web?", ["web1", "web2", "web3"]),
        ("web:db", ["web1", "web2", "web3", "db1", "db2"]),  # union
        ("db1,loose", ["loose", "db1"]),  # union; hosts keep inventory order
        ("web:&dc2", ["web2", "web3"]),  # intersection
        ("prod:!dc1", ["web2", "web3", "db2"]),  # exclusion
        ("prod:&dc2:!db", ["web2", "web3"]),
        ("!web", ["loose", "db1", "db2"]),  # exclusion alone starts from all
        ("&dc1", ["web1", "db1"]),  # intersection alone too
        ("~^(web|db)1$", ["web1", "db1"]),  # a regex (match at the start)
        ("~db", ["db1", "db2"]),
        ("web[0]", ["web1"]),  # subscripts
        ("web[-1]", ["web3"]),
        ("web[1:2]", ["web2", "web3"]),
        ("prod[3:]", ["db1", "db2"]),
        (" web , db1 ", ["web1", "web2", "web3", "db1"]),  # spaces around commas
        ("", ["loose", "web1", "web2", "web3", "db1", "db2"]),  # empty: no limit
    ],
)
def test_limit_forms(inventory: Inventory, pattern: str, expected: list[str]) -> None:
    if not expected:
        with pytest.raises(InputError, match="matched no hosts"):
            inventory.limit(pattern)
    else:
        assert names(inventory, pattern) == expected


def test_limit_from_a_file(inventory: Inventory, tmp_path: Path) -> None:
    retry = tmp_path / "retry.txt"
    retry.write_text("web2\ndb1\n")
    assert names(inventory, f"@{retry}") == ["web2", "db1"]
    assert names(inventory, f"@{retry}:!db") == ["web2"]


def test_a_host_named_like_a_group_is_the_host(tmp_path: Path) -> None:
    path = tmp_path / "clash.ini"
    path.write_text("[web]\nweb\nweb1\n")
    assert names(load_inventory(path), "web") == ["web"]


def test_split_patterns() -> None:
    assert split_patterns("a:b:&c:!d") == ["a", "b", "&c", "!d"]
    assert split_patterns("a,b:c") == ["a", "b:c"]  # commas win, colons stay
    assert split_patterns("web[1:3]:db") == ["web[1:3]", "db"]
    assert split_patterns("host:22") == ["host:22"]  # one address with a port
    assert split_patterns("2001:db8::1") == ["2001:db8::1"]
    assert split_patterns("  ") == []
