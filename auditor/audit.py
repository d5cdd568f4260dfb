"""One audit, end to end: inventory -> targets -> scheduler -> results -> reports.

Plain functions under the click layer; nothing here prints or exits.
"""

from __future__ import annotations

import asyncio
import platform as pyplatform
import secrets
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from auditor import __version__
from auditor.models import AuditedHost, Connection, Host, HostResult, Target
from auditor.probes import ProbeSettings, Scrubber
from auditor.reportdir import DirIdentity, prepare
from auditor.results import AuditRun, ResultsWriter, RunInfo
from auditor.scheduler import Probes, Schedule, run_audit
from auditor.secret import BECOME_PASSWORD_VARS, SSH_PASSWORD_VARS, WINRM_PASSWORD_VARS
from auditor.settings import ReportSettings, SSHSettings, WinRMSettings
from auditor.transports.base import SettingsSource, Transport


@dataclass(frozen=True)
class AuditConfig:
    """Everything one run needs, already validated by the caller."""

    hosts: tuple[Host, ...]
    targets: tuple[Target, ...]
    out_dir: Path
    inventory: str = ""
    formats: tuple[str, ...] = ReportSettings.formats
    report_mode: int = ReportSettings.mode
    schedule: Schedule = field(default_factory=Schedule)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    ssh: SSHSettings = field(default_factory=SSHSettings)
    winrm: WinRMSettings = field(default_factory=WinRMSettings)
    options_shown: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()
    host_lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """The inventory line of each host, for naming a host's bad setting."""
    out_dir_id: DirIdentity | None = None
    """The report directory as prepared; a directory swapped in later is refused."""


class RunSink(Protocol):
    """Another consumer of the results stream (the run history): told of the run when it
    starts, of each host's result as kept (scrubbed, with its warnings), and of the run as
    it ended. It must not raise: a sink that cannot keep up keeps its own error."""

    def start(self, info: RunInfo) -> None: ...

    def host(self, result: HostResult) -> None: ...

    def end(self, run: AuditRun) -> None: ...


TransportFactory = Callable[[Connection, AuditConfig], Transport]
Transports = Mapping[Connection, Transport]


def prepare_transports(config: AuditConfig, make_transport: TransportFactory) -> Transports:
    """One prepared transport per connection kind of the run's hosts.

    Every setting is checked and loaded here, before any host is contacted and before the
    report directory exists: a bad one raises InputError and nothing has happened yet."""
    source = SettingsSource(config.inventory, config.host_lines)
    transports: dict[Connection, Transport] = {}
    # Skipped hosts (no transport for their connection) are never handed to one.
    audited = [h for h in config.hosts if not h.skip]
    for connection in dict.fromkeys(h.connection for h in audited):
        transport = make_transport(connection, config)
        transport.prepare([h for h in audited if h.connection is connection], source)
        transports[connection] = transport
    return MappingProxyType(transports)


def host_warnings(transports: Transports, hosts: Sequence[Host]) -> Mapping[str, tuple[str, ...]]:
    """Per host, the trust its transport was told to weaken (empty for most hosts)."""
    found = {}
    for host in hosts:
        if host.skip:
            continue
        warnings = transports[host.connection].host_warnings(host)
        if warnings:
            found[host.name] = warnings
    return MappingProxyType(found)


def prepare_out_dir(path: Path, force: bool, mode: int) -> DirIdentity:
    """Create the report directory, or accept an existing one only if this user owns it,
    nobody else can write to it, and it is empty (or `force`); see `auditor.reportdir`."""
    with prepare(path, force, mode) as directory:
        return directory.identity


