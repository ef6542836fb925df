"""Open a path beneath a directory without following any link: race-free, so that what was
checked is what gets used.

    root = os.open(storage_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    fd = open_beneath(root, "race/x")   # an O_PATH fd of race/x itself, or PathError

A check on a path string (``realpath`` inside the tree?) followed by a use of the same string
(a bind mount, an ``open``) loses to anyone who can rename entries of the tree meanwhile: a job
with its owner's storage as a read-write volume swaps ``race/x`` for a link to the server's data
dir, and the use follows the link.  Here the check *is* the use: the path is resolved once, by
the kernel, with every component required to be a real directory (or, last, a regular file
where allowed) and never a symbolic link, and what comes back is a file descriptor of that very
inode; mount it through ``/proc/self/fd/N``, read through it, it cannot change any more.

openat2(2) (Linux 5.6) does it in one system call: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
RESOLVE_NO_MAGICLINKS.  Where it is missing (ENOSYS, or a seccomp filter that says EPERM) the
path is walked one component at a time with openat(O_PATH | O_NOFOLLOW | O_DIRECTORY), which
gives the same guarantee.  ``..`` and absolute paths are refused outright (the callers clean
paths first; this is the last line).  Mount points inside the tree are crossed (a disk's
filesystem is one).  Standard library only (ctypes): the supervisor imports it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
# openat2 came after the system call tables were unified: one number nearly everywhere
SYS_OPENAT2 = {
    "x86_64": 437,
    "aarch64": 437,
    "arm64": 437,
    "riscv64": 437,
    "ppc64le": 437,
    "ppc64": 437,
    "s390x": 437,
    "i686": 437,
    "i386": 437,
    "armv7l": 437,
}
_RETRIES = 8  # EAGAIN: a rename elsewhere in the tree raced the lookup; the kernel asks again

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class PathError(OSError):
    """The path cannot be opened safely beneath the root; ``str()`` is one clear line that
    names the path (relative to the root) and why."""

    def __init__(self, err: int, path: str, why: str) -> None:
        super().__init__(err, f"{path or '.'}: {why}")
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


_WHY = {
    errno.ELOOP: "is a symbolic link (not followed in a volume)",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "not a directory",
    errno.EXDEV: "leads out of the tree",
    errno.EACCES: "permission denied",
    errno.ENAMETOOLONG: "name too long",
}

use_openat2 = True  # tests turn it off to exercise the walk


def open_beneath(root_fd: int, path: str, *, directory: bool = True) -> int:
    """An O_PATH, close-on-exec fd of ``path`` (relative; '' or '.' is the root itself)
    beneath the directory ``root_fd``, no component of it a link.  ``directory``: it must be
    a directory; else a directory or a regular file (nothing else: no device, FIFO, socket).
    Raises PathError."""
    parts = _parts(path)
    rel = "/".join(parts)
    fd = _openat2(root_fd, rel) if use_openat2 and parts else None
    if fd is None:
        fd = _walk(root_fd, parts)
    try:
        _check_kind(fd, rel, directory)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_under(root: str, path: str, *, directory: bool = True) -> int:
    """``open_beneath`` the directory ``root``, a path of the caller's own (opened as it is
    given: a tree's root is the server's, not its users').  Raises OSError: its ``strerror``
    says what, in one line."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_beneath(fd, path, directory=directory)
    finally:
        os.close(fd)


def _parts(path: str) -> list[str]:
    if "\0" in path:
        raise PathError(errno.EINVAL, path, "a NUL byte in the path")
    if path.startswith("/"):
        raise PathError(errno.EXDEV, path, "an absolute path (it must be relative to the tree)")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathError(errno.EXDEV, path, "'..' is not allowed")
    return parts


def _openat2(root_fd: int, rel: str) -> int | None:
    """The fd, or None where openat2 is not available (the walk does it then)."""
    number = SYS_OPENAT2.get(platform.machine())
    if number is None:
        return None
    how = _OpenHow(
        os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
    )
    for _ in range(_RETRIES):
        fd = int(
            _libc.syscall(number, root_fd, rel.encode(), ctypes.byref(how), ctypes.sizeof(how))
        )
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM):
            return None
        if err != errno.EAGAIN:
            raise _error(err, root_fd, rel)
    raise PathError(errno.EAGAIN, rel, "the tree kept changing while it was looked up")


def _walk(root_fd: int, parts: list[str]) -> int:
    """openat one component at a time: directories with O_NOFOLLOW | O_DIRECTORY, the last
    one with O_NOFOLLOW (an O_PATH fd of a link then, refused by the caller's check)."""
    cur = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    for i, name in enumerate(parts):
        last = i == len(parts) - 1
        flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
        try:
            nxt = os.open(name, flags, dir_fd=cur)
        except OSError as e:
            err = e.errno or errno.EIO
            if err == errno.ENOTDIR and _is_link(cur, name):
                err = errno.ELOOP
            raise PathError(
                err, "/".join(parts[: i + 1]), _WHY.get(err, os.strerror(err))
            ) from None
        finally:
            os.close(cur)
        cur = nxt
    return cur


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _error(err: int, root_fd: int, rel: str) -> PathError:
    """openat2's error, naming the component at fault where it can be found (the walk knows;
    one more lookup here, only on failure, for the message)."""
    if err in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
        try:
            os.close(_walk(root_fd, rel.split("/")))
        except PathError as e:
            return e
        except OSError:
            pass
    return PathError(err, rel, _WHY.get(err, os.strerror(err)))


def _check_kind(fd: int, rel: str, directory: bool) -> None:
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        return
    if stat.S_ISLNK(mode):
        raise PathError(errno.ELOOP, rel, _WHY[errno.ELOOP])
    if directory:
        raise PathError(errno.ENOTDIR, rel, _WHY[errno.ENOTDIR])
    if not stat.S_ISREG(mode):
        raise PathError(errno.EINVAL, rel, "not a regular file or a directory")


def fd_path(fd: int) -> str:
    """The path that names exactly the inode of ``fd`` (for mount(2) and bind sources)."""
    return f"/proc/self/fd/{fd}"
