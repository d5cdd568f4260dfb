"""Hostile input: nothing injected into a host or the auditor's machine, nothing live in the
reports. The hosts are real OpenSSH servers on loopback; a canary file proves nothing ran."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import audit
from tests.support.loopback import Loopback, loopback_servers
from tests.support.sshd import LoopbackSSHD, loopback_sshd, sshd_available

pytestmark = pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH sshd")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    with loopback_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("canary") / "ran"


def hostile_urls(base: str, canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"{base}/$(touch$IFS{c})",
        f"{base}/`touch$IFS{c}`",
        f"{base}/;touch$IFS{c};",
        f"{base}/|touch$IFS{c}",
        f"{base}/&touch$IFS{c}&",
        f"{base}/%0atouch%20{c}%0a",
        f"{base}/$(New-Item$IFS{c})",
        f"{base}/;New-Item({c});",
        f"{base}/'\"$(touch {c})",
        f"{base}/\ntouch {c}",
        f"{base}/\uff04\uff08touch {c}\uff09",  # full-width look-alikes of $( )
        f"{base}/a\u202etxt.exe",
        f"{base}/{'A' * 5000}",
    ]


def test_hostile_urls_are_refused_or_probed_as_inert_literals(
    tmp_path: Path, servers: Loopback, sshd: LoopbackSSHD, canary: Path
) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text(sshd.inventory_line("target") + "\n")
    base = f"http://127.0.0.1:{servers.http_port}"
    probed = 0
    for i, url in enumerate(hostile_urls(base, canary)):
        proc = audit(
            "-i",
            str(inv),
            "--known-hosts",
            str(sshd.known_hosts),
            "--url",
            url,
            "-o",
            str(tmp_path / f"o{i}"),
            "-q",
        )
        assert "Traceback" not in proc.stderr
        if proc.returncode == 2:
            assert "bad URL" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
            continue
        probed += 1
        assert proc.returncode == 0, (url, proc.stderr)  # the literal path was fetched
        rows = list(csv.DictReader((tmp_path / f"o{i}" / "report.csv").open(newline="")))
        assert rows[0]["outcome"] == "reachable"
    assert probed >= 5
    assert not canary.exists()


def test_hostile_inventory_values_never_run(
    tmp_path: Path, sshd: LoopbackSSHD, servers: Loopback, canary: Path
) -> None:
    c = str(canary)
    lines = [
        sshd.inventory_line("name$(touch${IFS}" + c + ")"),
        sshd.inventory_line("user", ansible_user=f"'root$(touch {c})'"),
        sshd.inventory_line("user2", ansible_user=f"'root;touch {c}'"),
        sshd.inventory_line("proxycmd", ansible_ssh_common_args=f"'-o ProxyCommand=\"touch {c}\"'"),
        sshd.inventory_line("keyfile", ansible_ssh_private_key_file=f"'$(touch {c})'"),
        sshd.inventory_line("port", ansible_port="'22;touch'"),
    ]
    for i, line in enumerate(lines):
        inv = tmp_path / f"inv{i}.ini"
        inv.write_text("[hostile]\n" + line + "\n")
        url = f"http://127.0.0.1:{servers.http_port}/x"
        proc = audit(
            "-i",
            str(inv),
            "--known-hosts",
            str(sshd.known_hosts),
            "--url",
            url,
            "-o",
            str(tmp_path / f"o{i}"),
            "-q",
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 2, 3), (line, proc.stderr)
        if proc.returncode == 2:
            assert len(proc.stderr.strip().splitlines()) == 1
    assert not canary.exists()


def test_hostile_targets_file_fields_are_inert(
    tmp_path: Path, sshd: LoopbackSSHD, servers: Loopback, canary: Path
) -> None:
    targets = tmp_path / "targets.yml"
    targets.write_text(
        f'- name: "$(touch {canary}) <script>alert(1)</script>"\n'
        f'  category: "=HYPERLINK(\\"http://x\\")"\n'
        f"  url: http://127.0.0.1:{servers.http_port}/ok\n"
    )
    inv = tmp_path / "inv.ini"
    inv.write_text(sshd.inventory_line("target") + "\n")
    out = tmp_path / "o"
    proc = audit(
        "-i",
        str(inv),
        "--known-hosts",
        str(sshd.known_hosts),
        "--targets",
        str(targets),
        "-o",
        str(out),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    assert not canary.exists()
    _assert_inert_html((out / "report.html").read_text())


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.scripts += tag == "script"
        self.handlers += [(tag, k) for k, _ in attrs if k.startswith("on")]


def _assert_inert_html(text: str) -> None:
    markup = _Markup()
    markup.feed(text)
    assert markup.handlers == []
    assert "img" not in markup.tags
    assert "<script>alert" not in text and "<img src=x" not in text and "<b onmouseover" not in text


HOSTILE_CURL = r"""#!/bin/sh
# A curl that answers with crafted text, first on the session's PATH.
printf '*  issuer: CN=<script>alert("issuer")</script>\033[31mRED;O==cmd|x\n' >&2
printf 'curl: (60) =cmd|'"'"' /C calc'"'"'!A0 <img src=x onerror=alert(1)> \033]0;pwned\007 \033[2J \377\376 end\n' >&2
exit 60
"""

HOSTILE_HOSTNAME = r"""#!/bin/sh
printf '<b onmouseover=alert(2)>evil</b>\033[5m+SUM(1)\n'
"""


@pytest.fixture(scope="module")
def hostile_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    tools = tmp_path_factory.mktemp("hostile-bin")
    for name, body in (("curl", HOSTILE_CURL), ("hostname", HOSTILE_HOSTNAME)):
        (tools / name).write_text(body)
        (tools / name).chmod(0o755)
    env = {"PATH": f"{tools}:/usr/bin:/bin"}
    with loopback_sshd(tmp_path_factory.mktemp("hsshd"), env=env) as server:
        yield server


@pytest.fixture(scope="module")
def hostile_run(
    tmp_path_factory: pytest.TempPathFactory, hostile_sshd: LoopbackSSHD
) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("hostile-run")
    inv = tmp / "inv.ini"
    inv.write_text(hostile_sshd.inventory_line("liar") + "\n")
    out = tmp / "o"
    proc = audit(
        "-i",
        str(inv),
        "--known-hosts",
        str(hostile_sshd.known_hosts),
        "--url",
        "https://127.0.0.1:9/status",
        "-o",
        str(out),
    )
    assert proc.returncode == 1, proc.stderr
    return out, proc.stderr


def test_hostile_probe_output_leaves_no_live_markup_in_html(hostile_run: tuple[Path, str]) -> None:
    out, _ = hostile_run
    _assert_inert_html((out / "report.html").read_text())


def test_hostile_probe_output_is_neutralised_in_csv(hostile_run: tuple[Path, str]) -> None:
    out, _ = hostile_run
    rows = list(csv.reader((out / "report.csv").open(newline="", encoding="utf-8")))
    for row in rows[1:]:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), cell
            assert "\x1b" not in cell and "\x07" not in cell
    detail = rows[1][rows[0].index("detail")]
    assert detail.startswith("'=cmd")


def test_hostile_probe_output_is_valid_json_and_xml(hostile_run: tuple[Path, str]) -> None:
    out, _ = hostile_run
    report: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    (host,) = report["hosts"]
    obs = host["observations"][0]
    assert obs["outcome"] == "tls_failure"
    assert "\x1b" not in json.dumps(report, ensure_ascii=False)
    ET.parse(out / "junit.xml")
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        json.loads(line)


def test_hostile_probe_output_cannot_drive_the_terminal(hostile_run: tuple[Path, str]) -> None:
    _, stderr = hostile_run
    assert "\x1b" not in stderr and "\x07" not in stderr
    assert "liar" in stderr
