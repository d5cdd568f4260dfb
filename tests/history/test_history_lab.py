"""The history, the diff and the gate against the lab: real sshd hosts in network
namespaces, a real nftables rule changed on one host between two recorded runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from auditor_lab import LabInfo, netns, render
from auditor_lab.spec import CDN_ADDRESS, PROBE_URL

from tests.support.cli import BIN, audit_argv, environ

HOSTS = ("direct", "jump", "pwauth", "reject", "intercept")
LIMIT = ":".join(HOSTS)
DEADLINE = 300.0
DESIGNED = {
    "direct": "reachable",
    "jump": "reachable",
    "pwauth": "reachable",
    "reject": "refused",
    "intercept": "tls_failure",
}


def _env(lab: LabInfo) -> dict[str, str]:
    assert lab.ssh_password is not None
    return environ(AUDITOR_SSH_PASSWORD=lab.ssh_password.read_text().strip())


def _argv(lab: LabInfo, out: Path, db: Path, *args: str) -> list[str]:
    return audit_argv(
        lab.inventory,
        lab.known_hosts,
        PROBE_URL,
        out,
        "--limit",
        LIMIT,
        "--history",
        str(db),
        "--timeout",
        "60",
        "--connect-timeout",
        "10",
        "--probe-timeout",
        "4",
        "--probe-connect-timeout",
        "3",
        *args,
    )


def _audit(lab: LabInfo, out: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        _argv(lab, out, db, *args), capture_output=True, text=True, timeout=DEADLINE, env=_env(lab)
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _auditor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "auditor"), *args], capture_output=True, text=True, timeout=DEADLINE
    )


def _outcomes(out: Path) -> dict[str, Any]:
    report = json.loads((out / "report.json").read_text())
    return {
        h["host"]["name"]: h["observations"][0]["outcome"] if h["audited"] else h["host_outcome"]
        for h in report["hosts"]
    }


@pytest.fixture
def change_rules(lab: LabInfo) -> Iterator[Callable[[], None]]:
    """Yields the change made between two runs: `direct` starts rejecting TCP 443 to the
    CDN and `reject`'s rule is removed. Both hosts get their designed rules back afterwards,
    whatever the test did."""
    direct, reject = lab.host("direct"), lab.host("reject")
    assert not direct.nft_rules and reject.nft_rules
    blocked = replace(
        direct, nft_rules=(f"ip daddr {CDN_ADDRESS} tcp dport 443 reject with tcp reset",)
    )

    def change() -> None:
        netns.load_nft(direct.namespace, render.nft_ruleset(blocked))
        netns.run(
            ["ip", "netns", "exec", reject.namespace, "nft", "delete", "table", "inet", "audlab"]
        )

    def restore() -> None:
        netns.run(
            ["ip", "netns", "exec", direct.namespace, "nft", "delete", "table", "inet", "audlab"],
            check=False,
        )
        netns.run(
            ["ip", "netns", "exec", reject.namespace, "nft", "delete", "table", "inet", "audlab"],
            check=False,
        )
        netns.load_nft(reject.namespace, render.nft_ruleset(reject))

    try:
        yield change
    finally:
        restore()


def test_a_rule_changed_on_one_host_is_exactly_what_the_diff_names(
    lab: LabInfo, tmp_path: Path, change_rules: Callable[[], None]
) -> None:
    db = tmp_path / "history.sqlite"
    first = _audit(lab, tmp_path / "one", db)
    assert first.returncode == 1, first.stderr
    before = _outcomes(tmp_path / "one")
    assert before == DESIGNED
    change_rules()
    second = _audit(lab, tmp_path / "two", db)
    assert second.returncode == 1, second.stderr
    assert _outcomes(tmp_path / "two") == {**before, "direct": "refused", "reject": "reachable"}

    diff = _auditor("diff", "--history", str(db), "--json")
    assert diff.returncode == 1, diff.stderr  # a regression
    found = json.loads(diff.stdout)
    assert found["changes"] == [
        {
            "host": "direct",
            "url": PROBE_URL,
            "before": "reachable",
            "after": "refused",
            "change": "regression",
        },
        {
            "host": "reject",
            "url": PROBE_URL,
            "before": "refused",
            "after": "reachable",
            "change": "fix",
        },
    ]
    runs = json.loads(_auditor("runs", "--history", str(db), "--json").stdout)["runs"]
    assert [r["run_id"] for r in runs] == [found["new"]["run_id"], found["old"]["run_id"]]
    assert [r["state"] for r in runs] == ["finished", "finished"]

    # Secrets never reach the history: not the password sent to `pwauth`, in any file of it.
    assert lab.ssh_password is not None
    password = lab.ssh_password.read_text().strip().encode()
    for path in tmp_path.glob("history.sqlite*"):
        assert password not in path.read_bytes(), path


def test_two_lab_audits_started_at_once_are_both_recorded(lab: LabInfo, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    procs = [
        subprocess.Popen(
            _argv(lab, tmp_path / f"out{k}", db, "--forks", "2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(lab),
        )
        for k in (1, 2)
    ]
    errors = [p.communicate(timeout=DEADLINE)[1] for p in procs]
    assert [p.returncode for p in procs] == [1, 1], errors
    # (Also: the rules changed by the diff test were put back.)
    assert _outcomes(tmp_path / "out1") == _outcomes(tmp_path / "out2") == DESIGNED
    runs = json.loads(_auditor("runs", "--history", str(db), "--json").stdout)["runs"]
    assert len(runs) == 2
    assert all(
        (r["state"], r["hosts"], r["recorded"], r["audited"]) == ("finished", 5, 5, 5) for r in runs
    )
    # They ran at the same time: each started before the other finished.
    a, b = runs
    assert a["started"] <= b["finished"] and b["started"] <= a["finished"]


@pytest.mark.parametrize(
    ("gate", "status"),
    [
        # 3 of the 5 hosts reach the CDN: 60 %. Without a gate the run exits 1 (blocked).
        (("--fail-under", "60"), 0),
        (("--fail-under", "60.1"), 1),
        (("--fail-on", "tls_failure"), 1),
        (("--fail-on", "proxy_denied"), 0),
        (("--fail-under", "50", "--fail-on", "refused"), 1),
    ],
)
def test_the_gate_sets_the_exit_status_of_a_lab_audit(
    lab: LabInfo, tmp_path: Path, gate: tuple[str, ...], status: int
) -> None:
    proc = _audit(lab, tmp_path / "out", tmp_path / "h.sqlite", *gate)
    assert proc.returncode == status, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith(("gate ", "fail-on "))]
    assert len(lines) == 1
    if gate[0] == "--fail-under":
        verdict = "passed" if float(gate[1]) <= 60 else "FAILED"
        assert lines[0].startswith(f"gate {gate[1]} %: {verdict} — ")
        assert f"{PROBE_URL} 60 % (3 of 5 hosts)" in lines[0]


def test_a_host_not_audited_counts_against_the_gate(lab: LabInfo, tmp_path: Path) -> None:
    # `sshdown` cannot be connected to: 3 of 4 hosts is 75 %, though every audited host
    # reaches the CDN.
    argv = audit_argv(
        lab.inventory, lab.known_hosts, PROBE_URL, tmp_path / "out",
        "--limit", "direct:jump:pwauth:sshdown", "--no-history", "--fail-under", "80",
        "--connect-timeout", "5", "--retries", "0",
    )  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE, env=_env(lab))
    assert proc.returncode == 1, proc.stderr
    assert f"gate 80 %: FAILED — {PROBE_URL} 75 % (3 of 4 hosts)" in proc.stderr.splitlines()
