"""The results stream: run metadata and one JSON line per host, written as hosts finish.

`results.jsonl` is the source of truth for a run: reports are rendered from it, `auditor
report` re-renders it and `auditor merge` combines several. It never holds host variables,
so no inventory secret can reach it.
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, fields, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import IO, Any, TypeVar, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from auditor.errors import AuditorError, InputError
from auditor.models import (
    AgentFacts,
    AuditedHost,
    AuditRun,
    Connection,
    Host,
    HostResult,
    Observation,
    Platform,
    Results,
    RunInfo,
    Target,
    UnauditedHost,
)
from auditor.outcomes import HostOutcome
from auditor.reportdir import DirIdentity, ReportDir

SCHEMA_VERSION = 1


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
        "warnings": list(result.warnings),
    }
    if isinstance(result, AuditedHost):
        base["host_outcome"] = None
        base["detail"] = ""
        base["facts"] = dict(result.facts)
        base["agent"] = agent_to_dict(result.agent)
        base["observations"] = [_observation_dict(o) for o in result.observations]
    else:
        base["host_outcome"] = result.outcome.value
        base["detail"] = result.detail
        base["facts"] = {}
        base["agent"] = None
        base["observations"] = []
    return base


_OBSERVATION_FIELDS = tuple(f.name for f in fields(Observation))


def agent_to_dict(agent: AgentFacts | None) -> dict[str, Any] | None:
    """The agent's facts as stored (every proxy text already masked by the probe's parser)."""
    if agent is None:
        return None
    data = {f.name: getattr(agent, f.name) for f in fields(AgentFacts)}
    data["proxies"] = list(agent.proxies)
    data["notes"] = list(agent.notes)
    data["path"] = agent.path.value
    return data


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


_REQUIRED = object()
_E = TypeVar("_E", bound=Enum)


class _Fields:
    """Typed access to one JSON object of a results file; a missing key or a value of the
    wrong type raises ValueError naming the field, never a TypeError deep in a reporter."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{where} is {_kind(data)}, not an object")
        self.data: dict[str, Any] = data
        self._where = where

    def raw(self, key: str) -> object:
        return self._get(key, _REQUIRED)

    def _get(self, key: str, default: object) -> object:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise ValueError(f"{self._where} has no {key!r}")
        return default

    def _bad(self, key: str, value: object, want: str) -> ValueError:
        return ValueError(f"{self._where}.{key} is {_kind(value)}, not {want}")

    def text(self, key: str, default: object = _REQUIRED) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self._bad(key, value, "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, None)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, value, "a string or null")
        return value

    def flag(self, key: str, default: object = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, value, "true or false")
        return value

    def opt_int(self, key: str) -> int | None:
        value = self._get(key, None)
        if value is not None and not _is_int(value):
            raise self._bad(key, value, "an integer or null")
        return value  # type: ignore[return-value]

    def integer(self, key: str) -> int:
        value = self._get(key, _REQUIRED)
        if not _is_int(value):
            raise self._bad(key, value, "an integer")
        return value  # type: ignore[return-value]

    def int_list(self, key: str) -> tuple[int, ...]:
        items = self.items(key, [])
        if not all(_is_int(item) for item in items):
            raise ValueError(f"{self._where}.{key} is not a list of integers")
        return tuple(items)

    def number(self, key: str, default: object = _REQUIRED) -> float:
        value = self._get(key, default)
        if not _is_number(value):
            raise self._bad(key, value, "a number")
        return float(value)  # type: ignore[arg-type]

    def opt_number(self, key: str) -> float | None:
        value = self._get(key, None)
        if value is not None and not _is_number(value):
            raise self._bad(key, value, "a number or null")
        return None if value is None else float(value)  # type: ignore[arg-type]

    def items(self, key: str, default: object = _REQUIRED) -> list[Any]:
        value = self._get(key, default)
        if not isinstance(value, list):
            raise self._bad(key, value, "a list")
        return value

    def text_list(self, key: str) -> tuple[str, ...]:
        items = self.items(key, [])
        if not all(isinstance(item, str) for item in items):
            raise ValueError(f"{self._where}.{key} is not a list of strings")
        return tuple(items)

    def text_map(self, key: str) -> dict[str, str]:
        value = self._get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._bad(key, value, "an object of strings")
        return dict(value)

    def enum(self, key: str, kind: type[_E]) -> _E:
        value = self.text(key)
        try:
            return kind(value)
        except ValueError:
            raise ValueError(
                f"{self._where}.{key} {_show(value)} is not a known {kind.__name__}"
            ) from None

    def child(self, key: str) -> _Fields:
        return _Fields(self._get(key, _REQUIRED), f"{self._where}.{key}")


_INT_LIMIT = 2**63
"""Integers beyond this are not a status, an exit code or a port; refused rather than carried
into reports (Python also refuses to turn very long ones into text or floats)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < _INT_LIMIT


def _is_number(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_int(value)


def _show(value: str) -> str:
    """A value quoted for an error message, cut short (it may be anything from any file)."""
    return repr(value[:40] + "…" if len(value) > 40 else value)


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


_Reader = Callable[["_Fields", str], Any]


def _optional(read: _Reader) -> _Reader:
    def read_optional(f: _Fields, key: str) -> Any:
        return None if f.raw(key) is None else read(f, key)

    return read_optional


def _text_mapping(f: _Fields, key: str) -> Mapping[str, str]:
    return MappingProxyType(f.text_map(key))


def _raw(f: _Fields, key: str) -> Any:
    return f.raw(key)


def reader_for(hint: Any) -> _Reader | None:
    """How a field of type `hint` is read and checked; None for a type with no rule."""
    simple: dict[Any, _Reader] = {
        str: _Fields.text,
        bool: _Fields.flag,
        float: _Fields.number,
        int: _Fields.integer,
        tuple[str, ...]: _Fields.text_list,
        tuple[int, ...]: _Fields.int_list,
        Mapping[str, str]: _text_mapping,
    }
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and issubclass(hint, Enum):
        kind = hint
        return lambda f, key: f.enum(key, kind)
    args = set(get_args(hint))
    if get_origin(hint) in (Union, UnionType) and len(args) == 2 and type(None) in args:
        inner = reader_for((args - {type(None)}).pop())
        return None if inner is None else _optional(inner)
    return None


_FieldRule = tuple[str, _Reader, bool]
_RULES: dict[object, tuple[_FieldRule, ...]] = {}


def _rules(cls: Any) -> tuple[_FieldRule, ...]:
    """(name, reader, required) per field of dataclass `cls`, worked out once per class."""
    rules = _RULES.get(cls)
    if rules is None:
        hints = get_type_hints(cls)
        rules = _RULES[cls] = tuple(
            (
                fld.name,
                # A field type with no rule is carried as it is, so a new field keeps
                # round-tripping; tests/security/test_results_fuzz.py insists on a rule.
                reader_for(hints[fld.name]) or _raw,
                fld.default is MISSING and fld.default_factory is MISSING,
            )
            for fld in fields(cls)
        )
    return rules


def _build(cls: type[_D], f: _Fields, skip: frozenset[str] = frozenset(), **given: Any) -> _D:
    """An instance of the frozen dataclass `cls` from `f`, every field type-checked; a field
    missing from the file takes its default (or is an error when it has none)."""
    kwargs: dict[str, Any] = dict(given)
    data = f.data
    for name, read, required in _rules(cls):
        if name in kwargs or name in skip:
            continue
        if name in data:
            kwargs[name] = read(f, name)
        elif required:
            f.raw(name)  # raises: names the missing field
    return cls(**kwargs)


_D = TypeVar("_D")


def _host_from(f: _Fields) -> Host:
    # `vars` never reaches a results file (it may hold secrets); never read one back either.
    return _quick_host(f.data) or _build(Host, f, skip=frozenset({"vars"}))


_CONNECTION_OF = {c.value: c for c in Connection}
_PLATFORM_OF = {p.value: p for p in Platform}
_HOST_OUTCOME_OF = {o.value: o for o in HostOutcome}


def _lookup(table: Mapping[str, _E], value: object) -> _E | None:
    """`table[value]` for a text value it holds, else None (any JSON value may come)."""
    return table.get(value) if type(value) is str else None


def _quick_host(data: dict[str, Any]) -> Host | None:
    """The host of a well-formed record, checked field by field without the general
    machinery (reports read every host of a fleet several times); None for anything
    unusual, which `_build` then checks and names."""
    name, address, user, port = (
        data.get("name"),
        data.get("address"),
        data.get("user"),
        data.get("port"),
    )
    groups = data.get("groups", [])
    connection = _lookup(_CONNECTION_OF, data.get("connection"))
    platform = _lookup(_PLATFORM_OF, data.get("platform"))
    skip = data.get("skip", "")
    if (
        type(name) is not str
        or type(address) is not str
        or connection is None
        or platform is None
        or (user is not None and type(user) is not str)
        or (port is not None and not _is_int(port))
        or type(groups) is not list
        or not all(type(g) is str for g in groups)
        or type(skip) is not str
    ):
        return None
    return Host(name, address, connection, platform, port, user, tuple(groups), skip=skip)


def _observation_from(data: object, where: str) -> Observation:
    return _build(Observation, _Fields(data, where))


def result_from_dict(data: Mapping[str, Any], target_count: int | None = None) -> HostResult:
    """Rebuild one host's result, checking every field's type (ValueError names the field);
    `target_count` checks an audited host has one observation per target (aggregates index
    observations by target position)."""
    f = _Fields(data, "host record")
    host = _host_from(f.child("host"))
    duration = f.number("duration", 0.0)
    runner = f.text("runner", "")
    # Results files written before per-host warnings existed have none.
    warnings = f.text_list("warnings")
    if f.flag("audited"):
        observations = tuple(
            _observation_from(o, f"observations[{i}]")
            for i, o in enumerate(f.items("observations"))
        )
        if target_count is not None and len(observations) != target_count:
            raise ValueError(
                f"host {_show(host.name)} has {len(observations)} observations "
                f"for {target_count} targets"
            )
        return AuditedHost(
            host=host,
            observations=observations,
            duration=duration,
            facts=MappingProxyType(f.text_map("facts")),
            runner=runner,
            warnings=warnings,
            # Results files written before agent facts existed have none.
            agent=None if f.data.get("agent") is None else _build(AgentFacts, f.child("agent")),
        )
    outcome = _lookup(_HOST_OUTCOME_OF, data.get("host_outcome"))
    return UnauditedHost(
        host=host,
        outcome=outcome if outcome is not None else f.enum("host_outcome", HostOutcome),
        detail=f.text("detail", ""),
        duration=duration,
        runner=runner,
        warnings=warnings,
    )


def _target_from(data: object, where: str) -> Target:
    f = _Fields(data, where)
    target = _build(Target, f)
    if not target.expected_status:
        raise ValueError(f"{where}.expected_status is empty")
    try:
        urlsplit(target.url).port  # noqa: B018 - reporters derive host and port from it
    except ValueError as exc:
        raise ValueError(f"{where}.url is not a URL: {exc}") from None
    return target


def target_from(data: object, where: str) -> Target:
    """One target from its JSON form, every field checked (ValueError names the field)."""
    return _target_from(data, where)


def info_from_dict(data: Mapping[str, Any]) -> RunInfo:
    """Rebuild the run's metadata, checking every field's type (ValueError names the field)."""
    f = _Fields(data, "run")
    targets = tuple(
        _target_from(t, f"run.targets[{i}]") for i, t in enumerate(f.items("targets", []))
    )
    return _build(RunInfo, f, targets=targets)


class ResultsWriter:
    """Appends one line per finished host and flushes it, so an interrupted run keeps its work.

    Lines: {"type": "run", ...} first, {"type": "host", ...} per host, {"type": "end", ...}
    last (the final RunInfo). A file without the end line was cut short. `host` returns
    where its line starts, so the file can be read back host by host (`ResultsFile`).
    """

    def __init__(self, path: Path, mode: int = 0o600, expect: DirIdentity | None = None) -> None:
        self.path = path
        self.expect = expect
        # Created afresh relative to the verified directory: an existing entry (a planted
        # link, a file with a foreign owner or mode) is removed, never written through.
        with ReportDir.open(path.parent, expect) as directory:
            fd = directory.create(path.name, mode)
        self._fh: IO[bytes] = os.fdopen(fd, "wb")
        self._failed = False
        self.offset = 0
        """Bytes written so far: where the next line starts."""

    def _line(self, record: Mapping[str, Any]) -> int:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        try:
            data = (text + "\n").encode("utf-8")
        except UnicodeEncodeError:
            # Text UTF-8 cannot hold (a lone surrogate from a host's output): JSON's own
            # \u escapes keep it exactly, so the line is written, never dropped.
            text = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
            data = (text + "\n").encode("utf-8")
        start = self.offset
        try:
            self._fh.write(data)
            self._fh.flush()
        except (OSError, ValueError) as exc:
            # Disk full, a closed file: the run must stop with this error rather than
            # go on without a record of its hosts.
            self._failed = True
            raise self._error(exc) from None
        self.offset += len(data)
        return start

    def _error(self, exc: OSError | ValueError) -> AuditorError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return AuditorError(f"{self.path}: cannot write results: {reason}")

    def start(self, info: RunInfo) -> None:
        self._line({"type": "run", "schema_version": SCHEMA_VERSION, "run": info_to_dict(info)})

    def host(self, result: HostResult) -> int:
        """Write one host's line; returns the offset it starts at."""
        return self._line({"type": "host", **result_to_dict(result)})

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


def offsets() -> array[int]:
    """An empty compact offset index (8 bytes per host)."""
    return array("q")


class ResultsFile:
    """A run's host results read lazily from its results file, in the order `offsets` gives
    (one offset per host line): iterated as often as needed, one host in memory at a time.

    The file is opened relative to its verified directory (`expect`), as it was written.
    A line that no longer reads as a host's result raises InputError naming the file.
    """

    def __init__(
        self,
        path: Path,
        targets: int,
        offsets: Sequence[int],
        expect: DirIdentity | None = None,
    ) -> None:
        self.path = path
        self._targets = targets
        self._offsets = offsets
        self._expect = expect

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def offsets(self) -> Sequence[int]:
        """Where each host's line starts, in the order the results are read."""
        return self._offsets

    def _open(self) -> IO[bytes]:
        try:
            if self._expect is None:
                # A results file given by the user (`auditor report FILE`): read where it is.
                return self.path.open("rb")
            # The run's own file: relative to the very directory the run prepared.
            with ReportDir.open(self.path.parent, self._expect) as directory:
                fd = os.open(
                    self.path.name,
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=directory.fileno(),
                )
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", str(self.path)) from None
        return os.fdopen(fd, "rb")

    def __iter__(self) -> Iterator[HostResult]:
        with self._open() as fh:
            yield from self._read(fh, self._offsets)

    def _read(self, fh: IO[bytes], chosen: Sequence[int]) -> Iterator[HostResult]:
        position = -1
        for offset in chosen:
            if offset != position:
                fh.seek(offset)
            line = fh.readline()
            position = offset + len(line)
            yield self._parse(line, offset)

    def _parse(self, line: bytes, offset: int) -> HostResult:
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or record.get("type") != "host":
                raise ValueError("not a host record")
            return result_from_dict(record, self._targets)
        except (ValueError, RecursionError) as exc:
            raise InputError(
                f"not a results record (byte {offset}): {exc}", str(self.path)
            ) from None


def read_results(
    path: Path, on_result: Callable[[RunInfo, HostResult], None] | None = None
) -> AuditRun:
    """Check a results.jsonl file from end to end and return its run, whose results are read
    lazily from the file (in file order); `on_result` sees each host's result as it is
    checked (to count the run in the same pass). Raises InputError naming the file and line
    on bad content (bad JSON, a missing field or a field of the wrong type, records out of
    order)."""
    info: RunInfo | None = None
    found = offsets()
    try:
        with path.open("rb") as fh:
            lineno = 0
            offset = 0
            for raw in fh:
                lineno += 1
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                    info, result = _read_record(record, info)
                except (ValueError, RecursionError) as exc:
                    if isinstance(exc, UnicodeDecodeError):
                        raise InputError("not UTF-8 text", str(path)) from None
                    raise InputError(f"not a results record: {exc}", str(path), lineno) from None
                if result is not None:
                    found.append(start)
                    if on_result is not None and info is not None:
                        on_result(info, result)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from None
    if info is None:
        raise InputError("no run record: not a results file", str(path))
    return AuditRun(info=info, results=ResultsFile(path, len(info.targets), found))


def _read_record(record: object, info: RunInfo | None) -> tuple[RunInfo, HostResult | None]:
    """Apply one parsed line; returns the run's metadata as known after it, and the host's
    result if the line was one."""
    f = _Fields(record, "record")
    kind = f.text("type")
    if kind == "run":
        if info is not None:
            raise ValueError("a second run record")
        version = f.raw("schema_version")
        if not _is_int(version):
            raise ValueError(f"schema_version is {_kind(version)}, not an integer")
        if version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {version} is not {SCHEMA_VERSION} (newer tool?)")
        return info_from_dict(f.child("run").data), None
    if info is None:
        raise ValueError(f"a {_show(kind)} record before the run record")
    if kind == "host":
        return info, result_from_dict(f.data, len(info.targets))
    if kind == "end":
        final = info_from_dict(f.child("run").data)
        if final.targets != info.targets:
            raise ValueError("the end record lists other targets than the run record")
        return final, None
    raise ValueError(f"unknown record type {_show(kind)}")


class MergedResults:
    """The results of several results files in one order (by host name), each host read
    from its file when iterated; holds two compact indexes (file, offset), not results."""

    def __init__(self, files: Sequence[ResultsFile], which: array[int], where: array[int]) -> None:
        self._files = files
        self._which = which
        self._where = where

    def __len__(self) -> int:
        return len(self._which)

    def __iter__(self) -> Iterator[HostResult]:
        handles = [f._open() for f in self._files]
        try:
            for which, offset in zip(self._which, self._where, strict=True):
                fh = handles[which]
                fh.seek(offset)
                yield self._files[which]._parse(fh.readline(), offset)
        finally:
            for fh in handles:
                fh.close()


def merge_runs(runs: Sequence[AuditRun]) -> AuditRun:
    """Combine runs over disjoint host sets (shards) into one, in a deterministic order (by
    host name). The results stay where they are, read again when the merged run is read."""
    if not runs:
        raise InputError("nothing to merge")
    first = runs[0].info
    urls = [t.url for t in first.targets]
    seen: dict[str, tuple[int, int]] = {}
    for index, run in enumerate(runs):
        if [t.url for t in run.info.targets] != urls:
            raise InputError(f"run {run.info.run_id} audited different URLs; cannot merge")
        for position, result in enumerate(run.results):
            if result.host.name in seen:
                raise InputError(f"host {result.host.name} appears in more than one results file")
            seen[result.host.name] = (index, position)
    sources = [r.results for r in runs]
    files = [f for f in sources if isinstance(f, ResultsFile)]
    merged: Results
    if len(files) == len(sources):
        which = array("H")
        where = array("q")
        for name in sorted(seen):
            index, position = seen.pop(name)
            which.append(index)
            where.append(files[index].offsets[position])
        merged = MergedResults(files, which, where)
    else:
        # Runs already in memory (built by hand): merged in memory.
        held = [tuple(f) for f in sources]
        merged = tuple(held[i][p] for _, (i, p) in sorted(seen.items()))
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
    return AuditRun(info=info, results=merged)
