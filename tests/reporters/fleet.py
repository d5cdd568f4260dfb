"""Hand-built audit runs for the reporter tests.

`sample_run()` has audited hosts that reach everything, blocked hosts covering every
target-level outcome, and not-audited hosts covering every host-level outcome, spread over
groups and both platforms; some of them carry hostile text (HTML/script injection, ANSI
escapes, spreadsheet formulas, XML-forbidden characters, lone surrogates, NaN timings).
`big_run(n)` is a realistic large fleet for size and speed checks.
"""

from __future__ import annotations

import itertools

from auditor.models import (
    AuditedHost,
    AuditRun,
    Connection,
    Host,
    HostResult,
    Observation,
    Platform,
    RunInfo,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome, Outcome

NOT_AUDITED_REASONS = [o for o in HostOutcome if o is not HostOutcome.SKIPPED]

TARGETS = (
    Target(
        url="https://cask.qg3.apps.qualys.com/status",
        name="US3 CDN",
        category="cdn",
        source="https://docs.example.com/qualys-urls",
    ),
    Target(
        url="https://qagpublic.qg3.apps.qualys.com/status",
        name="US3 platform",
        category="platform",
        expected_status=(200, 204),
        verified=False,
        source="user",
    ),
    Target(url="http://repo.example.com:8080/health", name="Patch repo", category="custom"),
)

HOSTILE_NAME = '<img src=x onerror="alert(1)"></script><script>alert(2)</script>'
HOSTILE_DETAIL = (
    "</script><script>alert('d')</script> <b onmouseover=alert(3)>x</b> "
    "\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x9b1m ]]> & \x00\x01\x0b\ud800 'quote\" "
    '<a href="https://evil.example.com/">link</a>'
)
FORMULA_NAME = '=HYPERLINK("http://evil.example.com","click")'


def host(
    name: str,
    groups: tuple[str, ...] = ("web",),
    platform: Platform = Platform.LINUX,
    address: str | None = None,
) -> Host:
    connection = Connection.WINRM if platform is Platform.WINDOWS else Connection.SSH
    return Host(
        name=name,
        address=address if address is not None else f"10.0.0.{abs(hash(name)) % 250 + 1}",
        connection=connection,
        platform=platform,
        groups=groups,
        vars={"ansible_password": "s3cret-must-not-leak"},
    )


def observe(target: Target, outcome: Outcome, detail: str = "", **extra: object) -> Observation:
    status = 200 if outcome is Outcome.REACHABLE else None
    fields: dict[str, object] = {
        "http_status": status,
        "remote_ip": "192.0.2.10",
        "tool": "curl",
        "time_dns": 0.004,
        "time_connect": 0.012,
        "time_tls": 0.031,
        "time_total": 0.052,
    }
    fields.update(extra)
    return Observation(target.url, outcome, detail, **fields)  # type: ignore[arg-type]


def all_reachable(h: Host, targets: tuple[Target, ...] = TARGETS) -> AuditedHost:
    return AuditedHost(
        h,
        tuple(observe(t, Outcome.REACHABLE) for t in targets),
        duration=1.2,
        runner="runner-1",
    )


def blocked_on_first(h: Host, outcome: Outcome, detail: str, **extra: object) -> AuditedHost:
    observations = [observe(TARGETS[0], outcome, detail, **extra)]
    observations += [observe(t, Outcome.REACHABLE) for t in TARGETS[1:]]
    return AuditedHost(h, tuple(observations), duration=2.5, runner="runner-1")


BLOCKED_DETAILS: dict[Outcome, tuple[str, dict[str, object]]] = {
    Outcome.DNS_FAILURE: ("Could not resolve host: cask.qg3.apps.qualys.com", {}),
    Outcome.REFUSED: ("Failed to connect to cask.qg3.apps.qualys.com port 443: refused", {}),
    Outcome.TIMEOUT: ("Connection timed out after 10001 milliseconds", {"time_total": 10.0}),
    Outcome.TLS_FAILURE: (
        "SSL certificate problem: unable to get local issuer certificate",
        {"tls_issuer": "CN=Corp Interception CA, O=BlueCoat"},
    ),
    Outcome.PROXY_DENIED: (
        "CONNECT tunnel failed, response 403",
        {"proxy": "http://proxy.dc2.example.com:3128", "http_status": 403},
    ),
    Outcome.HTTP_ERROR: ("unexpected status 503", {"http_status": 503}),
    Outcome.ERROR: ("curl exited 77", {"exit_code": 77}),
}


def sample_run(interrupted: bool = False) -> AuditRun:
    """A small run with every outcome, both levels, several groups and hostile text."""
    results: list[HostResult] = [
        all_reachable(host("web-01", ("web", "prod"))),
        all_reachable(host("web-02", ("web", "prod"))),
        all_reachable(host("win-01", ("windows", "prod"), Platform.WINDOWS)),
        all_reachable(host("lonely", ())),
    ]
    for index, (outcome, (detail, extra)) in enumerate(BLOCKED_DETAILS.items()):
        groups = ("db", "prod") if index % 2 else ("dc2",)
        platform = Platform.WINDOWS if index == 3 else Platform.LINUX
        results.append(
            blocked_on_first(
                host(f"blk-{outcome.value}", groups, platform), outcome, detail, **extra
            )
        )
    # One host blocked on every URL, with hostile text everywhere a host can put it.
    results.append(
        AuditedHost(
            host(HOSTILE_NAME, ("dmz",), address="\x1b[31m10.6.6.6"),
            (
                observe(TARGETS[0], Outcome.TLS_FAILURE, HOSTILE_DETAIL, tls_issuer=HOSTILE_NAME),
                observe(
                    TARGETS[1],
                    Outcome.HTTP_ERROR,
                    "=cmd|' /C calc'!A0",
                    http_status=500,
                    time_total=float("nan"),
                    time_dns=float("inf"),
                ),
                observe(TARGETS[2], Outcome.REFUSED, "-2+3", proxy="@SUM(1+1)"),
            ),
            duration=float("nan"),
            runner="\trunner\x1b[2J",
        )
    )
    results.append(blocked_on_first(host(FORMULA_NAME, ("dmz",)), Outcome.TIMEOUT, "+1-1"))
    # Every reason a host could not be audited; skipped hosts (not audited by design)
    # have their own runs in test_reporters_skipped.
    for reason in NOT_AUDITED_REASONS:
        windows = reason in (HostOutcome.AUTH_FAILED, HostOutcome.PROBE_UNAVAILABLE)
        results.append(
            UnauditedHost(
                host(
                    f"na-{reason.value}",
                    ("db",) if windows else ("web", "dc2"),
                    Platform.WINDOWS if windows else Platform.LINUX,
                ),
                reason,
                f"{reason.value} detail",
                duration=0.5,
            )
        )
    results.append(
        UnauditedHost(
            host("na-hostile\x1b]0;title\x07", ("dmz",)),
            HostOutcome.ERROR,
            HOSTILE_DETAIL,
            runner="@runner",
        )
    )
    info = RunInfo(
        run_id="run-2024-0001",
        started="2024-05-01T10:00:00Z",
        finished="2024-05-01T10:02:03Z",
        duration=123.4,
        inventory="inventories/prod.ini",
        targets=TARGETS,
        tool_version="0.1.0",
        runners=("runner-1",),
        options={"concurrency": "50", "timeout": "10"},
        warnings=("host key checking was disabled (--insecure-host-keys)",),
        interrupted=interrupted,
    )
    return AuditRun(info, tuple(results))


def counts(run: AuditRun) -> tuple[int, int, int]:
    """(audited hosts, blocked host x URL verdicts, not-audited hosts)."""
    audited = [r for r in run.results if isinstance(r, AuditedHost)]
    blocked = sum(1 for r in audited for o in r.observations if o.outcome is not Outcome.REACHABLE)
    return len(audited), blocked, len(run.results) - len(audited)


def big_run(n: int = 20_000) -> AuditRun:
    """n hosts x 3 URLs: ~90 % fully reachable, ~6 % blocked, ~4 % not audited."""
    failing = itertools.cycle(list(BLOCKED_DETAILS.items()))
    reasons = itertools.cycle(NOT_AUDITED_REASONS)
    results: list[HostResult] = []
    groups = [f"site-{i:02d}" for i in range(40)]
    for i in range(n):
        platform = Platform.WINDOWS if i % 5 == 0 else Platform.LINUX
        h = Host(
            name=f"host-{i:05d}.{groups[i % 40]}.corp.example.com",
            address=f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}",
            connection=Connection.WINRM if platform is Platform.WINDOWS else Connection.SSH,
            platform=platform,
            groups=(groups[i % 40], "prod" if i % 3 else "staging"),
        )
        roll = i % 100
        if roll < 4:
            reason = next(reasons)
            results.append(UnauditedHost(h, reason, f"{reason.value}: {h.address}:22 after 10.0 s"))
        elif roll < 10:
            outcome, (detail, extra) = next(failing)
            results.append(blocked_on_first(h, outcome, f"{detail} (from {h.address})", **extra))
        else:
            results.append(
                AuditedHost(
                    h,
                    tuple(
                        observe(
                            t,
                            Outcome.REACHABLE,
                            tls_issuer="C=US, O=DigiCert Inc, CN=DigiCert Global G2 TLS RSA "
                            "SHA256 2020 CA1",
                            remote_ip=f"203.0.113.{i % 200}",
                            time_total=0.05 + (i % 97) / 1000,
                        )
                        for t in TARGETS
                    ),
                    duration=1.0 + (i % 13) / 10,
                    runner="runner-1",
                )
            )
    info = RunInfo(
        run_id="big",
        started="2024-05-01T10:00:00Z",
        duration=3600.0,
        inventory="prod.ini",
        targets=TARGETS,
        tool_version="0.1.0",
    )
    return AuditRun(info, tuple(results))
