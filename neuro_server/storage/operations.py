"""The storage API's operations, blocking (the handlers run them in threads): status,
listing, reading, making directories, removing, and uploads."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from .paths import PART_PREFIX, Owner, StorageError, clean, os_error, shown
from .tree import READ_FLAGS, RETRIES, Changed, locate

P = ParamSpec("P")
R = TypeVar("R")


def _served(st: os.stat_result, path: str) -> None:
    """Only directories and regular files are served: refuse the rest without reading it."""
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return
    kind = (
        "a FIFO"
        if stat.S_ISFIFO(st.st_mode)
        else "a socket"
        if stat.S_ISSOCK(st.st_mode)
        else "a device"
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
        else "a symbolic link"
        if stat.S_ISLNK(st.st_mode)
        else "a special file"
    )
    raise StorageError(
        f"{shown(path)} is {kind}, not a regular file or directory: only those "
        "are served (`neuro rm` removes it)",
        400,
    )


def _status_json(st: os.stat_result, path: str) -> dict[str, Any]:
    is_dir = stat.S_ISDIR(st.st_mode)
    return {
        "path": path,
        "type": "DIRECTORY" if is_dir else "FILE",
        "length": 0 if is_dir else st.st_size,
        "modificationTime": int(st.st_mtime),
        "permission": "write",
    }


def _errors(fn: Callable[Concatenate[Path, str, P], R]) -> Callable[Concatenate[Path, str, P], R]:
    """OSErrors of ``fn(root, path, ...)`` as StorageErrors (os_error), and ``fn`` run again
    when the tree changed under it (Changed)."""

    @functools.wraps(fn)
    def wrapper(root: Path, path: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        for _ in range(RETRIES):
            try:
                return fn(root, path, *args, **kwargs)
            except Changed:
                continue
            except OSError as e:
                raise os_error(e, path) from None
        raise StorageError(
            f"{shown(path)} kept changing while it was being looked up: try again", 409
        )

    return wrapper


@_errors
def file_status(root: Path, path: str) -> dict[str, Any]:
    """GET_FILE_STATUS: links followed; ``path`` as given, relative to the root."""
    with locate(root, path) as loc:
        st = loc.target()
    _served(st, path)
    return _status_json(st, clean(path).as_posix() if clean(path).parts else "")


@_errors
def list_status(root: Path, path: str) -> list[dict[str, Any]]:
    """LIST_STATUS: a directory's directories and regular files by name (links inside the tree
    followed, everything else left out), or a file's own status."""
    with locate(root, path) as loc:
        st = loc.target()
        if not stat.S_ISDIR(st.st_mode):
            _served(st, path)
            return [_status_json(st, clean(path).as_posix())]
        fd = loc.open_dir()
    try:
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        out = []
        for entry in entries:
            try:
                est = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(est.st_mode):
                    est = _target_stat(root, f"{path}/{entry.name}")
            except (OSError, StorageError):
                continue  # gone meanwhile, or a link that dangles or leads out
            if stat.S_ISDIR(est.st_mode) or stat.S_ISREG(est.st_mode):
                out.append(_status_json(est, entry.name))
        return out
    finally:
        os.close(fd)


def _target_stat(root: Path, path: str) -> os.stat_result:
    """What the link at ``path`` leads to (StorageError, OSError: nowhere in the tree)."""
    with locate(root, path) as loc:
        return loc.lstat()


