"""The INI reader's shortcuts give exactly what the long way gives.

Host lines with nothing quoted skip the character-by-character splitter, and values that can
only be text skip `ast.literal_eval`; both are what make a 100,000-host inventory load in a
few seconds, and both must be invisible in the result (types included)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from auditor.inventory.ini import literal_value, parse_value
from auditor.inventory.shellwords import split_quoted, split_words

VALUE_CHARS = "0123456789.:#abefjxFTN []{}()'\"\\-+_,"
LINE_CHARS = "ab01=.:# \t\r-_é"


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return ("dict", sorted((repr(k), _typed(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


def _long_way(text: str) -> Any:
    try:
        return ("ok", _typed(literal_value(text)))
    except ValueError:
        return ("error",)


def _short_way(text: str) -> Any:
    try:
        return ("ok", _typed(parse_value(text)))
    except ValueError:
        return ("error",)


@given(st.text(alphabet=VALUE_CHARS, max_size=24))
def test_a_value_types_the_same_with_or_without_the_shortcuts(text: str) -> None:
    assert _short_way(text) == _long_way(text)


def test_the_shortcut_cases_themselves() -> None:
    for text in ("10.0.1.2", "1.2.3", "fe80::1", "host:22", "23 # note", "1:2", "{1: 2}"):
        assert _short_way(text) == _long_way(text), text
    assert parse_value("23 # note") == 23


@given(st.text(alphabet=LINE_CHARS, max_size=40))
def test_an_unquoted_line_splits_the_same_either_way(line: str) -> None:
    assert split_words(line) == split_quoted(line)
