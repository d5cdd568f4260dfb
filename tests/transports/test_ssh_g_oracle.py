"""ssh config resolution compared with OpenSSH itself: for every case of a corpus of small
ssh_config files, `auditor inventory --resolve --json` and `ssh -G` (with the same `-F`, and
the inventory's user, port and jump host as `-l`, `-p` and `-J`) must agree on hostname,
port, user, identity files, ProxyJump and ProxyCommand.

Each case names the OpenSSH rule it exercises. Host and Match see `ansible_host`, as ssh
does when Ansible runs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import environ
from tests.support.ssh_g import Lookup, auditor, can_isolate, compare_with_ssh_g, ssh_g

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")


@dataclass(frozen=True)
class Case:
    config: str
    lookups: tuple[Lookup, ...]
    files: dict[str, str] = field(default_factory=dict)
    """Other files of the case (for Include), by name; `{dir}` is the case's directory."""
    canonical: bool = False
    """The config canonicalises names (the run must be isolated from any name server)."""
    records: dict[str, str] = field(default_factory=dict)
    """Names a private name server resolves (canonical cases only)."""


CASES: dict[str, Case] = {
    "match-final-rereads-the-config-with-the-hostname": Case(
        """\
Host web
    HostName 10.0.0.5
Match final host 10.0.0.5
    User finaluser
    Port 2201
Match !final
    IdentityFile /keys/first-pass-only
Host 10.0.0.5
    IdentityFile /keys/by-address
""",
        (Lookup("web"), Lookup("other")),
    ),
    "match-canonical-after-canonicalisation-that-falls-back": Case(
        """\
CanonicalizeHostname yes
CanonicalDomains lab.invalid
Host db
    Port 2202
Match canonical host db
    User canon
Match !canonical
    IdentityFile /keys/%h-first
""",
        # "DB" misses `Host db` in the first pass (Host is case-sensitive); the second pass
        # matches the lowercased name.
        (Lookup("db"), Lookup("DB"), Lookup("elsewhere")),
        canonical=True,
    ),
    "blocks-matching-the-canonical-name-apply": Case(
        """\
CanonicalizeHostname yes
CanonicalDomains nothere.test lab.test
Host db.lab.test
    User canonical-user
Match canonical host *.lab.test
    Port 2290
Match canonical originalhost db
    IdentityFile /keys/%h-%n
Host db
    IdentityFile /keys/first-pass
Host *.*.*
    User too-many-dots
""",
        (Lookup("db"), Lookup("DB"), Lookup("app.lab.test"), Lookup("nowhere")),
        canonical=True,
        records={"db.lab.test": "10.9.8.7", "app.lab.test": "10.9.8.8"},
    ),
    "canonicalisation-failure-without-fallback-is-an-error": Case(
        """\
CanonicalizeHostname yes
CanonicalDomains lab.invalid
CanonicalizeFallbackLocal no
Host *.example
    User dotted
""",
        # One dot is within CanonicalizeMaxDots (1): tried and failed. Two dots are not.
        (Lookup("db", expect_error=True), Lookup("a.b.example")),
        canonical=True,
    ),
    "addresses-are-canonicalised-and-names-lowercased": Case(
        """\
Host MiXeD
    HostName UPPER.Example
Host 127.1
    User shortform
""",
        (Lookup("127.1"), Lookup("MiXeD"), Lookup("mixed")),
    ),
    "include-glob-reads-files-sorted": Case(
        """\
Include {dir}/conf.d/*.conf
Host *
    User fallback
""",
        (Lookup("app"), Lookup("other")),
        files={
            # Written z, b, a: directory order is not sorted order.
            "conf.d/z.conf": "Host app\n    User from-z\n    Port 2299\n",
            "conf.d/b.conf": "Host app\n    User from-b\n",
            "conf.d/a.conf": "Host app\n    Port 2211\nMatch all\n    User leaked\n",
        },
    ),
    "include-in-an-inactive-block-never-matches": Case(
        """\
Host nothing-matches-this
    Include {dir}/inner.conf
Host app
    Port 2212
""",
        (Lookup("app"),),
        files={"inner.conf": "Host *\n    User inner\n"},
    ),
    "tokens-in-an-included-identityfile-use-the-final-hostname": Case(
        """\
Include {dir}/keys.conf
Host app
    HostName 10.0.0.9
    Port 2203
    User deploy
    HostKeyAlias app-alias
""",
        (Lookup("app"), Lookup("app", user="inv", port=2204), Lookup("plain")),
        files={
            "keys.conf": (
                "IdentityFile ~/.ssh/%h_%p_%r_%n_%k_%u_%%_%d\nIdentityFile /keys/%C-%L-%l-%i\n"
            )
        },
    ),
    "proxycommand-and-proxyjump-first-obtained-wins": Case(
        """\
Host direct
    ProxyCommand none
Host piped
    ProxyCommand nc %h %p
    ProxyJump jumper
Host nojump
    ProxyJump none
    ProxyCommand nc %h %p
Host *
    ProxyJump ops@bastion:2022
""",
        (
            Lookup("direct"),
            Lookup("piped"),
            Lookup("nojump"),
            Lookup("other"),
            Lookup("piped", jump="gw:2222"),
            Lookup("other", jump="none"),
        ),
    ),
    "trailing-comments-are-not-values-or-patterns": Case(
        """\
Host alpha # beta gamma
    Port 2240 # note
    User "quoted user" # note
Host beta
    Port 2241
""",
        (Lookup("alpha"), Lookup("beta"), Lookup("gamma")),
    ),
    "match-host-and-originalhost-ignore-case": Case(
        """\
Host named
    HostName Web1.Example.Test
Match originalhost NAM*
    Port 2250
Match host WEB1.EXAMPLE.*
    User matched
""",
        (Lookup("named"), Lookup("NAMED")),
    ),
    "host-patterns-are-separated-by-spaces-not-commas": Case(
        """\
Host alpha,beta
    User comma
Host gamma delta
    User space
""",
        (Lookup("alpha"), Lookup("beta"), Lookup("gamma"), Lookup("delta")),
    ),
    "identityfile-none-and-duplicates": Case(
        """\
Host nokeys
    IdentityFile none
Host twice
    IdentityFile /keys/one
    IdentityFile /keys/one
    IdentityFile /keys/two
Host *
    IdentityFile /keys/one
""",
        (Lookup("nokeys"), Lookup("twice"), Lookup("other")),
    ),
    "a-proxyjump-to-itself-is-a-loop": Case(
        """\
Host loop
    ProxyJump loop
Host notloop
    ProxyJump notloop:2200
""",
        (Lookup("loop", expect_error=True), Lookup("notloop"), Lookup("loop", port=2200)),
    ),
    "inventory-user-port-and-jump-win-over-the-config": Case(
        """\
Match user inv
    Port 2260
Host box
    HostName 192.0.2.7
    User carol
    Port 2200
    ProxyJump cfg-jump
""",
        (
            Lookup("box"),
            Lookup("box", user="inv"),
            Lookup("box", port=2222, jump="cli@gw:2022"),
            Lookup("box", jump="[2001:db8::1]:22"),
        ),
    ),
}


