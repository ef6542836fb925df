"""Each user's storage tree on the server: ``<data_dir>/storage/<user>/``.

Paths come from users (URIs ``storage:path`` or ``storage://CLUSTER/USER/path``, and API URL
paths) and must never leave the user's tree: ``clean`` refuses ``..`` components, NUL bytes,
backslash tricks and names no file system takes (over 255 bytes, lone surrogates).

The storage API's operations (``file_status``, ``list_status``, ``open_file``, ``make_dirs``,
``remove``, ``Upload``) block, so the handlers run them in threads, never on the event loop.
They find a path with ``locate``: one name at a time, each opened relative to the descriptor
of its parent with O_NOFOLLOW, so a job swapping a directory of the tree for a link meanwhile
cannot lead the server out of it (nothing is checked by path string, then used by string).

Symbolic links (jobs make them) are handled like this: a relative one that stays inside the
tree is followed, as a file system would (``storage:latest/model.pt`` with ``latest ->
run-7``); an absolute one, or one that climbs out of the tree, is a 403; a dangling one is a
404, like a missing file.  DELETE removes a link itself and CREATE replaces it: never what it
points to.

Only directories and regular files are served.  LIST_STATUS leaves everything else out (FIFOs,
sockets, devices, links that dangle or lead out); GET_FILE_STATUS and OPEN of one answer 400
without reading it (OPEN opens with O_NONBLOCK | O_NOFOLLOW and checks fstat, so a FIFO never
blocks anything); DELETE removes one.  OSErrors become answers in one place, ``os_error``:
a client's mistake is a 4xx, a full disk a 507, never a 500.

A per-user quota (``storage_quota`` in server.toml) is kept by ``Usage``: the tree is walked
(in a thread) at most once a minute and the API's own writes keep the count between walks.

``resolve`` checks a path string for job volumes (neuro_server/pathsafe.py pins them).

Where users' jobs run as uids of their own (jobusers.py), a user's tree is theirs: made theirs
once (``own_tree``), and what the API makes there (``owner``: MKDIRS, CREATE, volumes' new
directories) is given to them as it is made, so their jobs can write to their volumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import math
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
Owner = tuple[int, int] | None  # (uid, gid) what is made belongs to; None: the server's


NAME_MAX = 255  # bytes in one name (ext4, xfs, tmpfs...)
PATH_MAX = 4096  # bytes in a path
MAX_LINKS = 40  # links followed in one lookup, as the kernel allows
PART_PREFIX = ".neuro-upload-"  # an upload in progress (not counted: it is reserved)


class StorageError(Exception):
    """A bad path or operation; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def user_root(data_dir: Path, user: str) -> Path:
    root = data_dir / "storage" / user
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def clean(path: str) -> PurePosixPath:
    """A user-given path inside a tree, as a relative path ('' is the tree itself)."""
    if "\0" in path or "\\" in path:
        raise StorageError(f"invalid path {_short(path)}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise StorageError(f"invalid path {_short(path)}: '..' is not allowed")
    for p in parts:
        try:
            size = len(os.fsencode(p))
        except UnicodeEncodeError:
            raise StorageError(f"invalid path {_short(path)}: it is not valid UTF-8") from None
        if size > NAME_MAX:
            raise StorageError(f"invalid path {_short(path)}: a name of {size} bytes (at most "
                               f"{NAME_MAX} bytes a name)")
    if sum(len(os.fsencode(p)) + 1 for p in parts) > PATH_MAX:
        raise StorageError(f"invalid path {_short(path)}: longer than {PATH_MAX} bytes")
    return PurePosixPath(*parts) if parts else PurePosixPath()


def _short(path: str) -> str:
    """``path`` quoted for a message, and cut: a message is one readable line."""
    text = repr(path)
    return text if len(text) <= 80 else text[:64] + "...'"


def shown(path: str) -> str:
    """How messages name a path of the tree: ``/a/b`` (cut when long)."""
    text = "/" + "/".join(p for p in path.split("/") if p not in ("", "."))
    return text if len(text) <= 80 else text[:64] + "..."


def volume_exists(root: Path, path: str) -> bool:
    """Whether the volume source ``path`` (cleaned) is in the tree at ``root`` as a volume
    takes it: opened beneath the root with no link followed at all (pathsafe.py), as the
    runtimes open it when they mount it.  False when it (or a directory above it) does not
    exist; StorageError (400, one line) for a link, a FIFO or device, or anything else that
    could never be mounted.  The runtimes check again as they mount: this is for a clear
    answer while nothing is racing."""
    import errno as errno_

    from . import pathsafe

    rel = clean(path).as_posix()
    try:
        os.close(pathsafe.open_under(str(root), "" if rel == "." else rel, directory=False))
    except OSError as e:
        if e.errno == errno_.ENOENT:
            return False
        raise StorageError(str(e.strerror or e)) from None
    return True


def os_error(e: OSError, path: str) -> StorageError:
    """The one place an OSError of a storage operation on ``path`` becomes an answer: what a
    client did wrong is a 4xx, a full disk a 507, and only the unexplained is a 500."""
    where = shown(path)
    code = e.errno
    if code == errno.ENOENT:
        return StorageError(f"no such file or directory: {where}", 404)
    if code == errno.ENOTDIR:
        return StorageError(f"{where}: a part of the path is a file, not a directory", 409)
    if code == errno.EISDIR:
        return StorageError(f"{where} is a directory", 409)
    if code in (errno.EEXIST, errno.ENOTEMPTY):
        return StorageError(f"{where} is a directory that is not empty (remove it recursively)"
                            if code == errno.ENOTEMPTY else f"{where} already exists", 409)
    if code == errno.ENAMETOOLONG:
        return StorageError(f"{where}: name too long (at most {NAME_MAX} bytes a name, "
                            f"{PATH_MAX} a path)", 400)
    if code == errno.ELOOP:
        return StorageError(f"{where}: more than {MAX_LINKS} symbolic links, or one that "
                            "appeared while the path was being used (try again)", 409)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"the server's disk is full: {where} was not written", 507)
    if code in (errno.EACCES, errno.EPERM):
        return StorageError(f"{where}: permission denied", 403)
    if code in (errno.EBUSY, errno.EXDEV, errno.EMLINK, errno.ETXTBSY):
        return StorageError(f"{where}: {e.strerror}", 409)
    if code == errno.EINVAL:
        return StorageError(f"{where}: {e.strerror}", 400)
    return StorageError(f"{where}: {e.strerror or e}", 500)


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
        now means the tree changed meanwhile (_Changed: the operation looks again)."""
        st = self.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise _Changed
        return st

    def open_dir(self) -> int:
        """A new descriptor of this directory (_Changed when it is one no more)."""
        if self.name is None:
            return os.dup(self.dir_fd)
        try:
            return os.open(self.name, _DIR, dir_fd=self.dir_fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _Changed from None
            raise


class _Changed(Exception):
    """What was looked up changed before it was used (a job swaps names in its tree): the
    operation starts again (``_errors``), a few times."""


_RETRIES = 8


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def _open_root(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def locate(root: Path, path: str, *, follow: bool = True, make_dirs: bool = False,
           owner: Owner = None) -> Loc:
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
                    raise StorageError(f"{shown(path)}: a link in it leads out of your storage",
                                       403)
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
                    raise StorageError(f"{shown(path)}: the link {_short(name)} leads out of "
                                       "your storage", 403)
                todo[:0] = target.split("/")
                continue
            if last and not make_dirs:
                return Loc(stack.pop(), name)
            if not stat.S_ISDIR(st.st_mode):
                raise StorageError(f"{shown(path)}: {_short(name)} exists and is a file", 409)
            try:
                stack.append(os.open(name, _DIR, dir_fd=stack[-1]))
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
    fd = os.open(root, _DIR)
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


def _served(st: os.stat_result, path: str) -> None:
    """Only directories and regular files are served: refuse the rest without reading it."""
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return
    kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a special file")
    raise StorageError(f"{shown(path)} is {kind}, not a regular file or directory: only those "
                       "are served (`neuro rm` removes it)", 400)


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
    when the tree changed under it (_Changed)."""

    @functools.wraps(fn)
    def wrapper(root: Path, path: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        for _ in range(_RETRIES):
            try:
                return fn(root, path, *args, **kwargs)
            except _Changed:
                continue
            except OSError as e:
                raise os_error(e, path) from None
        raise StorageError(f"{shown(path)} kept changing while it was being looked up: try "
                           "again", 409)

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
            fd = os.open(loc.name, _READ, dir_fd=loc.dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:  # a link swapped in since the lookup
                raise _Changed from None
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
        new = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)
               if not _exists(root, "/".join(parts[:i]))]
        make_dirs(root, path, owner)
        made += [p for p in new if p not in made]
    return made


