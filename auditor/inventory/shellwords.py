"""Splitting an INI host line into words: `shlex.split(line, comments=True)`, faster.

Ansible splits host lines with shlex in POSIX mode. shlex reads one character at a time
in Python and was most of the time it took to load a 10,000-host inventory; this does
the same with a handful of regular-expression matches per word. The property tests check
it against shlex itself.

The rules (POSIX shlex with `whitespace_split` and `#` comments):
- words are separated by space, tab, CR or LF (no other whitespace);
- `'...'` keeps everything literally; `"..."` too, except that a backslash before `"` or
  a backslash stands for that character;
- outside quotes a backslash makes the next character literal;
- quoted parts and plain parts next to each other make one word (`a"b c"` is `ab c`),
  and `''` on its own is an empty word;
- `#` outside quotes ends the line.
"""

from __future__ import annotations

import re

_SPACE = " \t\r\n"
_PLAIN = re.compile(r"[^ \t\r\n'\"\\#]+")
_SINGLE = re.compile(r"'([^']*)'")
_DOUBLE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_DOUBLE_ESCAPE = re.compile(r'\\(["\\])')
_WORD_END = _SPACE + "#"
_QUOTING = re.compile(r"['\"\\]")
_UNQUOTED_WORD = re.compile(r"[^ \t\r\n]+")


def split_words(line: str) -> list[str]:
    """The words of one line (no line breaks in it); ValueError for an unclosed quote or
    a trailing backslash."""
    if _QUOTING.search(line) is None:
        # Nothing quoted or escaped (most host lines): words are the runs between blanks,
        # up to the first '#', which starts a comment even inside a word.
        return _UNQUOTED_WORD.findall(line.partition("#")[0])
    return split_quoted(line)


def split_quoted(line: str) -> list[str]:
    """`split_words` the long way, character by character: quotes and escapes honoured."""
    words: list[str] = []
    pos, end = 0, len(line)
    while True:
        while pos < end and line[pos] in _SPACE:
            pos += 1
        if pos >= end or line[pos] == "#":
            return words
        parts: list[str] = []
        while pos < end and line[pos] not in _WORD_END:
            char = line[pos]
            if char == "'":
                match = _SINGLE.match(line, pos)
                if match is None:
                    raise ValueError("No closing quotation")
                parts.append(match.group(1))
            elif char == '"':
                match = _DOUBLE.match(line, pos)
                if match is None:
                    raise ValueError("No closing quotation")
                parts.append(_DOUBLE_ESCAPE.sub(r"\1", match.group(1)))
            elif char == "\\":
                if pos + 1 >= end:
                    raise ValueError("No escaped character")
                parts.append(line[pos + 1])
                pos += 2
                continue
            else:
                match = _PLAIN.match(line, pos)
                assert match is not None  # `char` is not special, so at least it matches
                parts.append(match.group())
            pos = match.end()
        words.append("".join(parts))
        if pos < end and line[pos] == "#":
            return words
