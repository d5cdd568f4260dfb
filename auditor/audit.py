"""One audit, end to end: settings -> inventory -> targets -> transports prepared -> scheduler
-> results stream -> reports, and re-rendering reports from recorded results.

Plain functions under the click layer, which passes in how to warn; nothing here exits.
"""

from __future__ import annotations

import asyncio
import platform as pyplatform
import secrets
import signal
import sys
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from auditor import __version__
from auditor.aggregate import EXIT_BLOCKED, EXIT_NOT_AUDITED, EXIT_OK, Tally, tally_of
from auditor.errors import InputError
from auditor.gate import Gate, GateResult, evaluate, gate_line
from auditor.history import History, HistoryError
from auditor.models import (
    AuditedHost,
    AuditRun,
    Connection,
    Host,
    HostResult,
    RunInfo,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome
from auditor.probes import ProbeSettings, Scrubber
from auditor.reportdir import DirIdentity, prepare
from auditor.results import ResultsFile, ResultsWriter, merge_runs, read_results
from auditor.scheduler import Probes, Schedule, audit_hosts
from auditor.secret import (
    BECOME_PASSWORD_VARS,
    SSH_PASSWORD_VARS,
    WINRM_PASSWORD_VARS,
    Secret,
    secret_from_file,
)
from auditor.settings import (
    GateSettings,
    HistorySettings,
    ReportSettings,
    Settings,
    parse_mode,
)
from auditor.transports import make_transport
from auditor.transports.base import SettingsSource, Transport
from auditor.transports.options import HostKeyPolicy, SSHSettings, WinRMSettings

if TYPE_CHECKING:
    from auditor.reporters.html import HtmlExtras


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
    host_warnings: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Per host, the trust its transport was told to weaken (from `host_warnings`)."""
    out_dir_id: DirIdentity | None = None
    """The report directory as prepared; a directory swapped in later is refused."""


Transports = Mapping[Connection, Transport]


class RunSink(Protocol):
    """Another consumer of the results stream (the run history): told of the run when it
    starts, of each host's result as kept (scrubbed, with its warnings) with the host's
    inventory position, and of the run as it ended with its counts. It must not raise: a
    sink that cannot keep up keeps its own error."""

    def start(self, info: RunInfo) -> None: ...

    def host(self, result: HostResult, position: int) -> None: ...

    def end(self, info: RunInfo, totals: Tally) -> None: ...


class ResultStream:
    """The one place a run's results are kept, for a local run and a site run alike.

    Each host's result is scrubbed of every secret the run knows, given the warnings its
    transport gave for it, written to `results.jsonl` (flushed), counted in a `Tally`,
    and handed to the sinks and to `on_result`, exactly once per inventory host: a second
    result for a host, or one for a host not in the run, is dropped. What stays in memory
    is the counts and one offset per host (where its line starts), never the results; the
    finished run reads them back from the file, in inventory order, as often as needed.
    """

    def __init__(
        self,
        config: AuditConfig,
        on_result: Callable[[HostResult], None] | None = None,
        sinks: Sequence[RunSink] = (),
    ) -> None:
        self.config = config
        self.path = config.out_dir / "results.jsonl"
        self.tally = Tally(config.targets)
        self._positions = {h.name: i for i, h in enumerate(config.hosts)}
        self._offsets = array("q", [-1]) * len(config.hosts)
        self._secrets = _run_secrets(config)
        self._on_result = on_result
        self._sinks = tuple(sinks)
        self._writer: ResultsWriter | None = None

    def start(self, info: RunInfo) -> None:
        """Create the results file (relative to the pinned report directory) and write the
        run's first record; tell the sinks."""
        config = self.config
        self._writer = ResultsWriter(self.path, config.report_mode, config.out_dir_id)
        self._writer.start(info)
        for sink in self._sinks:
            sink.start(info)

    def record(self, result: HostResult) -> None:
        """Keep one host's result (see the class docstring); raises AuditorError when the
        results file cannot be written."""
        assert self._writer is not None, "start() first"
        position = self._positions.get(result.host.name)
        if position is None or self._offsets[position] >= 0:
            return
        result = without_secrets(result, _scrubber(self._secrets, result.host))
        warnings = self.config.host_warnings.get(result.host.name)
        if warnings:
            result = replace(result, warnings=warnings)
        self._offsets[position] = self._writer.host(result)
        self.tally.add(result)
        for sink in self._sinks:
            sink.host(result, position)
        if self._on_result is not None:
            self._on_result(result)

    def missing(self) -> list[Host]:
        """The run's hosts with no result yet, in inventory order."""
        hosts = self.config.hosts
        return [hosts[i] for i, offset in enumerate(self._offsets) if offset < 0]

    def end(self, final: RunInfo) -> None:
        """Write the run's last record; a host still without a result (none, when the caller
        accounted for every host) is recorded first as not audited, so the file holds every
        host exactly once."""
        assert self._writer is not None, "start() first"
        for host in self.missing():
            self.record(
                UnauditedHost(host, HostOutcome.NOT_AUDITED, "no result was recorded for this host")
            )
        self._writer.end(final)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def run(self, final: RunInfo) -> AuditRun:
        """The finished run, its results read back from the file in inventory order; the
        sinks are told it ended."""
        results = ResultsFile(
            self.path, len(self.config.targets), self._offsets, self.config.out_dir_id
        )
        for sink in self._sinks:
            sink.end(final, self.tally)
        return AuditRun(info=final, results=results, totals=self.tally)


def prepare_transports(config: AuditConfig) -> Transports:
    """One prepared transport per connection kind of the run's hosts.

    Every setting is checked and loaded here, before any host is contacted and before the
    report directory exists: a bad one raises InputError and nothing has happened yet."""
    source = SettingsSource(config.inventory, config.host_lines)
    transports: dict[Connection, Transport] = {}
    # Skipped hosts (no transport for their connection) are never handed to one.
    audited = [h for h in config.hosts if not h.skip]
    for connection in dict.fromkeys(h.connection for h in audited):
        transport = make_transport(connection, config.ssh, config.winrm, config.schedule.forks)
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
    stream = ResultStream(config, on_result, sinks)
    t0 = time.monotonic()
    try:
        stream.start(info)
        signum = asyncio.run(_run(config, transports, stream.record))
        final = replace(
            info,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            duration=round(time.monotonic() - t0, 3),
            interrupted=signum is not None,
        )
        stream.end(final)
    finally:
        stream.close()
    return stream.run(final), signum


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
        agent = result.agent
        if agent is not None:
            agent = replace(
                agent,
                version=scrub(agent.version),
                proxies=tuple(scrub(p) for p in agent.proxies),
                notes=tuple(scrub(n) for n in agent.notes),
            )
        return replace(result, observations=observations, facts=facts, agent=agent)
    return replace(result, detail=scrub(result.detail))


async def _run(
    config: AuditConfig,
    transports: Transports,
    record: Callable[[HostResult], None],
) -> int | None:
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
        await audit_hosts(config.hosts, transports, probes, config.schedule, record, stop=stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
    return caught[0] if caught else None


def exit_code_for_signal(signum: int) -> int:
    return 128 + signum


def shard(hosts: Sequence[Host], index: int, count: int) -> tuple[Host, ...]:
    """Deterministic split: a host's shard depends only on its name, not on inventory order."""
    import hashlib

    def bucket(name: str) -> int:
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count

    return tuple(h for h in hosts if bucket(h.name) == index - 1)


NO_HOST_KEY_WARNING = (
    "HOST KEY CHECKING WAS DISABLED (--no-host-key-check): results could come from an impostor host"
)


def _shard(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    try:
        k, n = (int(x) for x in value.split("/", 1))
    except ValueError:
        raise InputError(f"{value!r} is not K/N (e.g. 1/3)", "--shard") from None
    if not 1 <= k <= n:
        raise InputError(f"{value!r}: need 1 <= K <= N", "--shard")
    return k, n


def with_passwords(settings: Settings, hosts: Sequence[Host]) -> Settings:
    """`settings` with the run's passwords: from the environment (already in `settings`), else
    the password file, else a prompt; never from a flag value."""
    ssh = settings.ssh.password
    winrm = settings.winrm.password
    if settings.password_file is not None:
        from_file = secret_from_file(settings.password_file)
        ssh = ssh or from_file
        winrm = winrm or from_file
    if settings.ask_pass:
        import getpass

        kinds = {h.connection for h in hosts}
        if Connection.SSH in kinds and ssh is None:
            ssh = Secret(getpass.getpass("SSH password: "))
        if winrm is None and _winrm_needs_password(settings, hosts):
            winrm = Secret(getpass.getpass("WinRM password: "))
    return replace(
        settings,
        ssh=replace(settings.ssh, password=ssh),
        winrm=replace(settings.winrm, password=winrm),
    )


def _winrm_needs_password(settings: Settings, hosts: Sequence[Host]) -> bool:
    """Whether any WinRM host uses a password (certificate and Kerberos hosts do not)."""
    windows = [h for h in hosts if h.connection == Connection.WINRM]
    if not windows:
        return False
    from auditor.transports.winrm import needs_password

    return any(needs_password(h, settings.winrm) for h in windows)


def _host_key_warning(settings: Settings) -> tuple[str, ...]:
    if settings.ssh.host_key_policy is not HostKeyPolicy.NONE:
        return ()
    origin = settings.origin("host_key_policy")
    if origin.startswith("flag"):
        return (NO_HOST_KEY_WARNING,)
    return (f"HOST KEY CHECKING WAS DISABLED ({origin}): results could come from an impostor host",)


def build_config(settings: Settings) -> AuditConfig:
    from auditor.inventory import InventoryLimits, load_inventory
    from auditor.targets import TargetLimits, select_targets

    source = settings.inventory
    if not source.path:
        raise InputError(
            "no inventory: give --inventory, AUDITOR_INVENTORY, 'inventory' in the config "
            "file, or [defaults] inventory in ansible.cfg"
        )
    limits = InventoryLimits.of(source.max_hosts, source.max_groups)
    inventory = load_inventory(source.path, limits)
    if source.limit:
        inventory = inventory.limit(source.limit)
    hosts = tuple(inventory.hosts)
    chosen_shard = _shard(source.shard)
    if chosen_shard:
        hosts = shard(hosts, *chosen_shard)
    wanted = settings.targets
    targets = select_targets(
        wanted.platforms,
        wanted.urls,
        wanted.files,
        TargetLimits.of(wanted.max_targets_file_size, wanted.max_targets),
    )
    out_dir = settings.report.out_dir or default_out_dir()
    warnings = _host_key_warning(settings)
    # Inventory warnings (an unknown connection plugin) go to the terminal and every report.
    warnings += tuple(str(w) for w in inventory.warnings)
    schedule = settings.schedule
    if not schedule.runner:
        schedule = replace(schedule, runner=default_runner())
    shown = {
        "inventory": source.path,
        "limit": source.limit or "",
        "forks": str(schedule.forks),
        "timeout": str(schedule.timeout),
        "connect_timeout": str(settings.ssh.connect_timeout),
        "retries": str(schedule.retries),
        "probe_timeout": str(settings.probe.max_time),
        "direct": str(settings.probe.direct),
        "require_agent": str(settings.report.require_agent),
        "shard": source.shard or "",
        "host_key_policy": str(settings.ssh.host_key_policy),
        "fail_under": "" if settings.gate.fail_under is None else f"{settings.gate.fail_under:g}",
        "fail_on": ",".join(settings.gate.fail_on),
    }
    return AuditConfig(
        hosts=hosts,
        targets=targets,
        out_dir=Path(out_dir),
        inventory=source.path,
        formats=settings.report.formats,
        report_mode=settings.report.mode,
        schedule=schedule,
        probe=settings.probe,
        ssh=settings.ssh,
        winrm=settings.winrm,
        options_shown=MappingProxyType(shown),
        warnings=warnings,
        host_lines=MappingProxyType(
            {h.name: line for h in hosts if (line := inventory.host_line(h.name)) is not None}
        ),
    )


def audit_from_settings(settings: Settings, warn: Callable[[str], None]) -> int:
    """Run one audit with `settings` (built once, by the CLI); returns the exit status.

    `warn` shows a run-level warning line (the CLI's, sanitised for the terminal)."""
    config = build_config(settings)
    settings = with_passwords(settings, config.hosts)
    config = replace(config, ssh=settings.ssh, winrm=settings.winrm)
    # Every setting is checked before any host is contacted and before the report directory
    # exists: a bad one stops the run here, with nothing to clean up.
    transports = prepare_transports(config)
    warned = host_warnings(transports, config.hosts)
    if warned:
        config = replace(
            config,
            warnings=(*config.warnings, *_host_warning_lines(warned)),
            host_warnings=warned,
        )

    def local(
        chosen: AuditConfig, on_result: Callable[[HostResult], None], sinks: Sequence[RunSink]
    ) -> tuple[AuditRun, int | None]:
        return execute(chosen, transports, on_result=on_result, sinks=sinks)

    return run_and_report(settings, config, local, warn)


ExecuteRun = Callable[
    [AuditConfig, Callable[[HostResult], None], Sequence[RunSink]], tuple[AuditRun, int | None]
]
"""Runs the hosts of a prepared config (here, or through site runners); returns the run and
the signal that interrupted it."""


def run_and_report(
    settings: Settings, config: AuditConfig, execute_run: ExecuteRun, warn: Callable[[str], None]
) -> int:
    """The run's history, the run itself, its reports, summary and exit status: the same for
    a local run and a site run."""
    # The history is a setting like any other: opened, migrated and found writable before
    # any host is contacted, so a corrupt, newer or locked database stops the run here.
    history = open_history(settings.history)
    try:
        return _audit(settings, config, execute_run, history, warn)
    finally:
        if history is not None:
            history.close()


def open_history(chosen: HistorySettings, create: bool = True) -> History | None:
    """The run history `chosen` names (the default location unless a path is given), or
    None when it is turned off."""
    if chosen.disabled:
        return None
    import os

    from auditor.history import default_path

    path = chosen.path or default_path(os.environ)
    return History.open(path, chosen.busy_timeout, create=create)


def _audit(
    settings: Settings,
    config: AuditConfig,
    execute_run: ExecuteRun,
    history: History | None,
    warn: Callable[[str], None],
) -> int:
    from auditor.history import HistoryRecorder
    from auditor.reporters import write_reports
    from auditor.reporters.terminal import Progress, render_summary

    # Pinned from here on: every later open of the directory must find this very one.
    out_dir_id = prepare_out_dir(config.out_dir, settings.report.force, config.report_mode)
    config = replace(config, out_dir_id=out_dir_id)
    quiet = settings.report.quiet
    for warning in config.warnings:
        warn(warning)
    progress = Progress(total=len(config.hosts))
    if quiet:
        progress.enabled = False
    recorder = None
    if history is not None:
        recorder = HistoryRecorder(history, len(config.hosts))
    sinks = () if recorder is None else (recorder,)
    try:
        run, signum = execute_run(config, progress.update, sinks)
    except BaseException:
        if recorder is not None:
            recorder.abandon()
        raise
    finally:
        progress.close()
    gate = _gate(settings.gate)
    verdict = evaluate(run, gate) if gate.active else None
    recorded = history if recorder is not None and recorder.error is None else None
    extras = html_extras(run, recorded, verdict)
    write_reports(run, config.out_dir, config.formats, config.report_mode, out_dir_id, extras)
    if not quiet:
        _echo(render_summary(run, color=sys.stderr.isatty()))
        if verdict is not None:
            _echo(gate_line(verdict))
        _echo(f"reports: {config.out_dir}/")
    failed = None if recorder is None else recorder.error
    if recorder is not None and failed is None:
        assert history is not None
        kept = settings.history
        try:
            if kept.keep is not None or kept.keep_days is not None:
                history.prune(recorder.inventory_key, kept.keep, kept.keep_days)
        except HistoryError as exc:
            failed = exc
        if failed is None and not quiet:
            _echo(f"run {run.info.run_id} recorded in {history.path}")
    if signum is not None:
        if failed is not None:
            warn(f"the run was not fully recorded: {failed}")
        return exit_code_for_signal(signum)
    if failed is not None:
        # After the reports: the run's own files are never lost to a history failure.
        raise failed
    totals = tally_of(run)
    status = verdict.exit_status if verdict is not None else totals.exit_status()
    if (
        settings.report.require_agent
        and status in (EXIT_OK, EXIT_NOT_AUDITED)
        and totals.require_agent_failures
    ):
        # --require-agent: a host with no agent, or one too old for the CDN, fails the run.
        status = EXIT_BLOCKED
    return status


def _echo(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _gate(chosen: GateSettings) -> Gate:
    return Gate(fail_under=chosen.fail_under, fail_on=chosen.fail_on)


def _host_warning_lines(warned: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Run-level lines (terminal, report headers) for per-host warnings: one per warning,
    naming its hosts."""
    hosts: dict[str, list[str]] = {}
    for name, warnings in warned.items():
        for warning in warnings:
            hosts.setdefault(warning, []).append(name)
    return tuple(f"{warning}: {', '.join(names)}" for warning, names in hosts.items())


def reports_from_results(
    paths: Sequence[Path],
    out_dir: Path,
    formats: Sequence[str],
    force: bool,
    report_mode: str | None,
    gate: GateSettings | None = None,
) -> int:
    """Render reports from results files (several: merge shards first)."""
    if len(paths) == 1:
        # Checked and counted in one pass; the reports then read the file again, lazily.
        counted: list[Tally] = []

        def count(info: RunInfo, result: HostResult) -> None:
            if not counted:
                counted.append(Tally(info.targets))
            counted[0].add(result)

        run = read_results(paths[0], count)
        run = replace(run, totals=counted[0] if counted else Tally(run.info.targets))
    else:
        run = merge_runs([read_results(p) for p in paths])
    return render_run(run, out_dir, formats, force, report_mode, gate)


def reports_from_history(
    chosen: HistorySettings,
    ref: str,
    out_dir: Path,
    formats: Sequence[str],
    force: bool,
    report_mode: str | None,
    gate: GateSettings | None = None,
) -> int:
    """Render every report of recorded run `ref` (an id or a unique prefix) again, from the
    history alone."""
    history = open_history(replace(chosen, disabled=False), create=False)
    assert history is not None
    with history:
        run = history.load(history.resolve(ref))
        return render_run(run, out_dir, formats, force, report_mode, gate, history)


def render_run(
    run: AuditRun,
    out_dir: Path,
    formats: Sequence[str],
    force: bool,
    report_mode: str | None,
    gate: GateSettings | None = None,
    history: History | None = None,
) -> int:
    """Write `run`'s reports into `out_dir` (with what `history`, when given, knows of the
    runs before it); the exit status is the gate's when one is given (its line is printed),
    else the run's own."""
    from auditor.reporters import write_reports

    mode = parse_mode(report_mode) if report_mode is not None else ReportSettings.mode
    # Counted once (one pass, which also finds a bad record before any report is written).
    run = replace(run, totals=tally_of(run))
    out_dir_id = prepare_out_dir(out_dir, force, mode)
    chosen = _gate(gate or GateSettings())
    verdict = evaluate(run, chosen) if chosen.active else None
    extras = html_extras(run, history, verdict)
    write_reports(run, out_dir, tuple(formats), mode, out_dir_id, extras)
    if verdict is not None:
        _echo(gate_line(verdict))
        return verdict.exit_status
    return tally_of(run).exit_status()


def html_extras(
    run: AuditRun, history: History | None, verdict: GateResult | None
) -> HtmlExtras | None:
    """What report.html shows beyond the run itself: the gate's line, and, for a run recorded
    in `history`, the changes since the previous run of its inventory and the readiness
    trend per URL over the last runs."""
    from auditor.history import run_context
    from auditor.reporters.html import ChangeRow, HtmlExtras, TrendPoint

    if history is None and verdict is None:
        return None
    changes: tuple[ChangeRow, ...] | None = None
    previous = ""
    trends: dict[str, tuple[TrendPoint, ...]] = {}
    if history is not None:
        context = run_context(history, run.info.run_id)
        previous = context.previous_run_id or ""
        if context.changes is not None:
            changes = tuple(
                ChangeRow(
                    host=c.host,
                    url=c.url,
                    before=c.before.outcome if c.before else None,
                    after=c.after.outcome if c.after else None,
                    change=c.kind.value,
                    detail=c.detail,
                )
                for c in context.changes
            )
        trends = {
            t.url: tuple(TrendPoint(p.run_id, p.started, p.ready, p.total) for p in t.points)
            for t in context.trends
        }
    return HtmlExtras(
        changes=changes,
        previous_run_id=previous,
        trends=MappingProxyType(trends),
        gate_line=gate_line(verdict) if verdict is not None else "",
        gate_passed=verdict.passed if verdict is not None else None,
    )
