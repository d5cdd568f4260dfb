"""The one sanitiser module every report format and the CLI use."""

from __future__ import annotations

import pytest

from auditor.textsafe import for_cell, for_terminal, for_text

BIDI_AND_ZERO_WIDTH = [
    "\u061c",
    *map(chr, range(0x200B, 0x2010)),
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
]


@pytest.mark.parametrize("char", BIDI_AND_ZERO_WIDTH, ids=lambda c: f"U+{ord(c):04X}")
def test_bidi_and_zero_width_characters_go_everywhere(char: str) -> None:
    assert for_terminal(f"a{char}b") == "a b"
    assert for_text(f"a{char}b") == "ab"
    assert for_cell(f"a{char}b") == "ab"


@pytest.mark.parametrize(
    "invisible", ["\u200b", "\u200c", "\u200d", "\ufeff", "\u180e", "\u061c", "\u034f", "\u2060"]
)
@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20"])
def test_a_formula_behind_invisible_characters_is_neutralised(invisible: str, prefix: str) -> None:
    value = for_cell(f"{invisible} {invisible}{prefix}1+1")
    assert value.startswith("'"), ascii(value)
    assert value.endswith(f"{prefix}1+1")


def test_text_keeps_what_is_harmless() -> None:
    assert for_cell("a=b;c") == "a=b;c"
    assert for_cell("\u034fplain") == "\u034fplain"  # invisible, but no formula follows
    assert for_text("tab\tline\nend\r") == "tab\tline\nend\r"
    assert for_text("naïve 日本 🙂") == "naïve 日本 🙂"
    assert for_terminal("naïve 日本 🙂") == "naïve 日本 🙂"


def test_terminal_text_loses_every_escape_and_stays_one_line() -> None:
    text = "a\x1b]0;title\x07b\x1b[2Jc\x1b]8;;http://e\x1b\\d\x9b1me\nf\u2028g"
    assert for_terminal(text) == "abcde f g"
