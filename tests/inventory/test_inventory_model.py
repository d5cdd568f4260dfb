"""What the rest of the auditor gets from an inventory: hosts, groups, variables, lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.inventory import Inventory, UnsafeStr, Vaulted, load_inventory
from auditor.models import Connection, Host, Platform

CORPUS = Path(__file__).with_name("corpus")
EXAMPLES = Path(__file__).parents[2] / "inventories"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _host(inventory: Inventory, name: str) -> Host:
    return next(h for h in inventory.hosts if h.name == name)


def test_hosts_come_once_in_order_of_first_appearance() -> None:
    inventory = load_inventory(CORPUS / "17_duplicates.ini")
    assert [h.name for h in inventory.hosts] == ["dup", "again"]
    inventory = load_inventory(CORPUS / "03_nested_children.ini")
    names = [h.name for h in inventory.hosts]
    assert names[:4] == [
        "web01.dc1.example.com",
        "web02.dc1.example.com",
        "web03.dc1.example.com",
        "web01.dc2.example.com",
    ]
    assert len(names) == len(set(names)) == 8


def test_connections_platforms_ports_and_users_resolve_like_ansible() -> None:
    inventory = load_inventory(CORPUS / "15_fleet_mixed.ini")
    linux = _host(inventory, "lnx01.corp.example.com")
    assert (linux.connection, linux.platform, linux.port, linux.user) == (
        Connection.SSH,
        Platform.LINUX,
        None,
        "audit",
    )
    windows = _host(inventory, "win01.corp.example.com")
    assert (windows.connection, windows.platform, windows.port) == (
        Connection.WINRM,
        Platform.WINDOWS,
        5986,
    )
    assert windows.user == "svc_audit@CORP.EXAMPLE.COM"
    assert _host(inventory, "winlegacy.corp.example.com").port == 5985  # host beats group
    local = _host(inventory, "localhost")
    assert local.connection is Connection.LOCAL
    dmz = _host(inventory, "lnx-dmz.corp.example.com")
    assert dmz.vars["ansible_ssh_common_args"] == ("-o ProxyJump=ops@bastion.corp.example.com:2222")


def test_address_and_port_come_from_ansible_host_and_definitions() -> None:
    inventory = load_inventory(CORPUS / "21_host_overrides.ini")
    h1, h2 = inventory.hosts
    assert (h1.address, h1.port, h1.user) == ("10.0.0.5", 2022, "alice")
    # Shell-style splitting removes the quotes of "2023" before literal_eval: an int.
    assert (h2.address, h2.port, h2.user, h2.vars["ansible_port"]) == (
        "h2.internal",
        2023,
        "bob",
        2023,
    )
    ports = {h.name: h.port for h in load_inventory(CORPUS / "08_ipv6_ports.ini").hosts}
    assert ports["2001:db8::2"] == 2222
    assert ports["::1"] == 22
    assert ports["fe80::1"] is None
    assert ports["jump"] is None  # ':0' is no port, as in Ansible


def test_host_groups_include_ancestors_but_not_all() -> None:
    inventory = load_inventory(CORPUS / "03_nested_children.ini")
    assert _host(inventory, "web01.dc2.example.com").groups == (
        "canary",
        "dc2",
        "dc2_web",
        "prod",
        "web",
    )
    inventory = load_inventory(CORPUS / "14_all_and_ungrouped.ini")
    assert _host(inventory, "direct1").groups == ("ungrouped",)  # only in [all]
    assert _host(inventory, "lonely").groups == ("ungrouped",)
    assert _host(inventory, "moved").groups == ("servers",)  # left ungrouped
    assert "u" not in _host(inventory, "moved").vars  # and its variables


def test_groups_include_all_and_ungrouped() -> None:
    inventory = load_inventory(CORPUS / "01_docs_example.ini")
    assert {"all", "ungrouped", "web", "apache", "nginx"} == set(inventory.groups)
    assert inventory.groups["all"].children == ("ungrouped", "web")
    assert inventory.groups["web"].children == ("apache", "nginx")
    assert inventory.groups["web"].hosts == ("host1", "host2")
    assert inventory.groups["web"].vars == {"http_port": 8080, "myvar": 23}
    assert inventory.groups["apache"].depth == 2


def test_variable_precedence() -> None:
    inventory = load_inventory(CORPUS / "04_precedence_depth.ini")
    value = {h.name: h.vars["v"] for h in inventory.hosts}
    assert value == {"t1": "top", "m1": "mid", "l1": "leaf", "l2": "host", "s1": "zulu"}
    assert _host(inventory, "l1").vars["only_all"] == 1


def test_group_priority_beats_name_but_not_depth() -> None:
    inventory = load_inventory(CORPUS / "05_group_priority.ini")
    assert _host(inventory, "h1").vars["who"] == "aaa"  # priority 10 > ccc's 5 > bbb's 1
    assert _host(inventory, "h2").vars["who"] == "aaa"
    assert _host(inventory, "h3").vars["where"] == "inner"  # deeper wins over priority 100
    assert "ansible_group_priority" not in _host(inventory, "h1").vars
    assert inventory.groups["aaa"].priority == 10


def test_ini_values_are_typed_like_ansible() -> None:
    inventory = load_inventory(CORPUS / "10_literal_types.ini")
    t1, t2, t3, t4, t5, t6 = inventory.hosts
    assert t1.vars["i"] == 42 and t1.vars["f"] == 1.5 and t1.vars["hex"] == 31
    assert t2.vars["b"] is True and t2.vars["n"] is None and t2.vars["s"] == "yes"
    assert t3.vars["tup"] == [1, 2] and t3.vars["st"] == [1, 2, 3]
    assert t4.vars["lead0"] == "0755" and t4.vars["cplx"] == "(1+2j)"
    assert t5.vars["strnum"] == 7 and t5.vars["g_int"] == 12 and t5.vars["g_bool"] is True
    assert t5.vars["g_str"] == "yes # but this comment is part of the string"
    assert t6.vars["dct"] == {"a": 1, "b": [1, 2]} and t6.vars["s"] == "text"
    assert isinstance(t6.vars["byts"], UnsafeStr) and t6.vars["byts"] == "raw"


def test_yaml_keeps_yaml_types_and_marks() -> None:
    inventory = load_inventory(CORPUS / "31_types.yml")
    variables = inventory.hosts[0].vars
    assert variables["yes_bool"] is True and variables["octal"] == 493
    assert variables["merged"] == {"retries": 3, "timeout": 30}
    assert isinstance(variables["raw"], UnsafeStr) and variables["raw_num"] == 42
    assert not isinstance(variables["text"], UnsafeStr)


def test_vaulted_values_stay_encrypted(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "vault.yml",
        "all:\n  hosts:\n    h1:\n      ansible_password: !vault |\n"
        "        $ANSIBLE_VAULT;1.1;AES256\n        6162\n",
    )
    inventory = load_inventory(path)
    secret = inventory.hosts[0].vars["ansible_password"]
    assert isinstance(secret, Vaulted) and not isinstance(secret, str)
    assert str(secret) == "<vaulted>"
    listed = inventory.to_ansible_list()["_meta"]["hostvars"]["h1"]["ansible_password"]
    assert listed == {"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\n6162\n"}


def test_ini_and_yaml_versions_of_a_fleet_agree() -> None:
    for ini, yml in [
        (CORPUS / "15_fleet_mixed.ini", CORPUS / "33_fleet.yml"),
        (EXAMPLES / "example.ini", EXAMPLES / "example.yml"),
    ]:
        a, b = load_inventory(ini), load_inventory(yml)
        assert a.hosts == b.hosts  # names, addresses, connections, ports, users, groups
        assert [dict(h.vars) for h in a.hosts] == [dict(h.vars) for h in b.hosts]


def test_host_line_points_at_the_first_definition() -> None:
    inventory = load_inventory(CORPUS / "17_duplicates.ini")
    assert inventory.host_line("dup") == 3
    assert inventory.host_line("again") == 9
    assert inventory.host_line("nope") is None
    yaml_inventory = load_inventory(CORPUS / "30_basic.yml")
    assert yaml_inventory.host_line("web02.example.com") == 12  # the range's line
    assert load_inventory(CORPUS / "40_list_output.json").host_line("web1") is None


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("hosts.yml", "[web]\nh1\n"),  # INI content, YAML name: content wins
        ("hosts", "all:\n  hosts:\n    h1:\n"),  # YAML without an extension
        ("hosts.ini", '{"web": ["h1"]}'),  # JSON, whatever the name
        ("hosts.txt", "---\nweb:\n  hosts: h1\n"),
        ("inventory", "# only hosts\nh1 ansible_port=22\n"),
    ],
)
def test_format_is_chosen_by_content(tmp_path: Path, name: str, text: str) -> None:
    inventory = load_inventory(_write(tmp_path, name, text))
    assert [h.name for h in inventory.hosts] == ["h1"]


def test_list_output_reads_back_to_the_same_inventory(tmp_path: Path) -> None:
    for source in [CORPUS / "03_nested_children.ini", CORPUS / "31_types.yml"]:
        listed = load_inventory(source).to_ansible_list()
        again = load_inventory(_write(tmp_path, "listed.json", json.dumps(listed)))
        assert again.to_ansible_list() == listed


def test_graph_draws_shared_groups_under_each_parent() -> None:
    graph = load_inventory(CORPUS / "03_nested_children.ini").graph()
    assert graph.startswith("@all:\n  |--@ungrouped:\n  |--@prod:\n  |  |--@dc1:")
    assert graph.count("@dc2_web:") == 3  # under dc2, web and canary
    assert "  |  |  |  |--web01.dc2.example.com" in graph.splitlines()


def test_limit_keeps_groups_and_host_objects() -> None:
    inventory = load_inventory(CORPUS / "03_nested_children.ini")
    limited = inventory.limit("dc2_db")
    assert [h.name for h in limited.hosts] == ["db1.dc2.example.com", "db2.dc2.example.com"]
    assert limited.hosts[1] is inventory.hosts[-1]
    assert limited.groups["dc2_db"].hosts == ("db1.dc2.example.com", "db2.dc2.example.com")
    assert limited.groups["web"].hosts == () and limited.groups["web"].children
    assert limited.source == inventory.source
