"""`auditor.gate`: readiness for the gate counts hosts not audited as not ready."""

from __future__ import annotations

import dataclasses

from auditor.gate import Gate, evaluate, format_percent, gate_line
from auditor.models import (
    AuditedHost,
    AuditRun,
    Connection,
    HostResult,
    RunInfo,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome, Outcome
from tests.reporters.fleet import host, observe

CDN = Target(url="https://cask.qg3.apps.qualys.com/status", name="US3 CDN")


def fleet(
    ready: int, blocked: int = 0, not_audited: int = 0, skipped: int = 0, tls: int = 0
) -> AuditRun:
    results: list[HostResult] = []
    results += [
        AuditedHost(host(f"r{i}"), (observe(CDN, Outcome.REACHABLE),)) for i in range(ready)
    ]
    results += [
        AuditedHost(host(f"b{i}"), (observe(CDN, Outcome.REFUSED),)) for i in range(blocked)
    ]
    results += [
        AuditedHost(host(f"t{i}"), (observe(CDN, Outcome.TLS_FAILURE),)) for i in range(tls)
    ]
    results += [UnauditedHost(host(f"n{i}"), HostOutcome.UNREACHABLE) for i in range(not_audited)]
    for i in range(skipped):
        h = host(f"s{i}")
        skip = dataclasses.replace(h, connection=Connection.NONE, skip="network_cli")
        results.append(UnauditedHost(skip, HostOutcome.SKIPPED))
    return AuditRun(RunInfo(run_id="r", started="", targets=(CDN,)), tuple(results))


def test_hosts_not_audited_count_as_not_ready() -> None:
    # Every audited host reaches the CDN; two of twenty could not be audited: 90 %.
    verdict = evaluate(fleet(ready=18, not_audited=2), Gate(fail_under=95))
    assert not verdict.passed and verdict.exit_status == 1
    assert gate_line(verdict) == "gate 95 %: FAILED — US3 CDN 90 % (18 of 20 hosts)"


def test_the_gate_passes_at_exactly_the_threshold_and_ignores_skipped_hosts() -> None:
    verdict = evaluate(fleet(ready=19, blocked=1, skipped=5), Gate(fail_under=95))
    assert verdict.passed and verdict.exit_status == 0
    assert gate_line(verdict) == "gate 95 %: passed — lowest US3 CDN 95 % (19 of 20 hosts)"


def test_the_issue_example_line() -> None:
    verdict = evaluate(fleet(ready=1204, blocked=71, not_audited=37), Gate(fail_under=95))
    assert gate_line(verdict) == "gate 95 %: FAILED — US3 CDN 91.8 % (1,204 of 1,312 hosts)"


def test_a_gap_is_never_rounded_away() -> None:
    assert format_percent(1999, 2000) == "99.9 %"  # 99.95 is not all
    assert format_percent(2000, 2000) == "100 %"
    assert format_percent(949, 1000) == "94.9 %"
    assert format_percent(1204, 1312) == "91.8 %"  # nearest, like the report's headline
    assert format_percent(18999, 20000) == "95 %"  # 94.995 without a gate to fail
    assert format_percent(18999, 20000, fail_under=95) == "94.9 %"  # fails 95: never "95"
    assert format_percent(0, 0) == "n/a"


def test_no_hosts_in_scope_fails_the_gate() -> None:
    verdict = evaluate(fleet(ready=0, skipped=2), Gate(fail_under=0))
    assert not verdict.passed
    assert gate_line(verdict) == "gate 0 %: FAILED — US3 CDN: no hosts in scope"


def test_fail_on_fails_whenever_the_outcome_occurs_host_level_too() -> None:
    run = fleet(ready=50, tls=1, not_audited=1)
    verdict = evaluate(run, Gate(fail_on=("tls_failure",)))
    assert verdict.exit_status == 1
    assert gate_line(verdict) == "fail-on tls_failure: FAILED — seen 1 time"
    assert evaluate(run, Gate(fail_on=("unreachable",))).exit_status == 1
    clean = evaluate(run, Gate(fail_on=("proxy_denied",)))
    assert clean.exit_status == 0
    assert gate_line(clean) == "fail-on proxy_denied: passed — not seen"


def test_both_parts_in_one_line() -> None:
    verdict = evaluate(fleet(ready=99, tls=1), Gate(fail_under=90, fail_on=("tls_failure",)))
    assert gate_line(verdict) == (
        "gate 90 %: passed — lowest US3 CDN 99 % (99 of 100 hosts) | "
        "fail-on tls_failure: FAILED — seen 1 time"
    )
    assert verdict.exit_status == 1
