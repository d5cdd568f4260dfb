"""WinRM with server certificate validation off, against the lab's WS-Management endpoint.

One inventory line (`ansible_winrm_server_cert_validation=ignore` with Basic auth) would send
the fleet's WinRM password in clear text to whoever answers. The inventory alone cannot do
that: only --winrm-allow-insecure can, and then every report says so for that host.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.transports.winrm import CERT_VALIDATION_WARNING
from tests.support.cli import audit, environ
from tests.support.loopback import Loopback, loopback_servers
from tests.support.wsman_env import PASSWORD, USER, audit_log, endpoint, endpoint_tls


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    with loopback_servers(tmp_path_factory.mktemp("loopback")) as lb:
        yield lb


def _inventory(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "win.ini"
    path.write_text(
        "[windows]\n"
        f"win1 ansible_connection=winrm ansible_host=127.0.0.1 ansible_port={port} "
        f"ansible_user={USER} ansible_winrm_scheme=https ansible_winrm_transport=basic "
        "ansible_winrm_server_cert_validation=ignore\n"
        f"win2 ansible_connection=winrm ansible_host=127.0.0.1 ansible_port={port} "
        f"ansible_user={USER} ansible_winrm_scheme=https ansible_winrm_transport=basic\n"
    )
    return path


def test_basic_without_certificate_validation_needs_the_flag_and_is_flagged_per_host(
    loopback: Loopback, tmp_path: Path
) -> None:
    tls = endpoint_tls(tmp_path / "pki")
    log = tmp_path / "actions.jsonl"
    config = {
        "auth": ["basic"],
        "tls": {"cert": str(tls.cert), "key": str(tls.key)},
        "network": {"hosts": {"localhost": "127.0.0.1"}, "ca_bundle": str(loopback.ca_bundle)},
        "audit_log": str(log),
    }
    url = f"https://localhost:{loopback.https_port}/status"
    env = environ(AUDITOR_WINRM_PASSWORD=PASSWORD)
    with endpoint(tmp_path / "ep", **config) as wsman:
        inventory = _inventory(tmp_path, wsman.port)
        common = ("-i", str(inventory), "--url", url, "--winrm-ca-bundle", str(tls.ca))

        refused = audit(*common, "-o", str(tmp_path / "refused"), env=env, timeout=120)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines() == [
            f"error: {inventory}:2: host win1: ansible_winrm_server_cert_validation=ignore "
            "with basic auth would give the password to whoever answers; only the command "
            "line can allow that (--winrm-allow-insecure)"
        ]
        assert not (tmp_path / "refused").exists()
        assert audit_log(log) == []  # nothing reached the endpoint

        out = tmp_path / "allowed"
        allowed = audit(*common, "--winrm-allow-insecure", "-o", str(out), env=env, timeout=120)
    assert allowed.returncode == 0, allowed.stderr
    assert PASSWORD not in allowed.stderr
    # Loud in the terminal, naming the host, and only that host.
    assert f"WARNING: {CERT_VALIDATION_WARNING}: win1\n" in allowed.stderr
    report = json.loads((out / "report.json").read_text())
    hosts = {h["host"]["name"]: h for h in report["hosts"]}
    assert hosts["win1"]["warnings"] == [CERT_VALIDATION_WARNING]
    assert hosts["win2"]["warnings"] == []
    assert f"{CERT_VALIDATION_WARNING}: win1" in report["run"]["warnings"]
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_host = {r["host"]["name"]: r for r in results if r["type"] == "host"}
    assert by_host["win1"]["warnings"] == [CERT_VALIDATION_WARNING]
    rows = {r["host"]: r for r in csv.DictReader((out / "report.csv").open(newline=""))}
    assert rows["win1"]["warnings"] == CERT_VALIDATION_WARNING
    assert rows["win2"]["warnings"] == ""
    assert CERT_VALIDATION_WARNING in (out / "report.html").read_text()
    cases = {
        case.get("name"): case for case in ET.parse(out / "junit.xml").getroot().iter("testcase")
    }
    assert cases["win1"].findtext("system-err") == f"WARNING: {CERT_VALIDATION_WARNING}"
    assert cases["win2"].find("system-err") is None
    for path in out.iterdir():
        assert PASSWORD not in path.read_text(errors="replace"), path