@_errors
def open_file(root: Path, path: str) -> tuple[int, int]:
    """OPEN: a descriptor to read the regular file at ``path`` from, and its size.  Nothing
    else is opened for reading, and no open can block: O_NONBLOCK (a FIFO would wait for a
    writer), O_NOFOLLOW (a link swapped in since the lookup), then fstat says what it is."""
    with locate(root, path) as loc:
        st = loc.target()
        if loc.name is None or stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{shown(path)} is a directory", 400)
        _served(st, path)
        try:
            fd = os.open(loc.name, READ_FLAGS, dir_fd=loc.dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:  # a link swapped in since the lookup
                raise Changed from None
            raise
    try:
        st = os.fstat(fd)
        _served(st, path)
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{shown(path)} is a directory", 400)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


@_errors
def make_dirs(root: Path, path: str, owner: Owner = None) -> None:
    """MKDIRS: the directory and its parents (links inside the tree followed), made
    ``owner``'s."""
    locate(root, path, make_dirs=True, owner=owner).close()


@_errors
def remove(root: Path, path: str, recursive: bool) -> int | None:
    """DELETE: the entry itself (a link, not what it points to); a directory only when empty
    or ``recursive``.  The bytes freed, None when not counted (a tree)."""
    if not clean(path).parts:
        raise StorageError("the root of your storage cannot be removed", 400)
    with locate(root, path, follow=False) as loc:
        assert loc.name is not None
        st = loc.lstat()
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(loc.name, dir_fd=loc.dir_fd)
            return st.st_size if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 else 0
        if not recursive:
            os.rmdir(loc.name, dir_fd=loc.dir_fd)  # ENOTEMPTY: a 409 that says how
            return 0
        shutil.rmtree(loc.name, dir_fd=loc.dir_fd)  # fd-based: it follows no link
        return None


def _exists(root: Path, path: str) -> bool:
    try:
        with locate(root, path, follow=False) as loc:
            loc.lstat()
    except (OSError, StorageError):
        return False
    return True


def make_new_dirs(root: Path, paths: list[str], owner: Owner = None) -> list[str]:
    """``make_dirs`` for each of ``paths``; the directories this made, parents first (for
    ``remove_new_dirs``: a job that is refused after its volumes were made leaves nothing)."""
    made: list[str] = []
    for path in paths:
        parts = clean(path).parts
        new = [
            "/".join(parts[:i])
            for i in range(1, len(parts) + 1)
            if not _exists(root, "/".join(parts[:i]))
        ]
        make_dirs(root, path, owner)
        made += [p for p in new if p not in made]
    return made


def remove_new_dirs(root: Path, made: list[str]) -> None:
    """Undo ``make_new_dirs``: each directory it made, deepest first, if still empty."""
    for path in reversed(made):
        with contextlib.suppress(OSError, StorageError), locate(root, path, follow=False) as loc:
            assert loc.name is not None
            os.rmdir(loc.name, dir_fd=loc.dir_fd)


class Upload:
    """A CREATE in progress, in a thread's calls: the bytes go to a hidden file beside the
    target, in the directory pinned by its descriptor, and replace the target only once
    complete (``commit``); ``abort`` removes the partial file.  ``replaced``: the bytes of the
    file it replaces (a quota counts the difference)."""

    def __init__(self, root: Path, path: str, owner: Owner = None) -> None:
        self.path = path
        if not clean(path).parts:
            raise StorageError("/ is a directory", 409)
        self.written = 0
        self.fd = -1
        self.tmp = f"{PART_PREFIX}{uuid.uuid4().hex}.part"
        self._loc = locate(root, path, follow=False)
        try:
            self.replaced = self._existing()
            self.fd = os.open(
                self.tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self._loc.dir_fd,
            )
            if owner is not None:  # (before a byte is written: its user's file)
                os.fchown(self.fd, *owner)
        except OSError as e:
            self.abort()
            raise os_error(e, path) from None
        except StorageError:
            self._loc.close()
            raise

    def _existing(self) -> int:
        assert self._loc.name is not None
        try:
            st = self._loc.lstat()
        except FileNotFoundError:
            return 0
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{shown(self.path)} is a directory", 409)
        return st.st_size if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 else 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.written += n
        except OSError as e:
            raise os_error(e, self.path) from None

    def commit(self) -> None:
        assert self._loc.name is not None
        try:
            os.close(self.fd)
            self.fd = -1
            os.replace(
                self.tmp, self._loc.name, src_dir_fd=self._loc.dir_fd, dst_dir_fd=self._loc.dir_fd
            )
        except OSError as e:
            self.abort()
            raise os_error(e, self.path) from None
        self._loc.close()

    def abort(self) -> None:
        """Remove the partial file (idempotent, never raises)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._loc.dir_fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp, dir_fd=self._loc.dir_fd)
            self._loc.close()
