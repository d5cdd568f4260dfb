"""Reading trust material (keys, certificates, known_hosts, password files) safely.

Every such path comes from a flag or an inventory, so it may name anything: a FIFO (an
open() that blocks until a writer comes, past every deadline and signal handler), a device
such as /dev/zero (a read that never ends), a directory, or a huge file. Only a regular file
of bounded size is read, and the check is made on the opened descriptor (fstat), so the file
cannot be swapped between the check and the read.

Symbolic links are followed on purpose: keys and certificates are commonly links (secret
mounts, dotfile managers), and the target is held to the same rules.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

KEY_LIMIT = 1 << 20
"""Private keys and certificates: far larger than any real one (an RSA-16384 key is ~13 KB)."""
KNOWN_HOSTS_LIMIT = 64 << 20
"""known_hosts: a fleet of 100,000 hosts with three keys each is about 60 MB."""
SECRET_LIMIT = 64 << 10
"""A password file holds one line."""


class MaterialError(Exception):
    """A file that cannot be used; `reason` is a short phrase ("a FIFO", "does not exist").
    `missing` is true when nothing exists at the path."""

    def __init__(self, reason: str, missing: bool = False) -> None:
        self.reason = reason
        self.missing = missing
        super().__init__(reason)


@dataclass(frozen=True)
class Material:
    """A file's bytes, with the owner and mode bits of the file that was read."""

    data: bytes
    mode: int
    uid: int


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_material(path: Path, limit: int) -> Material:
    """The whole of regular file `path`, at most `limit` bytes; raises MaterialError (with
    FileNotFoundError's reason "does not exist" for a missing file) and never blocks."""
    # O_NONBLOCK: opening a FIFO for reading then returns at once instead of waiting for a
    # writer; it has no effect on reads of a regular file, the only kind read below.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise MaterialError("does not exist", missing=True) from None
    except OSError as exc:
        raise MaterialError(exc.strerror or type(exc).__name__) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MaterialError(_kind(info.st_mode))
        if info.st_size > limit:
            raise MaterialError(f"larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        # Bounded even if the file grows while it is read.
        while size <= limit:
            try:
                chunk = os.read(fd, min(65536, limit + 1 - size))
            except OSError as exc:
                raise MaterialError(exc.strerror or type(exc).__name__) from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise MaterialError(f"larger than {limit} bytes")
        return Material(b"".join(chunks), info.st_mode, info.st_uid)
    finally:
        os.close(fd)
