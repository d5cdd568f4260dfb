"""The report directory: made by the auditor, and every file in it created, never followed.

The auditor runs as root with the fleet's credentials, so the directory it writes into must
be one nobody else can plant a file or a symbolic link in. The directory is opened itself
(``O_DIRECTORY | O_NOFOLLOW``), checked through that descriptor (owned by this user, not
writable by group or others), and every file is created relative to the descriptor with
``O_CREAT | O_EXCL | O_NOFOLLOW``: a name that already exists is unlinked first, so neither a
planted link nor a file with a foreign owner or mode is ever written through.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from types import TracebackType

from auditor.errors import InputError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def dir_mode(file_mode: int) -> int:
    """A directory is as open as its files: readable files get a listable directory."""
    return 0o700 | (0o050 if file_mode & 0o040 else 0) | (0o005 if file_mode & 0o004 else 0)


DirIdentity = tuple[int, int]
"""A directory's (device, inode): which directory it is, whatever its path names later."""


class ReportDir:
    """An open, verified report directory; files are created relative to its descriptor."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @property
    def identity(self) -> DirIdentity:
        st = os.fstat(self._fd)
        return (st.st_dev, st.st_ino)

    @classmethod
    def open(cls, path: Path, expect: DirIdentity | None = None) -> ReportDir:
        """Open `path` as a directory without following a final symbolic link, and refuse it
        unless this user owns it and group and others cannot write to it, and (with
        `expect`) unless it is still the very directory the run prepared."""
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError as exc:
            # O_NOFOLLOW on a link fails with ELOOP or, with O_DIRECTORY, ENOTDIR.
            if os.path.islink(path):
                raise InputError(
                    "report directory is a symbolic link (give the directory itself)", str(path)
                ) from None
            if isinstance(exc, NotADirectoryError):
                raise InputError("exists and is not a directory", str(path)) from None
            raise InputError(f"cannot open report directory: {exc.strerror}", str(path)) from None
        try:
            st = os.fstat(fd)
            _check_owner_only(st, path)
            if expect is not None and (st.st_dev, st.st_ino) != expect:
                # Someone who can write the parent swapped another directory in.
                raise InputError("report directory was replaced during the run", str(path))
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    def fileno(self) -> int:
        return self._fd

    def names(self) -> list[str]:
        """The entries of the directory (of the opened directory, not of whatever the path
        names now)."""
        return os.listdir(self._fd)

    def create(self, name: str, mode: int) -> int:
        """A new, empty file `name` opened for writing; an existing entry of that name (file
        or symbolic link) is removed first, so nothing is ever written through it."""
        self._unlink(name)
        try:
            return os.open(name, _CREATE_FLAGS, mode, dir_fd=self._fd)
        except OSError as exc:
            raise InputError(f"cannot create: {exc.strerror}", str(self.path / name)) from None

    def write_atomic(self, name: str, data: bytes, mode: int) -> None:
        """Write `data` as `name` via a new temporary file and a rename, so a reader never
        sees half a file; the rename replaces an existing link instead of following it."""
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, mode, dir_fd=self._fd)
        except OSError as exc:
            raise InputError(f"cannot create: {exc.strerror}", str(self.path / name)) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=self._fd)
            except OSError:
                pass
            raise

    def create_temporary(self, name: str, mode: int) -> tuple[str, int]:
        """A new temporary file for what will become `name` (`commit` puts it in place,
        `discard` removes it): its name and a descriptor open for writing."""
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return tmp, os.open(tmp, _CREATE_FLAGS, mode, dir_fd=self._fd)
        except OSError as exc:
            raise InputError(f"cannot create: {exc.strerror}", str(self.path / name)) from None

    def commit(self, tmp: str, name: str) -> None:
        """Rename the temporary file `tmp` over `name` (replacing a link, never following
        it)."""
        os.replace(tmp, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)

    def discard(self, tmp: str) -> None:
        try:
            os.unlink(tmp, dir_fd=self._fd)
        except OSError:
            pass

    def fsync(self) -> None:
        """Make the directory's new entries durable."""
        try:
            os.fsync(self._fd)
        except OSError:
            pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ReportDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self._fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise InputError(f"cannot replace: {exc.strerror}", str(self.path / name)) from None


def _check_owner_only(st: os.stat_result, path: Path) -> None:
    if st.st_uid != os.geteuid():
        raise InputError(
            f"report directory is owned by uid {st.st_uid}, not by this user (uid "
            f"{os.geteuid()}); refusing to write into it",
            str(path),
        )
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise InputError(
            f"report directory is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):03o}); refusing to write into it",
            str(path),
        )


def prepare(path: Path, force: bool, file_mode: int) -> ReportDir:
    """Create the report directory (or take an existing one this user owns and only this
    user can write), and return it open.

    An existing directory must be empty unless `force`; with `force` the files the run
    writes replace entries of the same name (never through them).
    """
    created = False
    try:
        if path.parent != path:
            path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, dir_mode(file_mode))
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise InputError(f"cannot create report directory: {exc.strerror}", str(path)) from None
    directory = ReportDir.open(path)
    if not created and not force and directory.names():
        directory.close()
        raise InputError("report directory exists and is not empty (use --force)", str(path))
    return directory


__all__ = ["DirIdentity", "ReportDir", "dir_mode", "prepare"]