def default_out_dir() -> Path:
    """A fresh name per run: the UTC second plus 32 random bits, so another local user cannot
    predict it and plant the directory (or a link) before the run makes it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(f"audit-report-{stamp}-{secrets.token_hex(4)}")


def default_runner() -> str:
    return pyplatform.node() or "runner"


def execute(
    config: AuditConfig,
    transports: Transports,
    on_result: Callable[[HostResult], None] | None = None,
    sinks: Sequence[RunSink] = (),
) -> tuple[AuditRun, int | None]:
    """Run the audit with `transports` (from `prepare_transports`); returns the run and the
    signal number that interrupted it, if any.

    Results stream to `results.jsonl` in the report directory as each host finishes, each
    with the warnings its transport gave for it.
    """
    warned = host_warnings(transports, config.hosts)
    started = datetime.now(UTC)
    info = RunInfo(
        run_id=secrets.token_hex(8),
        started=started.isoformat(timespec="seconds"),
        inventory=config.inventory,
        targets=config.targets,
        tool_version=__version__,
        runners=(config.schedule.runner,),
        options=MappingProxyType(dict(config.options_shown)),
        warnings=config.warnings,
    )
    writer = ResultsWriter(config.out_dir / "results.jsonl", config.report_mode, config.out_dir_id)
    writer.start(info)
    for sink in sinks:
        sink.start(info)

    run_secrets = _run_secrets(config)

    # Each host's result as kept: scrubbed of secrets and carrying its warnings, made once
    # (scrubbing is per-field work on every host of a large fleet).
    kept: dict[str, HostResult] = {}

    def record(result: HostResult) -> None:
        result = without_secrets(result, _scrubber(run_secrets, result.host))
        warnings = warned.get(result.host.name)
        if warnings:
            result = replace(result, warnings=warnings)
        kept[result.host.name] = result
        writer.host(result)
        for sink in sinks:
            sink.host(result)
        if on_result is not None:
            on_result(result)

    t0 = time.monotonic()
    try:
        results, signum = asyncio.run(_run(config, transports, record))
        final = replace(
            info,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            duration=round(time.monotonic() - t0, 3),
            interrupted=signum is not None,
        )
        writer.end(final)
    finally:
        writer.close()
    run = AuditRun(info=final, results=tuple(kept[r.host.name] for r in results))
    for sink in sinks:
        sink.end(run)
    return run, signum


# Shorter secrets are not searched for: masking every "ab" in every message would destroy
# the evidence and hide nothing worth hiding.
_MIN_SECRET = 4
# Every inventory variable that holds a password of the host's (the WinRM alias
# `ansible_winrm_pass` was missing from a list written here by hand).
_PASSWORD_VARS = tuple(
    dict.fromkeys((*SSH_PASSWORD_VARS, *WINRM_PASSWORD_VARS, *BECOME_PASSWORD_VARS))
)


def _run_secrets(config: AuditConfig) -> frozenset[str]:
    """Every run-wide secret the auditor holds: the SSH and WinRM passwords and the key
    passphrase. A host may have learned one (a hostile host, or a tool echoing its own
    command line); whatever a host sends back is scrubbed of them before it is kept."""
    held = (config.ssh.password, config.ssh.passphrase, config.winrm.password)
    found = {secret.reveal() for secret in held if secret is not None}
    return frozenset(s for s in found if len(s) >= _MIN_SECRET)


def _scrubber(run_secrets: frozenset[str], host: Host) -> Scrubber:
    found = set(run_secrets)
    for name in _PASSWORD_VARS:
        value = host.vars.get(name)
        if isinstance(value, str) and len(value) >= _MIN_SECRET:
            found.add(value)
    return Scrubber(frozenset(found))


def without_secrets(result: HostResult, scrub: Scrubber) -> HostResult:
    """`result` with every text a host sent back scrubbed of `scrub`'s secrets."""
    if not scrub.secrets:
        return result
    if isinstance(result, AuditedHost):
        observations = tuple(
            replace(
                o,
                detail=scrub(o.detail),
                remote_ip=scrub(o.remote_ip),
                tool=scrub(o.tool),
                tls_issuer=scrub(o.tls_issuer),
                proxy=scrub(o.proxy),
            )
            for o in result.observations
        )
        facts = MappingProxyType({k: scrub(v) for k, v in result.facts.items()})
        return replace(result, observations=observations, facts=facts)
    return replace(result, detail=scrub(result.detail))


async def _run(
    config: AuditConfig,
    transports: Transports,
    record: Callable[[HostResult], None],
) -> tuple[list[HostResult], int | None]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    caught: list[int] = []

    def on_signal(signum: int) -> None:
        caught.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    probes = Probes(config.targets, config.probe)
    try:
        results = await run_audit(
            config.hosts, transports, probes, config.schedule, record, stop=stop
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
    return results, (caught[0] if caught else None)


def exit_code_for_signal(signum: int) -> int:
    return 128 + signum


def shard(hosts: Sequence[Host], index: int, count: int) -> tuple[Host, ...]:
    """Deterministic split: a host's shard depends only on its name, not on inventory order."""
    import hashlib

    def bucket(name: str) -> int:
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count

    return tuple(h for h in hosts if bucket(h.name) == index - 1)


__all__ = [
    "AuditConfig",
    "RunSink",
    "default_out_dir",
    "default_runner",
    "execute",
    "exit_code_for_signal",
    "host_warnings",
    "prepare_out_dir",
    "prepare_transports",
    "shard",
]
