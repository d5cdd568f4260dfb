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
from typing import Any

from auditor import __version__
from auditor.errors import InputError
from auditor.models import Connection, Host, HostResult, Target
from auditor.probes import ProbeSettings
from auditor.results import AuditRun, ResultsWriter, RunInfo
from auditor.scheduler import Probes, Schedule, run_audit
from auditor.transports.base import Transport


@dataclass(frozen=True)
class AuditConfig:
    """Everything one run needs, already validated by the caller."""

    hosts: tuple[Host, ...]
    targets: tuple[Target, ...]
    out_dir: Path
    inventory: str = ""
    formats: tuple[str, ...] = ("html", "csv", "json", "junit")
    report_mode: int = 0o600
    schedule: Schedule = field(default_factory=Schedule)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    transport_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    options_shown: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()


TransportFactory = Callable[[Connection, AuditConfig], Transport]


def prepare_out_dir(path: Path, force: bool, mode: int) -> None:
    """Create the report directory; refuse to write into one that has reports without --force."""
    if path.exists():
        if not path.is_dir():
            raise InputError("exists and is not a directory", str(path))
        if any(path.iterdir()) and not force:
            raise InputError("report directory exists and is not empty (use --force)", str(path))
    else:
        try:
            path.mkdir(parents=True, mode=_dir_mode(mode))
        except OSError as exc:
            raise InputError(f"cannot create report directory: {exc.strerror}", str(path)) from None


def _dir_mode(file_mode: int) -> int:
    """A directory is as open as its files: readable files get a listable directory."""
    return 0o700 | (0o050 if file_mode & 0o040 else 0) | (0o005 if file_mode & 0o004 else 0)


def default_out_dir() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(f"audit-report-{stamp}")


def default_runner() -> str:
    return pyplatform.node() or "runner"


def execute(
    config: AuditConfig,
    make_transport: TransportFactory,
    on_result: Callable[[HostResult], None] | None = None,
) -> tuple[AuditRun, int | None]:
    """Run the audit; returns the run and the signal number that interrupted it, if any.

    Results stream to `results.jsonl` in the report directory as each host finishes.
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
    writer = ResultsWriter(config.out_dir / "results.jsonl", config.report_mode)
    writer.start(info)

    def record(result: HostResult) -> None:
        writer.host(result)
        if on_result is not None:
            on_result(result)

    t0 = time.monotonic()
    try:
        results, signum = asyncio.run(_run(config, make_transport, record))
        final = replace(
            info,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            duration=round(time.monotonic() - t0, 3),
            interrupted=signum is not None,
        )
        writer.end(final)
    finally:
        writer.close()
    return AuditRun(info=final, results=tuple(results)), signum


async def _run(
    config: AuditConfig,
    make_transport: TransportFactory,
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
    # Skipped hosts (no transport for their connection) are never handed to one.
    transports = {
        conn: make_transport(conn, config)
        for conn in {h.connection for h in config.hosts if not h.skip}
    }
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
    "default_out_dir",
    "default_runner",
    "execute",
    "exit_code_for_signal",
    "prepare_out_dir",
    "shard",
]
