"""Finding a path in a user's tree one name at a time, descriptor by descriptor (no link
out of it followed), and giving what is made there to the tree's user."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Self

from .paths import MAX_LINKS, Owner, StorageError, clean, os_error, short, shown


def volume_exists(root: Path, path: str) -> bool:
    """Whether the volume source ``path`` (cleaned) is in the tree at ``root`` as a volume
    takes it: opened beneath the root with no link followed at all (pathsafe.py), as the
    runtimes open it when they mount it.  False when it (or a directory above it) does not
    exist; StorageError (400, one line) for a link, a FIFO or device, or anything else that
    could never be mounted.  The runtimes check again as they mount: this is for a clear
    answer while nothing is racing."""
    import errno as errno_

    from .. import pathsafe

    rel = clean(path).as_posix()
    try:
        os.close(pathsafe.open_under(str(root), "" if rel == "." else rel, directory=False))
    except OSError as e:
        if e.errno == errno_.ENOENT:
            return False
        raise StorageError(str(e.strerror or e)) from None
    return True


class Loc:
    """An entry of a tree, pinned: ``name`` in the directory ``dir_fd`` (``name`` None: the
    directory ``dir_fd`` itself, e.g. the root).  Close it (or use ``with``)."""

    def __init__(self, dir_fd: int, name: str | None) -> None:
        self.dir_fd = dir_fd
        self.name = name

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def lstat(self) -> os.stat_result:
        if self.name is None:
            return os.fstat(self.dir_fd)
        return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)

    def target(self) -> os.stat_result:
        """The lstat of what ``locate(follow=True)`` found, which was no link then: a link
        now means the tree changed meanwhile (Changed: the operation looks again)."""
        st = self.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise Changed
        return st

    def open_dir(self) -> int:
        """A new descriptor of this directory (Changed when it is one no more)."""
        if self.name is None:
            return os.dup(self.dir_fd)
        try:
            return os.open(self.name, DIR_FLAGS, dir_fd=self.dir_fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Changed from None
            raise


class Changed(Exception):
    """What was looked up changed before it was used (a job swaps names in its tree): the
    operation starts again (``_errors``), a few times."""


RETRIES = 8


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def _open_root(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def locate(
    root: Path, path: str, *, follow: bool = True, make_dirs: bool = False, owner: Owner = None
) -> Loc:
    """Find ``path`` in the tree at ``root`` one name at a time, each looked up in the
    descriptor of its parent without following links (O_NOFOLLOW), so nothing a job does to
    the tree meanwhile leads out of it.  Links inside the tree are followed by hand (the last
    name only with ``follow``); an absolute one, or one climbing out, is a 403.  A missing
    last name is no error (CREATE makes it); with ``make_dirs`` missing directories are made
    on the way, the last name included (given to ``owner``).  StorageError for the rest
    (os_error)."""
    todo = list(clean(path).parts)
    stack: list[int] = []  # the directories from the root down to where we are
    links = 0
    try:
        stack.append(_open_root(root))
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) == 1:
                    raise StorageError(
                        f"{shown(path)}: a link in it leads out of your storage", 403
                    )
                os.close(stack.pop())
                continue
            last = not todo
            if last and not follow and not make_dirs:
                return Loc(stack.pop(), name)
            try:
                st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                if make_dirs:
                    try:
                        os.mkdir(name, dir_fd=stack[-1])
                        if owner is not None:
                            _give(name, stack[-1], owner)
                    except FileExistsError:  # made meanwhile: look again
                        links = _again(links)
                    todo.insert(0, name)
                    continue
                if last:
                    return Loc(stack.pop(), name)
                raise
            if stat.S_ISLNK(st.st_mode):
                links = _again(links)
                try:
                    target = os.readlink(name, dir_fd=stack[-1])
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    links = _again(links)  # a link no more: look again
                    todo.insert(0, name)
                    continue
                if target.startswith("/"):
                    raise StorageError(
                        f"{shown(path)}: the link {short(name)} leads out of your storage", 403
                    )
                todo[:0] = target.split("/")
                continue
            if last and not make_dirs:
                return Loc(stack.pop(), name)
            if not stat.S_ISDIR(st.st_mode):
                raise StorageError(f"{shown(path)}: {short(name)} exists and is a file", 409)
            try:
                stack.append(os.open(name, DIR_FLAGS, dir_fd=stack[-1]))
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise
                links = _again(links)  # swapped for something else since the stat: look again
                todo.insert(0, name)
        return Loc(stack.pop(), None)
    except OSError as e:
        raise os_error(e, path) from None
    finally:
        for fd in stack:
            os.close(fd)


def _give(name: str, dir_fd: int, owner: tuple[int, int]) -> None:
    """chown what ``name`` is now (opened with no link followed: whatever was swapped in
    meanwhile, never what a link points to) when it is a directory or a regular file of one
    link (a hard link to another's file is not given away)."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    try:
        give_fd(fd, owner)
    finally:
        os.close(fd)


def give_fd(fd: int, owner: tuple[int, int]) -> bool:
    """chown the directory or single-link regular file open at ``fd`` (an O_PATH one too)
    to ``owner``; False (and nothing done) for anything else."""
    st = os.fstat(fd)
    if not (stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1)):
        return False
    if (st.st_uid, st.st_gid) != owner:
        # (fchown refuses an O_PATH descriptor; its /proc link names that very inode)
        os.chown(f"/proc/self/fd/{fd}", *owner)
    return True


def own_tree(root: Path, uid: int, gid: int) -> bool:
    """Make the tree at ``root`` its user's (``uid``:``gid``), once: a tree whose root is
    theirs already is left as it is; else every directory and single-link regular file in
    it is given to them (fd by fd, no link followed; links, hard links, devices, FIFOs and
    sockets stay as they are), and the root last, so that an interrupted pass is done again.
    True when the tree was not theirs yet."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(root, DIR_FLAGS)
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) == (uid, gid):
            return False
        for _dir, dirs, files, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            for name in (*dirs, *files):
                with contextlib.suppress(OSError):
                    _give(name, dir_fd, (uid, gid))
        os.fchown(fd, uid, gid)
        return True
    finally:
        os.close(fd)


def _again(links: int) -> int:
    """One more link followed (or name looked at again); ELOOP past MAX_LINKS, as the kernel."""
    if links >= MAX_LINKS:
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
    return links + 1
