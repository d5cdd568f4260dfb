"""Reading an inventory file: bytes, UTF-8 text, and which format it is written in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from auditor.errors import InputError

Format = Literal["ini", "structured"]

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
# A first line like `all:`, `"web":` or `web: {...}` is YAML; an INI line is a section,
# a host (`db:2222` has no space after the colon) or `key=value` pairs.
_YAML_KEY = re.compile(r"""^(?:"[^"]*"|'[^']*'|[^\s"'\[=#;:{][^\s:=]*)\s*:(?:\s|$)""")
_STRUCTURED_EXTENSIONS = (".yml", ".yaml", ".json")


def read_source(path: str | Path) -> bytes:
    """The file's bytes; InputError if it cannot be read."""
    source = str(path)
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise InputError(
            "is a directory; give an inventory file (inventory directories are not supported)",
            source,
        ) from None
    except FileNotFoundError:
        raise InputError("no such inventory file", source) from None
    except PermissionError:
        raise InputError("permission denied reading the inventory", source) from None
    except OSError as exc:
        raise InputError(f"cannot read the inventory: {exc.strerror or exc}", source) from None


def decode(data: bytes | str, source: str, comment_markers: tuple[str, ...] = ()) -> str:
    """UTF-8 text without a byte-order mark.

    Bytes that are not UTF-8 are an InputError naming their line, except on comment lines
    (starting with one of `comment_markers`), which are blanked: a Latin-1 comment should
    not make an inventory unreadable.
    """
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _blank_undecodable_comments(data, source, comment_markers)
    return text.removeprefix("\ufeff")


def _blank_undecodable_comments(data: bytes, source: str, markers: tuple[str, ...]) -> str:
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    for number, line in enumerate(lines, start=1):
        bad = _ESCAPED_BYTE.search(line)
        if bad is None:
            continue
        if markers and line.strip().startswith(markers):
            lines[number - 1] = ""
            continue
        byte = ord(bad.group()) - 0xDC00
        raise InputError(
            f"not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8", source, number
        )
    return "\n".join(lines)


def is_text(value: str) -> bool:
    """Whether `value` is valid text: no lone surrogates, so UTF-8 can encode it.

    Decoding a file as UTF-8 never makes a lone surrogate, but escapes can: JSON and YAML
    `"\\udfff"`, a Python literal on an INI line. Such a string cannot be written to the
    results file or a report faithfully, so it is refused where it enters.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def nesting_guard(source: str) -> Iterator[None]:
    """Turn Python's recursion limit, hit by absurdly nested input, into an InputError."""
    try:
        yield
    except RecursionError:
        raise InputError("the inventory is nested too deeply", source) from None


def sniff_format(source: str, text: str) -> Format:
    """INI or structured (YAML / JSON), judged by the first meaningful line.

    The extension only decides for a file with nothing but comments: Ansible itself tries
    its YAML parser and then its INI parser whatever the name, so content is what counts.
    """
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith(("{", "---", "%", "- ")) or line == "-" or _YAML_KEY.match(line):
            return "structured"
        return "ini"
    return "structured" if Path(source).suffix.lower() in _STRUCTURED_EXTENSIONS else "ini"
