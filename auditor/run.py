"""Turns parsed command-line options into a run: the glue between click and the pipeline."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from auditor.aggregate import exit_status
from auditor.audit import (
    AuditConfig,
    Transports,
    default_out_dir,
    default_runner,
    execute,
    exit_code_for_signal,
    host_warnings,
    prepare_out_dir,
    prepare_transports,
    shard,
)
from auditor.errors import InputError
from auditor.gate import Gate, evaluate, gate_line
from auditor.history import History, HistoryError
from auditor.models import Connection, Host
from auditor.results import AuditRun, read_results
from auditor.secret import Secret, secret_from_file
from auditor.settings import (
    GateSettings,
    HistorySettings,
    HostKeyPolicy,
    ReportSettings,
    Settings,
    parse_mode,
)
from auditor.transports.base import Transport

NO_HOST_KEY_WARNING = (
    "HOST KEY CHECKING WAS DISABLED (--no-host-key-check): results could come from an impostor host"
)


def _echo(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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


def make_transport(connection: Connection, config: AuditConfig) -> Transport:
    """One transport per connection kind, built from the run's options."""
    if connection is Connection.LOCAL:
        from auditor.transports.local import LocalTransport

        return LocalTransport()
    if connection is Connection.SSH:
        from auditor.transports.ssh import SSHTransport

        return SSHTransport(config.ssh)
    from auditor.transports.winrm import WinRMTransport

    return WinRMTransport(config.winrm, config.winrm.password, max_workers=config.schedule.forks)


def run_from_settings(settings: Settings) -> int:
    """Run an audit with `settings` (built once, by the CLI); returns the exit status."""
    config = build_config(settings)
    settings = with_passwords(settings, config.hosts)
    config = replace(config, ssh=settings.ssh, winrm=settings.winrm)
    # Every setting is checked before any host is contacted and before the report directory
    # exists: a bad one stops the run here, with nothing to clean up.
    transports = prepare_transports(config, make_transport)
    warned = host_warnings(transports, config.hosts)
    if warned:
        config = replace(config, warnings=(*config.warnings, *_host_warning_lines(warned)))
    # The history is a setting like any other: opened, migrated and found writable before
    # any host is contacted, so a corrupt, newer or locked database stops the run here.
    history = open_history(settings.history)
    try:
        return _audit(settings, config, transports, history)
    finally:
        if history is not None:
            history.close()


def open_history(chosen: HistorySettings, create: bool = True) -> History | None:
    """The run history `chosen` names (the default location unless a path is given), or
    None when it is turned off."""
    if chosen.disabled:
        return None
    import os

    from auditor.history import History, default_path

    path = chosen.path or default_path(os.environ)
    return History.open(path, chosen.busy_timeout, create=create)


def _audit(
    settings: Settings, config: AuditConfig, transports: Transports, history: History | None
) -> int:
    from auditor.cli import warn
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
        recorder = HistoryRecorder(history, [h.name for h in config.hosts])
    try:
        run, signum = execute(
            config,
            transports,
            on_result=progress.update,
            sinks=() if recorder is None else (recorder,),
        )
    finally:
        progress.close()
    write_reports(run, config.out_dir, config.formats, config.report_mode, out_dir_id)
    gate = _gate(settings.gate)
    verdict = evaluate(run, gate) if gate.active else None
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
    return verdict.exit_status if verdict is not None else exit_status(run)


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


def merge_runs(runs: Sequence[AuditRun]) -> AuditRun:
    """Combine runs over disjoint host sets (shards) into one, in a deterministic order."""
    if not runs:
        raise InputError("nothing to merge")
    first = runs[0].info
    urls = [t.url for t in first.targets]
    seen: dict[str, Any] = {}
    for run in runs:
        if [t.url for t in run.info.targets] != urls:
            raise InputError(f"run {run.info.run_id} audited different URLs; cannot merge")
        for result in run.results:
            if result.host.name in seen:
                raise InputError(f"host {result.host.name} appears in more than one results file")
            seen[result.host.name] = result
    runners = tuple(r for run in runs for r in run.info.runners)
    info = replace(
        first,
        runners=runners,
        started=min(r.info.started for r in runs),
        finished=max(r.info.finished for r in runs),
        duration=max(r.info.duration for r in runs),
        interrupted=any(r.info.interrupted for r in runs),
        warnings=tuple(dict.fromkeys(w for r in runs for w in r.info.warnings)),
    )
    ordered = tuple(seen[name] for name in sorted(seen))
    return AuditRun(info=info, results=ordered)


def render_from_results(
    paths: Sequence[Path],
    out_dir: Path,
    formats: Sequence[str],
    force: bool,
    report_mode: str | None,
    gate: GateSettings | None = None,
) -> int:
    """Render reports from results files (several: merge shards first)."""
    runs = [read_results(p) for p in paths]
    run = runs[0] if len(runs) == 1 else merge_runs(runs)
    return render_run(run, out_dir, formats, force, report_mode, gate)


def render_from_history(
    chosen: HistorySettings,
    ref: str,
    out_dir: Path,
    formats: Sequence[str],
    force: bool,
    report_mode: str | None,
    gate: GateSettings | None = None,
) -> int:
    """Render every report of recorded run `ref` (an id or a unique prefix) again."""
    history = open_history(replace(chosen, disabled=False), create=False)
    assert history is not None
    with history:
        run = history.load(history.resolve(ref))
    return render_run(run, out_dir, formats, force, report_mode, gate)


def render_run(
    run: AuditRun,
    out_dir: Path,
    formats: Sequence[str],
    force: bool,
    report_mode: str | None,
    gate: GateSettings | None = None,
) -> int:
    """Write `run`'s reports into `out_dir`; the exit status is the gate's when one is
    given, else the run's own."""
    from auditor.reporters import write_reports

    mode = parse_mode(report_mode) if report_mode is not None else ReportSettings.mode
    out_dir_id = prepare_out_dir(out_dir, force, mode)
    write_reports(run, out_dir, tuple(formats), mode, out_dir_id)
    chosen = _gate(gate or GateSettings())
    if chosen.active:
        verdict = evaluate(run, chosen)
        _echo(gate_line(verdict))
        return verdict.exit_status
    return exit_status(run)
