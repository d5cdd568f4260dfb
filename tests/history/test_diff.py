"""`auditor.diff`: one entry per host x URL that changed, with the kinds the issue names."""

from __future__ import annotations

from dataclasses import replace

import pytest

from auditor.diff import ChangeKind, Seen, classify, diff_runs, render_diff
from auditor.models import AuditedHost, AuditRun, HostResult, RunInfo, UnauditedHost
from auditor.outcomes import HostOutcome, Outcome
from tests.reporters.fleet import TARGETS, host, observe

A, B = TARGETS[0], TARGETS[1]


def audited(
    name: str, first: Outcome, second: Outcome = Outcome.REACHABLE, issuer: str = ""
) -> AuditedHost:
    return AuditedHost(host(name), (observe(A, first, tls_issuer=issuer), observe(B, second)))


def unaudited(name: str, reason: HostOutcome = HostOutcome.UNREACHABLE) -> UnauditedHost:
    return UnauditedHost(host(name), reason, "detail")


def run(run_id: str, *results: HostResult) -> AuditRun:
    return AuditRun(
        RunInfo(run_id=run_id, started="2026-01-01T00:00:00+00:00", targets=(A, B)), results
    )


def test_every_kind_of_change_is_named_once_per_host_and_url() -> None:
    old = run(
        "old",
        audited("steady", Outcome.REACHABLE),
        audited("broke", Outcome.REACHABLE),
        audited("mended", Outcome.TIMEOUT),
        audited("shifted", Outcome.REFUSED),
        audited("reissued", Outcome.TLS_FAILURE, issuer="CN=Old Proxy"),
        audited("lost", Outcome.REACHABLE),
        unaudited("back"),
        unaudited("reason", HostOutcome.UNREACHABLE),
        audited("gone", Outcome.REACHABLE),
    )
    new = run(
        "new",
        audited("steady", Outcome.REACHABLE),
        audited("broke", Outcome.REFUSED),
        audited("mended", Outcome.REACHABLE),
        audited("shifted", Outcome.TIMEOUT),
        audited("reissued", Outcome.TLS_FAILURE, issuer="CN=New Proxy"),
        unaudited("lost", HostOutcome.AUTH_FAILED),
        audited("back", Outcome.REACHABLE),
        unaudited("reason", HostOutcome.HOST_KEY_CHANGED),
        audited("fresh", Outcome.DNS_FAILURE),
    )
    found = diff_runs(old, new)
    got = [
        (c.kind, c.host, c.url, c.to_dict()["before"], c.to_dict()["after"]) for c in found.changes
    ]
    assert got == [
        (ChangeKind.REGRESSION, "broke", A.url, "reachable", "refused"),
        (ChangeKind.FIX, "mended", A.url, "timeout", "reachable"),
        (ChangeKind.CHANGED, "reason", A.url, "unreachable", "host_key_changed"),
        (ChangeKind.CHANGED, "reason", B.url, "unreachable", "host_key_changed"),
        (ChangeKind.CHANGED, "reissued", A.url, "tls_failure", "tls_failure"),
        (ChangeKind.CHANGED, "shifted", A.url, "refused", "timeout"),
        (ChangeKind.NOT_AUDITED, "lost", A.url, "reachable", "auth_failed"),
        (ChangeKind.NOT_AUDITED, "lost", B.url, "reachable", "auth_failed"),
        (ChangeKind.AUDITED_AGAIN, "back", A.url, "unreachable", "reachable"),
        (ChangeKind.AUDITED_AGAIN, "back", B.url, "unreachable", "reachable"),
        (ChangeKind.HOST_ADDED, "fresh", A.url, None, "dns_failure"),
        (ChangeKind.HOST_ADDED, "fresh", B.url, None, "reachable"),
        (ChangeKind.HOST_REMOVED, "gone", A.url, "reachable", None),
        (ChangeKind.HOST_REMOVED, "gone", B.url, "reachable", None),
    ]
    assert found.regressions == 1
    reissued = next(c for c in found.changes if c.host == "reissued")
    assert reissued.to_dict()["detail"] == "TLS issuer CN=Old Proxy -> CN=New Proxy"
    assert found.to_dict()["old"] == {"run_id": "old"} and found.to_dict()["new"] == {
        "run_id": "new"
    }


def test_the_same_run_twice_has_no_changes_and_no_regression() -> None:
    same = run("a", audited("x", Outcome.TIMEOUT), unaudited("y"))
    found = diff_runs(same, replace(same, info=replace(same.info, run_id="b")))
    assert found.changes == () and found.regressions == 0
    assert render_diff(found) == "no changes from a to b"


def test_a_url_only_one_run_audited_has_no_entries() -> None:
    old = AuditRun(
        RunInfo(run_id="o", started="", targets=(A,)),
        (AuditedHost(host("h"), (observe(A, Outcome.REACHABLE),)),),
    )
    new = run("n", audited("h", Outcome.REACHABLE, Outcome.TIMEOUT))
    assert diff_runs(old, new).changes == ()


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (Seen("reachable", True), Seen("reachable", True, "CN=Other"), None),
        (Seen("unreachable", False), Seen("unreachable", False), None),
        (None, None, None),
    ],
)
def test_what_is_not_a_change(
    before: Seen | None, after: Seen | None, kind: ChangeKind | None
) -> None:
    assert classify(before, after) is kind


def test_the_terminal_table_groups_by_change() -> None:
    old = run("o", audited("h1", Outcome.REACHABLE), audited("h2", Outcome.TIMEOUT))
    new = run("n", audited("h1", Outcome.REFUSED), audited("h2", Outcome.REACHABLE))
    lines = render_diff(diff_runs(old, new)).splitlines()
    assert lines[0] == "changes from o to n:"
    assert "regression (1)" in lines and "fix (1)" in lines
    assert lines.index("regression (1)") < lines.index("fix (1)")
    assert any(line.strip().startswith("h1") and "reachable -> refused" in line for line in lines)