def _write_case(case: Case, root: Path) -> tuple[Path, Path]:
    for name, text in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{dir}", str(root)))
    config = root / "ssh_config"
    config.write_text(case.config.replace("{dir}", str(root)))
    lines = []
    for i, lookup in enumerate(case.lookups):
        line = f"h{i} ansible_host={lookup.address!r}"
        if lookup.user is not None:
            line += f" ansible_user={lookup.user!r}"
        if lookup.port is not None:
            line += f" ansible_port={lookup.port}"
        if lookup.jump is not None:
            line += f" ansible_ssh_common_args='-J {lookup.jump}'"
        lines.append(line)
    inventory = root / "inventory.ini"
    inventory.write_text("\n".join(lines) + "\n")
    return config, inventory


def resolve_json(
    inventory: Path, config: Path, *args: str, records: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    proc = auditor(
        "inventory",
        "-i",
        str(inventory),
        "--ssh-config",
        str(config),
        "--resolve",
        "--json",
        *args,
        records=records,
    )
    assert proc.returncode == 0, proc.stderr
    hosts: dict[str, dict[str, Any]] = json.loads(proc.stdout)["hosts"]
    return hosts


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_auditor_resolves_each_host_as_ssh_g_does(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    if case.canonical and not can_isolate():
        pytest.skip("canonicalisation would ask a name server: needs root and unshare")
    config, inventory = _write_case(case, tmp_path)
    resolved = resolve_json(inventory, config, records=case.records)
    texts = [case.config, *case.files.values()]
    expand = any("%" in text or "~" in text for text in texts)
    for i, lookup in enumerate(case.lookups):
        compare_with_ssh_g(
            config, lookup, resolved[f"h{i}"], expand_keys=expand, records=case.records
        )


@pytest.mark.parametrize(
    ("config", "what"),
    [
        ("Host a\n    ProxyJump root@:0\n", "ProxyJump"),
        ("Host a\n    Port 99999\n", "port"),
        ("Host a\n    NoSuchOption yes\n", "NoSuchOption"),
        ("Match host\n", "Match"),
        ('Host a\n    User "unterminated\n', "quotes"),
    ],
)
def test_a_config_ssh_refuses_is_a_one_line_input_error(
    config: str, what: str, tmp_path: Path
) -> None:
    path = tmp_path / "ssh_config"
    path.write_text(config)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("a\n")
    theirs = ssh_g(path, "a")
    assert theirs.returncode != 0
    proc = auditor("inventory", "-i", str(inventory), "--ssh-config", str(path), "--resolve")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, line
    assert f"{path}:" in line and what.lower() in line.lower(), line


def test_ignoreunknown_names_keywords_ssh_then_skips(tmp_path: Path) -> None:
    path = tmp_path / "ssh_config"
    path.write_text("IgnoreUnknown Use*\nUseKeychain yes\nHost a\n    Port 2270\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("a\n")
    assert ssh_g(path, "a").one("port") == "2270"
    resolved = resolve_json(inventory, path)
    assert resolved["a"]["port"] == 2270


@pytest.mark.parametrize("value", ["root@:0", "@gw", "gw:99999", "gw:x", "a,,b"])
def test_a_malformed_jump_host_flag_is_an_input_error_naming_it(value: str, tmp_path: Path) -> None:
    path = tmp_path / "ssh_config"
    path.write_text("")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("a\n")
    assert ssh_g(path, "a", jump=value).returncode != 0  # ssh refuses it too
    proc = auditor(
        "inventory",
        "-i",
        str(inventory),
        "--ssh-config",
        str(path),
        "--jump-host",
        value,
        "--resolve",
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: --jump-host:"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_malformed_inventory_jump_host_is_an_input_error_naming_the_host(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ssh_config"
    path.write_text("")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("web1 ansible_ssh_common_args='-o ProxyJump=root@:0'\n")
    proc = auditor("inventory", "-i", str(inventory), "--ssh-config", str(path), "--resolve")
    assert proc.returncode == 2, proc.stderr
    assert "ansible_ssh_common_args of host web1" in proc.stderr, proc.stderr


def test_match_exec_is_refused_and_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "ssh_config"
    path.write_text(f'Host *\n    User x\nMatch exec "touch {canary}"\n    Port 2\n')
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("a\n")
    proc = auditor("inventory", "-i", str(inventory), "--ssh-config", str(path), "--resolve")
    assert proc.returncode == 2
    assert f"{path}:3:" in proc.stderr and "Match exec" in proc.stderr
    assert not canary.exists()


def test_the_isolation_really_has_no_network() -> None:
    # The canonicalisation cases rely on this: no name server can be asked.
    if not can_isolate():
        pytest.skip("needs root and unshare")
    proc = subprocess.run(
        ["unshare", "-n", "ip", "-o", "link", "show", "up"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout


def test_an_included_file_others_can_write_is_refused_as_ssh_refuses_it(tmp_path: Path) -> None:
    included = tmp_path / "extra.conf"
    included.write_text("Host a\n    User from-include\n")
    included.chmod(0o666)
    path = tmp_path / "ssh_config"
    path.write_text(f"Include {included}\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("a\n")
    theirs = ssh_g(path, "a")
    assert theirs.returncode != 0 and "permissions" in theirs.stderr
    proc = auditor("inventory", "-i", str(inventory), "--ssh-config", str(path), "--resolve")
    assert proc.returncode == 2, proc.stderr
    assert f"{included}: bad ssh config: bad owner or permissions" in proc.stderr
    included.chmod(0o644)
    assert resolve_json(inventory, path)["a"]["user"] == "from-include"


def test_a_relative_include_is_read_from_the_users_ssh_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh" / "conf.d").mkdir(parents=True)
    (home / ".ssh" / "conf.d" / "web.conf").write_text("Host web\n    Port 2280\n")
    path = tmp_path / "ssh_config"
    path.write_text("Include conf.d/*.conf\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("web\n")
    env = environ(HOME=str(home))
    assert ssh_g(path, "web", env=env).one("port") == "2280"
    proc = auditor(
        "inventory", "-i", str(inventory), "--ssh-config", str(path), "--resolve", "--json", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hosts"]["web"]["port"] == 2280


def test_every_keyword_the_auditor_accepts_is_one_ssh_accepts(tmp_path: Path) -> None:
    from auditor.transports.sshconfig import _KEYWORDS

    path = tmp_path / "ssh_config"
    path.write_text("".join(f"{k} x\n" for k in sorted(_KEYWORDS - {"host", "match", "include"})))
    theirs = ssh_g(path, "a")
    assert theirs.returncode != 0  # "x" is no value for most of them; ssh says so per line
    assert "Bad configuration option" not in theirs.stderr, theirs.stderr
    path.write_text("NoSuchKeyword x\n")
    assert "Bad configuration option" in ssh_g(path, "a").stderr