def remove_new_dirs(root: Path, made: list[str]) -> None:
    """Undo ``make_new_dirs``: each directory it made, deepest first, if still empty."""
    for path in reversed(made):
        with contextlib.suppress(OSError, StorageError), \
                locate(root, path, follow=False) as loc:
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
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o600, dir_fd=self._loc.dir_fd)
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
            os.replace(self.tmp, self._loc.name, src_dir_fd=self._loc.dir_fd,
                       dst_dir_fd=self._loc.dir_fd)
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


def tree_size(root: Path) -> int:
    """Bytes of the regular files in a tree (each inode once; uploads in progress left out:
    they are counted as reserved).  fd-based (os.fwalk): it follows no link."""
    total = 0
    seen: set[tuple[int, int]] = set()
    if not root.is_dir():
        return 0
    for _dir, _subdirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in files:
            if name.startswith(PART_PREFIX):
                continue
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def human_size(n: int) -> str:
    """``10737418240`` -> ``10.0 GiB`` (messages)."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


class Usage:
    """How much of its quota one user's tree takes: walked (in a thread) at most every
    ``REFRESH`` seconds, and kept up to date in between by the API's own writes, so a small
    write does not walk the tree.  What jobs write into their volumes is seen at the next walk
    (a job can go over the quota; then the API refuses to write more).  Used on the event
    loop only (no lock: one loop)."""

    REFRESH = 60.0

    def __init__(self, root: Path, quota: int) -> None:
        self.root = root
        self.quota = quota
        self.used = 0
        self.reserved = 0  # bytes of uploads in progress
        self._walked_at = -math.inf
        self._walk: asyncio.Future[int] | None = None
        self.loop = asyncio.get_running_loop()

    async def refresh(self) -> None:
        """Walk the tree again if the count is older than REFRESH (one walk at a time)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._walked_at < self.REFRESH:
            return
        if self._walk is None:
            self._walk = asyncio.ensure_future(asyncio.to_thread(tree_size, self.root))
        walk = self._walk
        try:
            used = await asyncio.shield(walk)
        finally:
            if walk.done() and self._walk is walk:
                self._walk = None
        if self._walked_at < loop.time() - self.REFRESH:
            self.used, self._walked_at = used, loop.time()

    def invalidate(self) -> None:
        """Count again at the next refresh (after a change not counted, e.g. a tree removed)."""
        self._walked_at = -math.inf

    def reserve(self, upload: Upload, n: int) -> None:
        """Room for ``n`` more bytes of ``upload``, or QuotaExceeded."""
        after = self.used + self.reserved + n - upload.replaced
        if after > self.quota:
            raise QuotaExceeded(self.quota, self.used)
        self.reserved += n

    def settle(self, upload: Upload, reserved: int, committed: bool) -> None:
        """An upload ended: its reservation goes, and its bytes count when it was written."""
        self.reserved -= reserved
        if committed:
            self.used += upload.written - upload.replaced

    def freed(self, n: int | None) -> None:
        if n is None:
            self.invalidate()
        else:
            self.used = max(0, self.used - n)


