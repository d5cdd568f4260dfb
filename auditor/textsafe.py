"""Text from hosts and input files made safe for where it is shown: the terminal, a page, a
spreadsheet cell. The one place that knows which characters are dangerous where.

Everything a host says and everything an inventory or results file holds is hostile until
cleaned here: escape sequences could retitle or clear a terminal or forge a link; control
characters have no business in a page; bidirectional controls and zero-width characters make
text display as something other than what it holds (a host name that reads right-to-left,
a formula hidden behind an invisible first character).
"""

from __future__ import annotations

import re

BIDI_AND_ZERO_WIDTH = "\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069"
"""Arabic letter mark, zero-width space/joiners, LRM/RLM, the bidi embeddings, overrides and
isolates: removed (or blanked) wherever text is shown to people."""

# ESC/CSI sequences (7-bit and 8-bit forms), OSC/DCS/APC/PM/SOS strings up to their
# terminator, then any lone ESC with what may follow it.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# For one terminal line: every C0 control (TAB and LF too), DEL, C1, lone surrogates, the
# bidi and zero-width characters and the Unicode line/paragraph separators.
_TERMINAL_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\ud800-\udfff{BIDI_AND_ZERO_WIDTH}\u2028\u2029]")
# For a page or a cell: C0 controls except TAB, LF and CR, DEL, C1, lone surrogates, bidi
# and zero-width characters.
_TEXT_UNSAFE = re.compile(
    f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff{BIDI_AND_ZERO_WIDTH}]"
)
_NEWLINES = re.compile("\r\n?")

INVISIBLE = frozenset("\u200b\u200c\u200d\ufeff\u180e\u061c\u034f\u2060")
"""Characters a spreadsheet skips when it decides whether a cell is a formula."""
FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
"""Characters that make a spreadsheet evaluate a cell; the full-width forms are read the same
way by some spreadsheet applications."""


def for_terminal(text: str, limit: int = 0) -> str:
    """`text` safe to print as (part of) one terminal line: escape sequences removed, every
    other control, bidi or zero-width character replaced by a space. With `limit`, cut to
    that many characters with an ellipsis."""
    if not text.isprintable():
        text = _TERMINAL_UNSAFE.sub(" ", _ESCAPES.sub("", text))
    if limit and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def for_text(text: str) -> str:
    """`text` for a page or a document: controls other than TAB, LF and CR removed, and bidi
    and zero-width characters removed."""
    return text if text.isprintable() else _TEXT_UNSAFE.sub("", text)


def for_cell(text: str) -> str:
    """One spreadsheet cell: cleaned like `for_text` with line breaks made LF, then, if a
    spreadsheet would read it as a formula (its first character, or its first visible one
    after spaces and invisible characters, is ``= + - @``, TAB or CR, or a full-width form of
    these), prefixed with an apostrophe, as OWASP recommends."""
    if not text.isprintable():
        text = _TEXT_UNSAFE.sub("", _NEWLINES.sub("\n", text))
    if text and (text[0] in FORMULA_START or _first_visible(text) in FORMULA_START):
        return "'" + text
    return text


def _first_visible(text: str) -> str:
    for char in text:
        if not (char.isspace() or char in INVISIBLE):
            return char
    return ""


__all__ = [
    "BIDI_AND_ZERO_WIDTH",
    "FORMULA_START",
    "INVISIBLE",
    "for_cell",
    "for_terminal",
    "for_text",
]
