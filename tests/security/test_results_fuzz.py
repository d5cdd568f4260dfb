"""A results.jsonl with any field of any type (or missing) is refused with one InputError
naming the file and line, or, when it is still a valid file, renders every report: never a
traceback from `auditor report`.

The valid file is the one the tool writes itself (`ResultsWriter`), for a run with audited,
blocked and not-audited hosts; every field of every record kind is mutated.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.aggregate import exit_status
from auditor.errors import InputError
from auditor.models import Host, Observation, RunInfo, Target
from auditor.reporters import REPORTERS
from auditor.reporters.base import render
from auditor.reporters.terminal import render_summary
from auditor.results import SCHEMA_VERSION, info_to_dict, read_results, reader_for, result_to_dict
from tests.reporters.fleet import sample_run
from tests.support.cli import BIN

Path_ = tuple[int | str, ...]


def _valid_lines() -> list[dict[str, Any]]:
    """The records ResultsWriter writes for the sample run (built with its own serialisers;
    the sample's lone surrogates survive as JSON escapes)."""
    run = sample_run()
    records: list[dict[str, Any]] = [
        {"type": "run", "schema_version": SCHEMA_VERSION, "run": info_to_dict(run.info)},
        *({"type": "host", **result_to_dict(r)} for r in run.results),
        {"type": "end", "run": info_to_dict(run.info)},
    ]
    return [json.loads(json.dumps(record)) for record in records]


LINES = _valid_lines()


def _paths(value: object, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every field and list item inside `value` (not `value` itself)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


ALL_PATHS: list[tuple[int, Path_]] = [
    (lineno, path) for lineno, line in enumerate(LINES) for path in _paths(line)
]


def _shape(lineno: int, path: Path_) -> tuple[str, tuple[str, ...]]:
    """A field's place in the schema: its record kind and keys, list positions folded."""
    kind = str(LINES[lineno]["type"])
    return kind, tuple("[]" if isinstance(p, int) else p for p in path)


# One representative path per schema field: the exhaustive test covers each with each type.
FIELDS: dict[tuple[str, tuple[str, ...]], tuple[int, Path_]] = {}
for _lineno, _path in ALL_PATHS:
    FIELDS.setdefault(_shape(_lineno, _path), (_lineno, _path))

DELETE = object()
TYPE_SAMPLES: list[object] = [
    None,
    True,
    0,
    -1,
    10**30,
    2.5,
    float("nan"),
    "",
    "\x1b[2Jtext",
    [],
    [1, "x", None],
    {},
    {"k": [1]},
    DELETE,
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _mutated(lineno: int, path: Path_, value: object) -> list[dict[str, Any]]:
    lines = json.loads(json.dumps(LINES))
    node: Any = lines[lineno]
    for step in path[:-1]:
        node = node[step]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return lines


def _check(lines: list[dict[str, Any]], directory: Path) -> None:
    """Either an InputError naming the file and a line, or every report renders."""
    path = directory / "results.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    try:
        run = read_results(path)
    except InputError as exc:
        assert exc.source == str(path)
        assert exc.line is not None or "no run record" in exc.message
        assert "\n" not in str(exc)
        return
    for reporter in REPORTERS.values():
        render(reporter(), run)
    render_summary(run, color=True)
    exit_status(run)


@pytest.mark.parametrize(
    ("where", "value"),
    [(where, value) for where in FIELDS.values() for value in TYPE_SAMPLES],
    ids=lambda x: repr(x)[:30],
)
def test_every_field_of_every_type_is_refused_or_renders(
    where: tuple[int, Path_], value: object, tmp_path: Path
) -> None:
    lineno, path = where
    _check(_mutated(lineno, path, value), tmp_path)


@given(st.sampled_from(ALL_PATHS), json_values | st.just(DELETE))
def test_any_field_of_any_line_replaced_by_any_json_is_refused_or_renders(
    where: tuple[int, Path_], value: object
) -> None:
    lineno, path = where
    with tempfile.TemporaryDirectory() as tmp:
        _check(_mutated(lineno, path, value), Path(tmp))


@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), json_values), min_size=2, max_size=6))
def test_several_mutations_at_once_are_refused_or_render(
    edits: list[tuple[tuple[int, Path_], object]],
) -> None:
    lines = json.loads(json.dumps(LINES))
    for (lineno, path), value in edits:
        node: Any = lines[lineno]
        try:
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced the container
    with tempfile.TemporaryDirectory() as tmp:
        _check(lines, Path(tmp))


def _host_line() -> int:
    return next(i for i, line in enumerate(LINES) if line["type"] == "host" and line["audited"])


@pytest.mark.parametrize(
    ("lineno", "path", "value"),
    [
        (0, ("run", "targets", 0, "url"), 5),
        (0, ("run", "targets", 0, "expected_status"), "200"),
        (0, ("run", "options"), ["a"]),
        (0, ("run", "runners"), "r1"),
        (0, ("run", "duration"), "slow"),
        (_host_line(), ("host", "groups"), {"g": 1}),
        (_host_line(), ("host", "port"), "22"),
        (_host_line(), ("observations", 0, "http_status"), "200"),
        (_host_line(), ("observations", 0, "time_total"), [1]),
        (_host_line(), ("facts",), {"os": 1}),
    ],
)
def test_auditor_report_says_file_and_line_and_exits_2(
    tmp_path: Path, lineno: int, path: Path_, value: object
) -> None:
    results = tmp_path / "results.jsonl"
    lines = _mutated(lineno, path, value)
    results.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    proc = subprocess.run(
        [str(BIN / "auditor"), "report", str(results), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and f"{results}:{lineno + 1}:" in err[0], proc.stderr


@pytest.mark.parametrize("cls", [Host, Observation, Target, RunInfo], ids=lambda c: c.__name__)
def test_every_serialised_field_type_has_a_reading_rule(cls: type) -> None:
    # A field added with a type the reader has no rule for would be carried unchecked.
    hints = get_type_hints(cls)
    for fld in dataclasses.fields(cls):
        if (cls, fld.name) in {(Host, "vars"), (RunInfo, "targets")}:
            continue  # never written / read by its own rule
        assert reader_for(hints[fld.name]) is not None, f"{cls.__name__}.{fld.name}"
