"""Every bad inventory is an InputError that names the file and, where it can, the line.

For INI files the same text also goes to ansible-core: where it rejects the file too we
agree; where it accepts it and we do not (a deliberate difference, listed in DEVIATIONS)
the test says so, so a change on either side shows up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.inventory import load_inventory
from tests.inventory.oracle import AnsibleWorker


@dataclass(frozen=True)
class Bad:
    name: str
    text: str
    line: int | None  # None: a whole-file problem, reported without a line
    fragment: str  # part of the message, to show it explains the problem
    ansible_accepts: bool = False  # ansible-core reads it; we refuse on purpose


BAD_INI = [
    Bad("unknown_section_type", "[web]\nh1\n[web:hosts2]\n", 3, "unknown type 'hosts2'"),
    Bad("section_with_space", "[web]\nh1\n[my group]\nh2\n", 3, "invalid section header"),
    Bad("children_cycle", "[a:children]\nb\n[b:children]\na\n", 4, "cycle: a -> b -> a"),
    Bad("child_of_itself", "[a]\nh1\n[a:children]\na\n", 4, "child of itself"),
    Bad("all_as_child", "[x]\nh1\n[x:children]\nall\n", 4, "'all' cannot be a child"),
    Bad("undefined_child", "[p:children]\nghost\n[q]\nh1\n", 2, "'ghost', which is never"),
    Bad("vars_of_undefined_group", "[h]\nh1\n[g:vars]\nx=1\n", 3, "[g:vars]"),
    Bad("range_too_many_parts", "[w]\nweb[1:2:3:4]\n", 2, "begin:end or begin:end:step"),
    Bad("range_padding_mismatch", "[w]\nweb[01:100]\n", 2, "same width"),
    Bad("range_mixed_kinds", "[w]\nweb[a:5]\n", 2, "numbers or single letters"),
    Bad("range_letters_backwards", "[w]\nweb[z:a]\n", 2, "begin <= end"),
    Bad("range_no_end", "[w]\nweb[1:]\n", 2, "no end value"),
    Bad("range_zero_step", "[w]\nh1\nweb[1:5:0]\n", 3, "numbers or single letters"),
    Bad("range_unclosed", "[w]\nweb[1:5\n", 2, "invalid host range"),
    Bad("unclosed_quote", '[w]\nh1 x="abc\n', 2, "No closing quotation"),
    Bad("host_var_without_equals", "[w]\nh1 ansible_user\n", 2, "expected key=value"),
    Bad("vars_line_without_equals", "[w]\nh1\n[w:vars]\njustakey\n", 4, "expected key=value"),
    Bad("children_line_two_words", "[a]\nh\n[p:children]\na b\n", 4, "expected a group name"),
    Bad("host_ending_in_colon", "[w]\nh1:\n", 2, "must be followed by a port"),
    Bad("yaml_marker", "[w]\nh1\n---\n", 3, "YAML file"),
    Bad("bad_group_priority", "[w]\nh1\n[w:vars]\nansible_group_priority=abc\n", 4, "integer"),
    Bad("unhashable_literal", '[w]\nh1 x="{[1]: 2}"\n', 2, "cannot read value"),
    # Ansible accepts these; the auditor cannot use them, so it says why and where.
    Bad("port_out_of_range", "[w]\nh1\nh2 ansible_port=99999\n", 3, "out of range", True),
    Bad("port_not_a_number", "[w]\nh2 ansible_port=ssh\n", 2, "not a number", True),
    Bad("group_port_out_of_range", "[w]\nh1\n[w:vars]\nansible_port=0\n", 2, "range", True),
    Bad("empty_numeric_range", "[w]\nh1\nweb[5:1]\n", 3, "is empty", True),
    Bad("too_many_hosts", "[w]\nweb[0:99999999]\n", 2, "more than 100000", True),
    Bad("host_named_all", "[web]\nh1\nall\n", 3, "cannot be named 'all'", True),
    Bad("host_in_all_named_like_a_group", "[all]\nweb\n[web]\nh1\n", 2, "name of a group", True),
    Bad("no_hosts", "# nothing here\n[empty]\n", None, "defines no hosts", True),
    Bad("empty_file", "", None, "defines no hosts", True),
]


def _assert_input_error(path: Path, bad: Bad) -> None:
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    message = str(caught.value)
    prefix = f"{path}:{bad.line}: " if bad.line else f"{path}: "
    assert message.startswith(prefix), message
    assert bad.fragment in message, message


@pytest.mark.parametrize("bad", BAD_INI, ids=lambda b: b.name)
def test_bad_ini_is_an_input_error_with_its_line(
    bad: Bad, tmp_path: Path, ansible_worker: AnsibleWorker
) -> None:
    path = tmp_path / f"{bad.name}.ini"
    path.write_text(bad.text)
    _assert_input_error(path, bad)
    if bad.name == "too_many_hosts":
        return  # ansible-core would try to build 10^8 hosts
    reply = ansible_worker.list(path)
    assert ("ok" in reply) is bad.ansible_accepts, reply


BAD_YAML = [
    Bad("syntax", "all:\n  hosts:\n    h1: [\n", 4, "invalid YAML"),
    Bad("not_a_mapping", "- h1\n- h2\n", None, "must be a mapping of groups"),
    Bad("plugin_config", "plugin: aws_ec2\nregions: [eu-west-1]\n", None, "plugin configuration"),
    Bad("hosts_as_list", "all:\n  hosts:\n    - h1\n", 2, "'hosts' of group 'all'"),
    Bad("misspelt_key", "all:\n  hosts:\n    h1:\n  chlidren:\n    web:\n", 4, "'chlidren'"),
    Bad("group_as_list", "all:\n  children:\n    web: [h1]\n", 3, "group 'web' must be"),
    Bad("numeric_host", "all:\n  hosts:\n    h1:\n    42:\n", 4, "must be a string"),
    Bad("host_vars_not_mapping", "all:\n  hosts:\n    h1: 5\n", 3, "must be a mapping"),
    Bad("bad_range", "all:\n  hosts:\n    h1:\n    web[1:2:3:4]:\n", 4, "begin:end"),
    # b -> a is added first (inner mapping), so a -> b, written on line 3, closes the cycle.
    Bad("cycle", "a:\n  children:\n    b:\n      children:\n        a:\n", 3, "cycle"),
    Bad("bad_port", "all:\n  hosts:\n    h1:\n      ansible_port: 70000\n", 3, "out of range"),
    Bad(
        "bad_priority",
        "web:\n  hosts: {h1: }\n  vars:\n    ansible_group_priority: x\n",
        4,
        "integer",
    ),
    Bad("unknown_tag", "all:\n  vars:\n    x: !secret y\n  hosts: {h1: }\n", 3, "!secret"),
    Bad("vault_not_a_string", "all:\n  hosts:\n    h1:\n      p: !vault [1]\n", 4, "!vault"),
    Bad("impossible_date", "all:\n  vars:\n    d: 2024-13-45\n  hosts: {h1: }\n", None, "month"),
    Bad("empty_document", "# nothing\n", None, "empty", True),
]


@pytest.mark.parametrize("bad", BAD_YAML, ids=lambda b: b.name)
def test_bad_yaml_is_an_input_error(bad: Bad, tmp_path: Path) -> None:
    path = tmp_path / f"{bad.name}.yml"
    path.write_text(bad.text)
    _assert_input_error(path, bad)


BAD_JSON = [
    Bad("syntax", '{\n  "web": {"hosts": ["h1",]}\n}\n', 2, "invalid JSON"),
    Bad("meta_not_object", '{"_meta": [], "web": ["h1"]}', None, "_meta must be an object"),
    Bad("hosts_not_list", '{"_meta": {"hostvars": {}}, "web": {"hosts": "h1"}}', None, "list"),
    Bad("hostvars_not_object", '{"_meta": {"hostvars": {"h1": 1}}, "w": ["h1"]}', None, "'h1'"),
    Bad(
        "unsafe_not_string",
        '{"w": ["h1"], "_meta": {"hostvars": {"h1": {"x": {"__ansible_unsafe": 1}}}}}',
        None,
        "__ansible_unsafe",
    ),
    Bad("numeric_host", '{"web": [1]}', None, "host name must be a string"),
    Bad("children_cycle", '{"a": {"children": ["b"]}, "b": {"children": ["a"]}}', None, "cycle"),
]


@pytest.mark.parametrize("bad", BAD_JSON, ids=lambda b: b.name)
def test_bad_json_is_an_input_error(bad: Bad, tmp_path: Path) -> None:
    path = tmp_path / f"{bad.name}.json"
    path.write_text(bad.text)
    _assert_input_error(path, bad)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.ini"
    with pytest.raises(InputError, match=f"^{path}: no such inventory file$"):
        load_inventory(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        load_inventory(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.ini"
    path.write_text("h1\n")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        load_inventory(path)


def test_undecodable_byte_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.ini"
    path.write_bytes(b"[web]\nh1\ncaf\xe9.example.com\n")
    with pytest.raises(InputError, match=rf"^{path}:3: not UTF-8 text \(byte 0xe9\)"):
        load_inventory(path)


def test_undecodable_bytes_in_comments_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "latin1-comment.ini"
    path.write_bytes(b"# caf\xe9 servers\n[web]\nh1\n  ; \xff\n[bad\n")
    with pytest.raises(InputError, match=rf"^{path}:5: "):
        load_inventory(path)  # line numbers still count the blanked comment lines
    path.write_bytes(b"# caf\xe9 servers\n[web]\nh1\n  ; \xff\n")
    assert [h.name for h in load_inventory(path).hosts] == ["h1"]


def test_undecodable_yaml(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes(b"all:\n  hosts:\n    caf\xe9:\n")
    with pytest.raises(InputError, match=rf"^{path}:3: not UTF-8"):
        load_inventory(path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Windows editors add one; ansible-core then misreads the first line, we do not."""
    path = tmp_path / "bom.ini"
    path.write_bytes(b"\xef\xbb\xbf[web]\nh1\n")
    assert load_inventory(path).groups["web"].hosts == ("h1",)


def test_host_error_names_the_line_of_the_first_definition(tmp_path: Path) -> None:
    path = tmp_path / "late.ini"
    path.write_text("[a]\nh1\n[b]\nh1\n[b:vars]\nansible_port=99999\n")
    with pytest.raises(InputError, match=rf"^{path}:2: host h1: ansible_port="):
        load_inventory(path)


def test_limit_errors(tmp_path: Path) -> None:
    path = tmp_path / "inv.ini"
    path.write_text("[web]\nweb1\nweb2\n")
    inventory = load_inventory(path)
    with pytest.raises(InputError, match=r"^--limit 'db' matched no hosts"):
        inventory.limit("db")
    with pytest.raises(InputError, match="invalid pattern"):
        inventory.limit("~web(")
    with pytest.raises(InputError, match="subscripted pattern"):
        inventory.limit("web[5]")
    with pytest.raises(InputError, match="followed by a pattern"):
        inventory.limit("web:&")
    with pytest.raises(InputError, match="limit file"):
        inventory.limit(f"@{tmp_path / 'missing.txt'}")