class QuotaExceeded(StorageError):
    """A write would take a user's tree over its storage quota: 507."""

    def __init__(self, quota: int, used: int) -> None:
        super().__init__(f"storage quota of {human_size(quota)} exceeded: {human_size(used)} "
                         "used; remove files (neuro rm) or ask the admin for more", 507)


_USAGE: dict[Path, Usage] = {}


def usage_of(root: Path, quota: int) -> Usage:
    """The Usage of the tree at ``root``, on this event loop (a server restarted in the same
    process, as tests do, counts afresh)."""
    loop = asyncio.get_running_loop()
    usage = _USAGE.get(root)
    if usage is None or usage.loop is not loop:
        usage = _USAGE[root] = Usage(root, quota)
    usage.quota = quota
    return usage


def uri_path(uri: str, cluster: str, user: str) -> str:
    """The path in ``user``'s tree that a storage URI names: ``storage:path``,
    ``storage:/path``, or ``storage://CLUSTER/USER/path``."""
    if not uri.startswith("storage:"):
        raise StorageError(f"not a storage URI (storage:PATH): {uri!r}")
    rest = uri[len("storage:"):]
    if rest.startswith("//"):
        parts = rest[2:].split("/", 2)
        if parts[0] != cluster:
            raise StorageError(f"{uri!r} is not on cluster {cluster!r}")
        if len(parts) < 2 or parts[1] != user:
            raise StorageError(f"{uri!r} is not in your storage (storage://{cluster}/{user}/...)", 403)
        return parts[2] if len(parts) > 2 else ""
    return rest
