"""Property tests: any input is an inventory or an InputError; generated INI and YAML
inventories and host definitions read exactly as ansible-core reads them; and the fast
paths (word splitting, value typing) agree with the stdlib code they replace.

200 examples each by default; `HYPOTHESIS_PROFILE=fuzz` (make fuzz) runs thousands.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from auditor.errors import InputError
from auditor.inventory import parse_inventory
from auditor.inventory.addresses import MAX_EXPANSION
from auditor.inventory.ini import expand_ini_host, literal_value, load_ini, parse_value
from auditor.inventory.jsoninv import load_json
from auditor.inventory.shellwords import split_words
from auditor.inventory.yamlinv import load_yaml
from auditor.yamlbound import AliasBombError, expanded_size
from tests.inventory.oracle import AnsibleWorker, assert_same_listing

EXAMPLES = max(200, settings().max_examples)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Pieces of INI that reach the parser's corners, mixed with arbitrary text.
INI_PIECES = """\
[web]
[web:children]
[web:vars]
[db]
[all:vars]
[all:children]
[ungrouped]
[x:foo]
[bad name]
web
db
all
ungrouped
h1
h2:22
h[1:3]
h[a:c]
h[01:3]
h[1:
h[3:1]
h[1:2:0]
[::1]:22
fe80::1
10.0.[1:2].1
h1 x=1
h1 x
h1 x="a b
h1 x="{'a': [1]}"
h1 x="{[1]: 2}"
x=1
x
ansible_port=22
ansible_port=abc
ansible_group_priority=zz
ansible_group_priority=3
ansible_connection=winrm
ansible_connection=telnet
# comment
; comment
---
h1:
=
a=b=c
'q h' y=2
h1 #c x=1
""".splitlines()
ini_like = st.lists(st.one_of(st.sampled_from(INI_PIECES), st.text(max_size=12)), max_size=25).map(
    "\n".join
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)
KEYS = [
    *"all hosts children vars web h1 h[1:2] h:22 _meta hostvars plugin ungrouped".split(),
    *"ansible_port ansible_group_priority".split(),
]
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)


def _only_input_errors(load: Any, data: bytes | str, source: str) -> None:
    try:
        load(data, source)
    except InputError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400), ini_like))
def test_fuzz_ini_loader_raises_only_input_errors(data: bytes | str) -> None:
    _only_input_errors(load_ini, data, "fuzz.ini")


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300), documents.map(yaml.safe_dump)))
def test_fuzz_yaml_loader_raises_only_input_errors(data: bytes | str) -> None:
    _only_input_errors(load_yaml, data, "fuzz.yml")


@FUZZ
@given(st.one_of(st.text(max_size=300), documents.map(json.dumps)))
def test_fuzz_json_loader_raises_only_input_errors(data: str) -> None:
    _only_input_errors(load_json, data, "fuzz.json")


@FUZZ
@given(st.one_of(st.binary(max_size=300), ini_like, documents.map(yaml.safe_dump)))
def test_fuzz_any_format_raises_only_input_errors(data: bytes | str) -> None:
    try:
        inventory = parse_inventory(data, "fuzz")
    except InputError:
        return
    # Whatever loads can be shown and limited without surprises.
    inventory.to_ansible_list()
    inventory.graph()
    try:
        inventory.limit("web:!h1")
    except InputError:
        pass


# Generated INI inventories, compared with ansible-core. The pieces are valid enough to
# reach deep semantics (nesting, pending children, precedence, ungrouped), and invalid
# enough (undefined or cyclic children, bad priorities) to compare rejections too.
GROUPS = ["all", "ungrouped", "web", "db", "app", "a-b"]
# "web" and "db" are group names too: Ansible's handling of such clashes must match.
HOSTS = "h1 h2 h3 web[1:2] db-[a:b] h4:2222 [::1]:22 10.0.0.[1:2] h1:2200 web db".split()
VALUES = [*"1 '1' yes True [1,2] None 1.5".split(), "\"'s'\"", "a\\ b", "\"{'a': 1}\"", '"x y"']
VAR_NAMES = ["x", "y", "ansible_user", "ansible_host"]


@st.composite
def host_lines(draw: st.DrawFn) -> str:
    parts = [draw(st.sampled_from(HOSTS))]
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*VAR_NAMES, "ansible_port", "ansible_group_priority"]))
        value = draw(st.sampled_from(["22", "'2222'"] if key == "ansible_port" else VALUES))
        parts.append(f"{key}={value}")
    if draw(st.booleans()):
        parts.append("# note")
    return " ".join(parts)


@st.composite
def var_lines(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from([*VAR_NAMES, "ansible_group_priority", "ansible_port"]))
    if key == "ansible_group_priority":
        value = draw(st.sampled_from(["1", "2", "3", "10", "abc"]))
    elif key == "ansible_port":
        value = draw(st.sampled_from(["22", "2200"]))
    else:
        value = draw(st.sampled_from(VALUES))
    return f"{key}={value}"


@st.composite
def ini_inventories(draw: st.DrawFn) -> str:
    lines = [draw(host_lines()) for _ in range(draw(st.integers(0, 2)))]
    for _ in range(draw(st.integers(1, 7))):
        group = draw(st.sampled_from(GROUPS))
        kind = draw(st.sampled_from(["", ":vars", ":children", ""]))
        lines.append(f"[{group}{kind}]")
        body = {"": host_lines(), ":vars": var_lines(), ":children": st.sampled_from(GROUPS)}
        lines += [draw(body[kind]) for _ in range(draw(st.integers(0, 3)))]
    return "\n".join(lines) + "\n"


# Where we refuse on purpose what ansible-core accepts (see the module docs of
# auditor.inventory): these messages, and only these, may differ in outcome.
KNOWN_STRICTER = (
    "has the name of a group",  # a host only in `all`, named like a group
    "must be a mapping",  # YAML: Ansible skips such a group or section with a warning
    "unexpected key",  # YAML: likewise a misspelt key
    "is empty",  # YAML: an empty document
    "ansible_port=",  # an unusable port (Host.from_vars)
)


def _same_as_ansible(theirs: dict[str, Any], load: Any, text: str, path: Path) -> None:
    event("ansible-core accepts" if "ok" in theirs else "ansible-core refuses")
    try:
        ours = load(text, str(path))
    except InputError as exc:
        if "ok" in theirs:
            assert any(known in str(exc) for known in KNOWN_STRICTER), exc
        return
    assert "ok" in theirs, f"ansible-core refuses what we accept: {theirs['error']}"
    assert_same_listing(ours.to_ansible_list(), theirs["ok"])


@FUZZ
@given(text=ini_inventories())
def test_fuzz_generated_ini_reads_as_ansible_reads_it(
    text: str, ansible_worker: AnsibleWorker, scratch: Path
) -> None:
    path = scratch / "generated.ini"
    path.write_text(text)
    _same_as_ansible(ansible_worker.list(path), load_ini, text, path)


def _yaml_groups(depth: int) -> st.SearchStrategy[Any]:
    host_vars = st.dictionaries(
        st.sampled_from(["v", "w", "ansible_port"]), st.sampled_from([22, "22", "x", None])
    )
    hosts = st.dictionaries(st.sampled_from(HOSTS), st.none() | host_vars, max_size=3)
    group_vars = st.dictionaries(
        st.sampled_from(["v", "w", "ansible_group_priority"]),
        st.sampled_from([1, 2, "3", "x", None, [1]]),
        max_size=2,
    )
    children = st.none() | st.sampled_from(GROUPS)
    if depth:
        children |= st.dictionaries(st.sampled_from(GROUPS), _yaml_groups(depth - 1), max_size=3)
    sections = {
        "hosts": st.none() | st.sampled_from(HOSTS) | hosts,
        "vars": st.none() | group_vars,
        "children": children,
    }
    return st.none() | st.fixed_dictionaries({}, optional=sections)


yaml_inventories = st.dictionaries(st.sampled_from(GROUPS), _yaml_groups(2), min_size=1)


@FUZZ
@given(document=yaml_inventories)
def test_fuzz_generated_yaml_reads_as_ansible_reads_it(
    document: Any, ansible_yaml_worker: AnsibleWorker, scratch: Path
) -> None:
    text = yaml.safe_dump(document)
    path = scratch / "generated.yml"
    path.write_text(text)
    _same_as_ansible(ansible_yaml_worker.list(path), load_yaml, text, path)


host_definitions = st.one_of(
    st.text(alphabet="ab09[]:.-_xzKé ", max_size=16),
    st.builds(
        "{}[{}:{}{}]{}{}".format,
        st.sampled_from(["web", "", "10.0.0.", "h-", "2001:db8::"]),
        st.sampled_from(["1", "01", "a", "A", "", "z", "9"]),
        st.sampled_from(["3", "03", "c", "C", "", "b", "12"]),
        st.sampled_from(["", ":2", ":0", ":x"]),
        st.sampled_from(["", ".example.com", "-[1:2]", "_", "-"]),
        st.sampled_from(["", ":22", ":", ":0"]),
    ),
)


@FUZZ
@given(pattern=host_definitions)
def test_fuzz_host_definitions_expand_as_ansible_expands_them(
    pattern: str, ansible_worker: AnsibleWorker
) -> None:
    theirs = ansible_worker.ask(op="expand", pattern=pattern)
    try:
        names, port = expand_ini_host(pattern)
    except ValueError as exc:
        # Where we refuse and ansible-core does not, it made no hosts (an empty range)
        # or far too many.
        if "ok" in theirs:
            assert not theirs["ok"][0] or len(theirs["ok"][0]) > MAX_EXPANSION, exc
        return
    assert "ok" in theirs, f"ansible-core refuses what we accept: {theirs['error']}"
    assert [names, port] == theirs["ok"]


# Characters that matter to shlex, and a few that only look like they might. Lines come
# from str.splitlines, so they hold no line breaks.
SHELL_TEXT = st.text(alphabet=" \t#'\"\\abc=x\u00a0\u2003é", max_size=30)
ANY_LINE = st.text(max_size=30).map(lambda text: "".join(text.splitlines()))


@FUZZ
@given(st.one_of(SHELL_TEXT, ANY_LINE))
def test_fuzz_split_words_is_shlex(line: str) -> None:
    try:
        expected: list[str] | None = shlex.split(line, comments=True)
    except ValueError:
        expected = None
    try:
        ours: list[str] | None = split_words(line)
    except ValueError:
        ours = None
    assert ours == expected


@FUZZ
@given(
    st.one_of(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]*", fullmatch=True),
        st.from_regex(r"[0-9]{1,20}", fullmatch=True),
        st.sampled_from(["True", "False", "None", "True-1j", "e-1", "0", "00", "007"]),
    )
)
def test_fuzz_value_shortcuts_agree_with_literal_eval(text: str) -> None:
    ours, reference = parse_value(text), literal_value(text)
    assert (type(ours), ours) == (type(reference), reference)


# YAML that uses anchors, aliases and merge keys, the way alias bombs and real inventories
# do; the alias bound (auditor.yamlbound) must leave only inventories or InputErrors.
YAML_ALIAS_PIECES = """\
all:
  hosts:
    h1: *d
    h2:
    h3: {<<: *d, z: 1}
  vars: *d
  vars: {big: [*a, *a, *a, *b, *b]}
  children:
    web: &w {hosts: {h4: *d}}
    db: *w
    app: {children: {web: *w, db: }}
a: &a [1, 2, 3]
b: &b [*a, *a, *a, *a]
d: &d {x: *a, y: *b}
e: [*d, *d, *b]
r: &r [*r]
- *a
""".splitlines()
yaml_with_aliases = st.lists(
    st.sampled_from(YAML_ALIAS_PIECES) | st.text(max_size=6), max_size=20
).map("\n".join)


@FUZZ
@given(yaml_with_aliases)
def test_fuzz_yaml_with_aliases_raises_only_input_errors(text: str) -> None:
    try:
        inventory = parse_inventory(text, "fuzz.yml")
    except InputError:
        return
    inventory.to_ansible_list()
    inventory.graph()


def _naive_size(node: yaml.Node) -> int:
    """Nodes with every alias written out, by plain recursion (small documents only)."""
    if isinstance(node, yaml.SequenceNode):
        return 1 + sum(_naive_size(child) for child in node.value)
    if isinstance(node, yaml.MappingNode):
        return 1 + sum(_naive_size(k) + _naive_size(v) for k, v in node.value)
    return 1


@FUZZ
@given(yaml_with_aliases)
def test_fuzz_alias_expansion_is_counted_exactly(text: str) -> None:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, ValueError):
        return
    if node is None:
        return
    try:
        _distinct, expanded = expanded_size(node)
    except AliasBombError:
        return  # an alias inside its own anchor: no finite size
    assert expanded == _naive_size(node)


# Names and values with lone surrogates (JSON's "\udfff" escapes): refused, or gone.
surrogate_text = st.one_of(
    st.sampled_from(["\udfff", "\ud800", "web\udc80", "h\udfff1"]), st.text(max_size=5)
)
script_documents = st.dictionaries(
    surrogate_text,
    st.fixed_dictionaries(
        {"hosts": st.lists(surrogate_text, max_size=3)},
        optional={"vars": st.dictionaries(surrogate_text, surrogate_text, max_size=2)},
    ),
    max_size=3,
).map(lambda groups: {**groups, "_meta": {"hostvars": {}}})


@FUZZ
@given(script_documents)
def test_fuzz_json_with_surrogates_loads_only_valid_text(document: dict[str, Any]) -> None:
    try:
        inventory = load_json(json.dumps(document), "fuzz.json")
    except InputError:
        return
    for host in inventory.hosts:
        host.name.encode("utf-8")
        for group in host.groups:
            group.encode("utf-8")
        json.dumps(dict(host.vars), ensure_ascii=False, default=str).encode("utf-8")
