"""Host definitions as Ansible reads them: `name[:port]`, IPv4/IPv6 forms and ranges.

`expand_host_pattern("web[01:03].example.com:2222")` gives three names and port 2222.
The grammar follows ansible-core (`parsing/utils/addresses.py`, `expand_hostname_range`):
a definition that is not a valid address keeps its text as the name and gets no port,
exactly as Ansible does, so the same file yields the same hosts in both tools.
"""

from __future__ import annotations

import re
import string

# Expanding more names than this from one definition is treated as a mistake: Ansible would
# try to build them all and exhaust memory (`web[0:99999999]`).
MAX_EXPANSION = 100_000

_NUMERIC_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"

# Host labels: word characters and dashes, not ending in '-' or '_', with ranges anywhere.
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.IGNORECASE)

_OCTET = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUMERIC_RANGE})"
_IPV4 = re.compile(rf"^(?:{_OCTET}\.){{3}}{_OCTET}$", re.IGNORECASE)


def _ipv6_pattern() -> re.Pattern[str]:
    hextet = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
    dotted = rf"(?:{hextet}\.){{3}}{hextet}"
    forms = [
        rf"(?:{hextet}:){{7}}{hextet}",  # 1:2:3:4:5:6:7:8
        rf"(?:{hextet}:){{1,6}}:",  # 1::  ..  1:2:3:4:5:6::
        # a::b with a+b groups between 2 and 7
        *(rf"(?:{hextet}:){{{a}}}(?::{hextet}){{1,{7 - a}}}" for a in range(1, 7)),
        rf":(?::{hextet}){{1,6}}",  # ::2  ..  ::2:3:4:5:6:7
        rf"{hextet}?::",  # ::, 1::
        rf"(?:0:){{6}}{dotted}",  # IPv4 embedded in IPv6
        rf"::(?:ffff:)?{dotted}",
        rf"(?:0:){{5}}ffff:{dotted}",
    ]
    return re.compile("^(?:" + "|".join(forms) + ")$", re.IGNORECASE)


_IPV6 = _ipv6_pattern()

# `[anything]:port` (the only way to give an IPv6 address a port), then `name:port` where
# the name has no ':' outside square brackets.
_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_TRAILING_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")


def parse_address(text: str) -> tuple[str, int | None]:
    """Split `text` into an address (ranges allowed) and an optional port.

    Raises ValueError when what remains is not a hostname, IPv4 or IPv6 address.
    """
    address, port = text, None
    for pattern in (_BRACKETED_PORT, _TRAILING_PORT):
        match = pattern.match(address)
        if match:
            address, port = match.group(1), int(match.group(2))
    if _IPV4.match(address) or _IPV6.match(address) or _HOSTNAME.match(address):
        return address, port
    raise ValueError(f"not a valid network hostname: {address}")


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """Return the host names a definition stands for and the port they share.

    Raises ValueError for a malformed range.
    """
    try:
        base, port = parse_address(pattern)
    except ValueError:
        # Ansible keeps an unparseable definition verbatim as the host name.
        base, port = pattern, None
    if "[" not in base:
        return [base], port
    return expand_ranges(base), port


def expand_ranges(name: str) -> list[str]:
    """Expand every `[begin:end(:step)]` range in `name`, leftmost range varying slowest."""
    names = [name]
    while any("[" in item for item in names):
        # One range per name per pass, each name's expansions kept in its place: the
        # order Ansible's recursive expansion gives, without its recursion limit.
        expanded: list[str] = []
        for item in names:
            if "[" in item:
                expanded.extend(_expand_first_range(item))
            else:
                expanded.append(item)
            if len(expanded) > MAX_EXPANSION:
                raise ValueError(f"host range expands to more than {MAX_EXPANSION} names")
        names = expanded
    return names


def _expand_first_range(name: str) -> list[str]:
    # Ansible cuts the name at the first '[' and the first ']' wherever they are, and
    # uses '|' internally; we accept exactly the names it accepts.
    if "|" in name or "]" not in name:
        raise ValueError(
            f"invalid host range in {name!r}: expected [begin:end] or [begin:end:step]"
        )
    first, second = sorted((name.index("["), name.index("]")))
    head, spec, tail = name[:first], name[first + 1 : second], name[second + 1 :]
    return [f"{head}{item}{tail}" for item in _range_items(spec, name)]


def _range_items(spec: str, name: str) -> list[str]:
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range [{spec}] in {name!r} must be begin:end or begin:end:step")
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError(f"host range [{spec}] in {name!r} has no end value")
    width = 0
    if begin[0] == "0" and len(begin) > 1:
        # A leading zero asks for zero-padded names, which only works for equal widths.
        if len(begin) != len(end):
            raise ValueError(
                f"host range [{spec}] in {name!r}: zero-padded begin and end need the same width"
            )
        width = len(begin)

    letters = _letter_items(begin, end, step_text, spec, name)
    if letters is not None:
        return letters
    try:
        numbers = range(int(begin), int(end) + 1, int(step_text))
    except ValueError:
        raise ValueError(
            f"host range [{spec}] in {name!r} needs numbers or single letters"
        ) from None
    if len(numbers) > MAX_EXPANSION:
        raise ValueError(f"host range [{spec}] expands to more than {MAX_EXPANSION} names")
    if not numbers:
        raise ValueError(f"host range [{spec}] in {name!r} is empty (is begin > end?)")
    return [str(n).zfill(width) for n in numbers]


def _letter_items(begin: str, end: str, step_text: str, spec: str, name: str) -> list[str] | None:
    """Letters for an alphabetic range, or None when the range is not alphabetic."""
    alphabet = string.ascii_letters
    # Ansible locates the bounds with str.index, so any run of letters in a..zA..Z is a
    # bound (it stands for its first letter); anything else makes the range numeric.
    first, last = alphabet.find(begin), alphabet.find(end)
    if first < 0 or last < 0:
        return None
    if first > last:
        raise ValueError(f"host range [{spec}] in {name!r} must have begin <= end")
    try:
        step = int(step_text)
        items = list(alphabet[first : last + 1 : step])
    except ValueError:
        raise ValueError(f"host range [{spec}] in {name!r} has an invalid step") from None
    if not items:
        raise ValueError(f"host range [{spec}] in {name!r} is empty")
    return items
