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
from auditor.models import Connection, Host
from auditor.probes import ProbeSettings
from auditor.results import AuditRun, read_results
from auditor.scheduler import Schedule
from auditor.secret import Secret, secret_from_env, secret_from_file
from auditor.transports.base import Transport

SSH_PASSWORD_ENV = "AUDITOR_SSH_PASSWORD"  # noqa: S105 - a variable name, not a secret
WINRM_PASSWORD_ENV = "AUDITOR_WINRM_PASSWORD"  # noqa: S105
NO_HOST_KEY_WARNING = (
    "HOST KEY CHECKING WAS DISABLED (--no-host-key-check): results could come from an impostor host"
)


def _echo(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise InputError(f"{value!r} is not an octal file mode", "--report-mode") from None
    if not 0 <= mode <= 0o666:
        raise InputError(f"{value!r} must be between 000 and 666", "--report-mode")
    return mode


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


def _passwords(opts: Mapping[str, Any], hosts: Sequence[Host]) -> dict[str, Secret | None]:
    """Passwords come only from the environment or a prompt, never from a flag value."""
    ssh = secret_from_env(SSH_PASSWORD_ENV)
    winrm = secret_from_env(WINRM_PASSWORD_ENV)
    if opts.get("password_file"):
        from_file = secret_from_file(Path(opts["password_file"]))
        ssh = ssh or from_file
        winrm = winrm or from_file
    if opts.get("ask_pass"):
        import getpass

        kinds = {h.connection for h in hosts}
        if Connection.SSH in kinds and ssh is None:
            ssh = Secret(getpass.getpass("SSH password: "))
        if winrm is None and _winrm_needs_password(opts, hosts):
            winrm = Secret(getpass.getpass("WinRM password: "))
    return {"ssh": ssh, "winrm": winrm}


def _winrm_needs_password(opts: Mapping[str, Any], hosts: Sequence[Host]) -> bool:
    """Whether any WinRM host uses a password (certificate and Kerberos hosts do not)."""
    windows = [h for h in hosts if h.connection == Connection.WINRM]
    if not windows:
        return False
    from auditor.transports.winrm import needs_password, winrm_options_from

    options = winrm_options_from(opts)
    return any(needs_password(h, options) for h in windows)


def build_config(opts: Mapping[str, Any]) -> AuditConfig:
    from auditor.inventory import InventoryLimits, load_inventory
    from auditor.targets import TargetLimits, select_targets

    limits = InventoryLimits.of(opts.get("max_hosts"), opts.get("max_groups"))
    inventory = load_inventory(opts["inventory"], limits)
    if opts.get("limit"):
        inventory = inventory.limit(opts["limit"])
    hosts = tuple(inventory.hosts)
    chosen_shard = _shard(opts.get("shard"))
    if chosen_shard:
        hosts = shard(hosts, *chosen_shard)
    targets = select_targets(
        opts.get("platforms") or (),
        opts.get("urls") or (),
        opts.get("targets_files") or (),
        TargetLimits.of(opts.get("max_targets_file_size"), opts.get("max_targets")),
    )
    if opts.get("no_host_key_check") and opts.get("accept_new_host_keys"):
        raise InputError("choose one of --no-host-key-check and --accept-new-host-keys")
    mode = _mode(opts.get("report_mode") or "600")
    out_dir = opts.get("out_dir") or default_out_dir()
    warnings: tuple[str, ...] = (NO_HOST_KEY_WARNING,) if opts.get("no_host_key_check") else ()
    # Inventory warnings (an unknown connection plugin) go to the terminal and every report.
    warnings += tuple(str(w) for w in inventory.warnings)
    runner = opts.get("runner") or default_runner()
    shown = {
        "inventory": str(opts["inventory"]),
        "limit": str(opts.get("limit") or ""),
        "forks": str(opts.get("forks", 50)),
        "timeout": str(opts.get("timeout", 60.0)),
        "connect_timeout": str(opts.get("connect_timeout", 10.0)),
        "retries": str(opts.get("retries", 0)),
        "probe_timeout": str(opts.get("probe_timeout", 10.0)),
        "shard": str(opts.get("shard") or ""),
        "host_key_policy": "none"
        if opts.get("no_host_key_check")
        else ("accept-new" if opts.get("accept_new_host_keys") else "strict"),
    }
    return AuditConfig(
        hosts=hosts,
        targets=targets,
        out_dir=Path(out_dir),
        inventory=str(opts["inventory"]),
        formats=tuple(opts.get("formats") or ("html", "csv", "json", "junit")),
        report_mode=mode,
        schedule=Schedule(
            forks=int(opts.get("forks", 50)),
            timeout=float(opts.get("timeout", 60.0)),
            retries=int(opts.get("retries", 0)),
            runner=runner,
        ),
        probe=ProbeSettings(
            connect_timeout=float(opts.get("probe_connect_timeout", 5.0)),
            max_time=float(opts.get("probe_timeout", 10.0)),
            agent_proxy=bool(opts.get("agent_proxy")),
        ),
        transport_options=MappingProxyType(
            {k: v for k, v in opts.items() if k not in ("inventory",)}
        ),
        options_shown=MappingProxyType(shown),
        warnings=warnings,
        host_lines=MappingProxyType(
            {h.name: line for h in hosts if (line := inventory.host_line(h.name)) is not None}
        ),
    )


def make_transport(connection: Connection, config: AuditConfig) -> Transport:
    """One transport per connection kind, built from the run's options."""
    opts = config.transport_options
    if connection is Connection.LOCAL:
        from auditor.transports.local import LocalTransport

        return LocalTransport()
    if connection is Connection.SSH:
        from auditor.transports.ssh import SSHTransport, ssh_options_from

        return SSHTransport(ssh_options_from(opts))
    from auditor.transports.winrm import winrm_transport_from

    return winrm_transport_from(opts, config.schedule.forks)


def run_from_options(opts: Mapping[str, Any]) -> int:
    """Run an audit from CLI options; returns the exit status."""
    from auditor.cli import warn
    from auditor.reporters import write_reports
    from auditor.reporters.terminal import Progress, render_summary

    config = build_config(opts)
    passwords = _passwords(opts, config.hosts)
    config = replace(
        config,
        transport_options=MappingProxyType({**config.transport_options, "passwords": passwords}),
    )
    # Every setting is checked before any host is contacted and before the report directory
    # exists: a bad one stops the run here, with nothing to clean up.
    transports = prepare_transports(config, make_transport)
    warned = host_warnings(transports, config.hosts)
    if warned:
        config = replace(config, warnings=(*config.warnings, *_host_warning_lines(warned)))
    prepare_out_dir(config.out_dir, bool(opts.get("force")), config.report_mode)
    quiet = bool(opts.get("quiet"))
    for warning in config.warnings:
        warn(warning)
    progress = Progress(total=len(config.hosts))
    if quiet:
        progress.enabled = False
    try:
        run, signum = execute(config, transports, on_result=progress.update)
    finally:
        progress.close()
    write_reports(run, config.out_dir, config.formats, config.report_mode)
    if not quiet:
        _echo(render_summary(run, color=sys.stderr.isatty()))
        _echo(f"reports: {config.out_dir}/")
    if signum is not None:
        return exit_code_for_signal(signum)
    return exit_status(run)


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
    paths: Sequence[Path], out_dir: Path, formats: Sequence[str], force: bool, report_mode: str
) -> int:
    """Render reports from results files (several: merge shards first)."""
    from auditor.reporters import write_reports

    runs = [read_results(p) for p in paths]
    run = runs[0] if len(runs) == 1 else merge_runs(runs)
    mode = _mode(report_mode)
    prepare_out_dir(out_dir, force, mode)
    write_reports(run, out_dir, tuple(formats), mode)
    return exit_status(run)
