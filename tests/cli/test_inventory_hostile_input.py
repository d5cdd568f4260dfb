"""Hostile text in inventories and targets files: refused or made safe, never a crash.

- Every string entering a run must be valid text: a lone surrogate (JSON `"\\udfff"`) in a
  group name, host name or variable is refused with exit 2 naming the file, instead of
  making the group's hosts vanish from results.jsonl.
- An inventory path that is not UTF-8 (bytes in argv) is a one-line error, exit 2.
- A results line that cannot be written stops the run with an error: never a silent skip.
- Names from input files reach the terminal without escape sequences, in error messages
  and in `auditor inventory --graph`.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.inventory import load_inventory
from auditor.models import Connection, Host, Platform, RunInfo, UnauditedHost
from auditor.outcomes import HostOutcome
from auditor.results import ResultsWriter, read_results
from tests.support.cli import BIN
from tests.support.loopback import Loopback, loopback_servers

# What a hostile name may carry: clear screen (CSI), a window title (OSC 0), a hyperlink
# (OSC 8), an 8-bit CSI, C0/C1 controls and a right-to-left override.
ESCAPES = ("\x1b", "\x9b", "\x07", "\x9d", "\u202e", "\x08")


def _run(*args: str | bytes, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = args[0] if isinstance(args[0], str) else args[0].decode()
    return subprocess.run(
        [str(BIN / command), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _one_line_exit_2(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ('{"web\\udfff": {"hosts": ["h1", "h2"]}, "_meta": {"hostvars": {}}}', "group name"),
        ('{"web": {"hosts": ["h1", "h\\udfff"]}, "_meta": {"hostvars": {}}}', "host name"),
        ('{"web": {"hosts": ["h1"], "vars": {"x": ["a", "\\ud800"]}}}', "variable 'x'"),
        ('{"web": {"hosts": ["h1"]}, "_meta": {"hostvars": {"h1": {"\\udc00": 1}}}}', "variable"),
        ('{"all": {"hosts": {"h\\udfff": {}}}}', "host name"),
    ],
)
def test_a_lone_surrogate_in_a_json_inventory_is_refused(
    tmp_path: Path, document: str, fragment: str
) -> None:
    inv = tmp_path / "inv.json"
    inv.write_text(document)
    out = tmp_path / "out"
    proc = _run("audit", "-i", str(inv), "-o", str(out))
    _one_line_exit_2(proc, f"{inv}: ", fragment, "not valid text")
    assert not out.exists()


def test_a_lone_surrogate_from_an_ini_or_yaml_escape_is_refused(tmp_path: Path) -> None:
    ini = tmp_path / "inv.ini"
    ini.write_text("[w]\nh1 x=\"'\\udfff'\"\n")
    with pytest.raises(InputError, match=r"variable 'x' of host 'h1' is not valid text"):
        load_inventory(ini)
    # YAML's own escape is refused by the parser (libyaml checks the code point).
    yml = tmp_path / "inv.yml"
    yml.write_text('all:\n  hosts:\n    "h\\udfff":\n')
    with pytest.raises(InputError, match=r"inv.yml:3: invalid YAML: .*Unicode"):
        load_inventory(yml)


def test_a_non_utf8_inventory_path_is_one_line_exit_2(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/inv\xff.ini"
    with open(raw, "w") as fh:
        fh.write("box ansible_connection=local\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [os.fsencode(BIN / "audit"), b"-i", raw, b"-o", os.fsencode(out)],
        capture_output=True,
        timeout=300,
    )
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "inv\\xff.ini" in lines[0] and "not valid UTF-8" in lines[0]
    assert not out.exists()


def test_a_lone_surrogate_in_a_result_is_written_not_dropped(tmp_path: Path) -> None:
    """Text from a host may still hold one; the line is written with JSON escapes."""
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.start(RunInfo(run_id="r", started="2026-01-01T00:00:00"))
    host = Host("h1", "h1.example", Connection.SSH, Platform.LINUX)
    writer.host(UnauditedHost(host, HostOutcome.ERROR, "bad \udfff byte"))
    writer.close()
    run = read_results(path)
    assert [r.host.name for r in run.results] == ["h1"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _small_files(limit: int) -> None:
    # A real write failure: past RLIMIT_FSIZE write() fails with EFBIG (SIGXFSZ ignored).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_results_line_that_cannot_be_written_stops_the_run(
    tmp_path: Path, servers: Loopback
) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("".join(f"box{i} ansible_connection=local\n" for i in range(3)))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["CURL_CA_BUNDLE"] = str(servers.ca_bundle)
    url = f"https://localhost:{servers.https_port}/status"
    proc = subprocess.run(
        # No history: its database alone is larger than the file size limit.
        [str(BIN / "audit"), "-i", str(inv), "--url", url, "-o", str(out), "-q", "--no-history"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=lambda: _small_files(1500),  # room for the run line, not for 3 hosts
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write results" in lines[0], proc.stderr
    assert not (out / "report.json").exists()  # no report pretends the run was complete


def _no_escapes(text: str) -> None:
    for char in ESCAPES:
        assert char not in text, (char, text)


def test_an_ini_section_name_cannot_reach_the_terminal_raw(tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    # CSI sequences hold no ']' or space, so this is a valid section name for a group
    # that is never defined: the error message quotes it.
    inv.write_text("[h]\nh1\n[g\x1b[2J\x1b[31m\x9b1m:vars]\nx=1\n")
    proc = _run("auditor", "inventory", "-i", str(inv))
    line = _one_line_exit_2(proc, f"{inv}:3:")
    _no_escapes(line)


def test_a_targets_file_key_cannot_reach_the_terminal_raw(tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("box ansible_connection=local\n")
    targets = tmp_path / "t.yml"
    targets.write_text(
        json.dumps([{"url": "https://example.com/", "\x1b[2J\x1b]8;;http://evil/\x07x": 1}])
    )
    proc = _run("audit", "-i", str(inv), "--targets", str(targets), "-o", str(tmp_path / "o"))
    line = _one_line_exit_2(proc, "unknown target field")
    _no_escapes(line)


def test_inventory_graph_and_list_print_no_escape_sequences(tmp_path: Path) -> None:
    hostile_host = "h\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
    hostile_group = "g\u202eexe.\x9b2J\x08"
    inv = tmp_path / "inv.json"
    inv.write_text(
        json.dumps(
            {
                hostile_group: {"hosts": [hostile_host, "plain"]},
                "_meta": {"hostvars": {hostile_host: {"ansible_connection": "x\x1b[31m"}}},
            }
        )
    )
    graph = _run("auditor", "inventory", "-i", str(inv), "--graph")
    assert graph.returncode == 0, graph.stderr
    _no_escapes(graph.stdout)
    _no_escapes(graph.stderr)  # the unknown-plugin warning quotes the names
    assert "unknown connection plugin" in graph.stderr
    assert "plain" in graph.stdout and "click" in graph.stdout
    listed = _run("auditor", "inventory", "-i", str(inv), "--list")
    assert listed.returncode == 0, listed.stderr
    _no_escapes(listed.stdout)
    assert hostile_host in json.loads(listed.stdout)["_meta"]["hostvars"]
