"""The results stream: run metadata and one JSON line per host, written as hosts finish.

`results.jsonl` is the source of truth for a run: reports are rendered from it, `auditor
report` re-renders it and `auditor merge` combines several. It never holds host variables,
so no inventory secret can reach it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from auditor.errors import AuditorError, InputError
from auditor.models import (
    AuditedHost,
    Connection,
    Host,
    HostResult,
    Observation,
    Platform,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome, Outcome

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunInfo:
    """What a report says about the run itself. Holds no secrets."""

    run_id: str
    started: str
    finished: str = ""
    duration: float = 0.0
    inventory: str = ""
    targets: tuple[Target, ...] = ()
    tool_version: str = ""
    runners: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()
    interrupted: bool = False


@dataclass(frozen=True)
class AuditRun:
    """A finished (or interrupted) run: metadata plus exactly one result per inventory host."""

    info: RunInfo
    results: tuple[HostResult, ...]


def host_to_dict(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "connection": host.connection.value,
        "platform": host.platform.value,
        "groups": list(host.groups),
    }


def result_to_dict(result: HostResult) -> dict[str, Any]:
    """The JSON form of one host's result (also the per-host entry of report.json)."""
    base: dict[str, Any] = {
        "host": host_to_dict(result.host),
        "audited": result.audited,
        "duration": round(result.duration, 3),
        "runner": result.runner,
    }
    if isinstance(result, AuditedHost):
        base["host_outcome"] = None
        base["detail"] = ""
        base["facts"] = dict(result.facts)
        base["observations"] = [_observation_dict(o) for o in result.observations]
    else:
        base["host_outcome"] = result.outcome.value
        base["detail"] = result.detail
        base["facts"] = {}
        base["observations"] = []
    return base


_OBSERVATION_FIELDS = tuple(f.name for f in fields(Observation))


def _observation_dict(o: Observation) -> dict[str, Any]:
    # Field by field: dataclasses.asdict deep-copies and dominates the cost at 10,000 hosts.
    data = {name: getattr(o, name) for name in _OBSERVATION_FIELDS}
    data["outcome"] = o.outcome.value
    return data


def info_to_dict(info: RunInfo) -> dict[str, Any]:
    data = {f.name: getattr(info, f.name) for f in fields(RunInfo)}
    data["targets"] = [{f.name: getattr(t, f.name) for f in fields(Target)} for t in info.targets]
    for target in data["targets"]:
        target["expected_status"] = list(target["expected_status"])
    data["options"] = dict(info.options)
    data["runners"] = list(info.runners)
    data["warnings"] = list(info.warnings)
    return data


def result_from_dict(data: Mapping[str, Any], target_count: int | None = None) -> HostResult:
    """Rebuild one host's result; `target_count` checks an audited host has one observation
    per target (aggregates index observations by target position)."""
    h = data["host"]
    host = Host(
        name=str(h["name"]),
        address=str(h["address"]),
        connection=Connection(h["connection"]),
        platform=Platform(h["platform"]),
        port=h.get("port"),
        user=h.get("user"),
        groups=tuple(h.get("groups", ())),
    )
    if data["audited"]:
        observations = tuple(
            Observation(**{**o, "outcome": Outcome(o["outcome"])}) for o in data["observations"]
        )
        if target_count is not None and len(observations) != target_count:
            raise ValueError(
                f"host {host.name} has {len(observations)} observations for {target_count} targets"
            )
        return AuditedHost(
            host=host,
            observations=observations,
            duration=float(data.get("duration", 0.0)),
            facts=MappingProxyType(dict(data.get("facts", {}))),
            runner=str(data.get("runner", "")),
        )
    return UnauditedHost(
        host=host,
        outcome=HostOutcome(data["host_outcome"]),
        detail=str(data.get("detail", "")),
        duration=float(data.get("duration", 0.0)),
        runner=str(data.get("runner", "")),
    )


def info_from_dict(data: Mapping[str, Any]) -> RunInfo:
    targets = tuple(
        Target(**{**t, "expected_status": tuple(t.get("expected_status", (200,)))})
        for t in data.get("targets", ())
    )
    return RunInfo(
        run_id=str(data["run_id"]),
        started=str(data["started"]),
        finished=str(data.get("finished", "")),
        duration=float(data.get("duration", 0.0)),
        inventory=str(data.get("inventory", "")),
        targets=targets,
        tool_version=str(data.get("tool_version", "")),
        runners=tuple(data.get("runners", ())),
        options=MappingProxyType(dict(data.get("options", {}))),
        warnings=tuple(data.get("warnings", ())),
        interrupted=bool(data.get("interrupted", False)),
    )


class ResultsWriter:
    """Appends one line per finished host and flushes it, so an interrupted run keeps its work.

    Lines: {"type": "run", ...} first, {"type": "host", ...} per host, {"type": "end", ...}
    last (the final RunInfo). A file without the end line was cut short.
    """

    def __init__(self, path: Path, mode: int = 0o600) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self._fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        self._failed = False

    def _line(self, record: Mapping[str, Any]) -> None:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Text UTF-8 cannot hold (a lone surrogate from a host's output): JSON's own
            # \u escapes keep it exactly, so the line is written, never dropped.
            text = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
        try:
            self._fh.write(text + "\n")
            self._fh.flush()
        except (OSError, ValueError) as exc:
            # Disk full, a closed file: the run must stop with this error rather than
            # go on without a record of its hosts.
            self._failed = True
            raise self._error(exc) from None

    def _error(self, exc: OSError | ValueError) -> AuditorError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return AuditorError(f"{self.path}: cannot write results: {reason}")

    def start(self, info: RunInfo) -> None:
        self._line({"type": "run", "schema_version": SCHEMA_VERSION, "run": info_to_dict(info)})

    def host(self, result: HostResult) -> None:
        self._line({"type": "host", **result_to_dict(result)})

    def end(self, info: RunInfo) -> None:
        self._line({"type": "end", "run": info_to_dict(info)})

    def close(self) -> None:
        """Close the file; a failure to write what was buffered is an AuditorError, unless
        a write already failed (that error is the one being reported)."""
        try:
            self._fh.close()
        except (OSError, ValueError) as exc:
            if not self._failed:
                self._failed = True
                raise self._error(exc) from None


def read_results(path: Path) -> AuditRun:
    """Load a results.jsonl file; raises InputError naming the file and line on bad content."""
    info: RunInfo | None = None
    results: list[HostResult] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    kind = record.get("type")
                    if kind in ("run", "end"):
                        info = info_from_dict(record["run"])
                    elif kind == "host":
                        count = len(info.targets) if info is not None else None
                        results.append(result_from_dict(record, count))
                    else:
                        raise ValueError(f"unknown record type {kind!r}")
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise InputError(f"not a results record: {exc}", str(path), lineno) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", str(path)) from None
    if info is None:
        raise InputError("no run record: not a results file", str(path))
    return AuditRun(info=info, results=tuple(results))
