"""A full disk, told apart from other failures, and the space the server holds back for it.

``disk_full(e)`` says whether an error means "no room to write" (ENOSPC, a quota, SQLite's
"database or disk is full"): the app answers it with 507, the scheduler retries its records.

``Reserve`` is a file of the data dir's filesystem that the scheduler gives up when a job's
state cannot be recorded for want of space: the end of a job that filled the disk is then
recorded at once, not when someone frees space.  It is taken again once there is room.

    reserve = Reserve(data_dir / "reserve")
    reserve.ensure()        # now and then: taken when missing and there is room for it
    if reserve.release():   # on a full disk: True when this freed some room
        ...
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
RESERVE_SIZE = 1 << 20  # a few hundred status transitions' worth of SQLite WAL pages


def disk_full(e: BaseException) -> bool:
    if isinstance(e, sqlite3.OperationalError):
        code = getattr(e, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or (code is None and "disk is full" in str(e))
    return isinstance(e, OSError) and e.errno in NO_SPACE


def describe(e: BaseException) -> str:
    """The kernel's or SQLite's words for it, on one line."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class Reserve:
    def __init__(self, path: Path, size: int = RESERVE_SIZE) -> None:
        self.path = path
        self.size = size

    def ensure(self) -> bool:
        """Take the reserve if it is missing and the disk has room for it and as much again
        (a disk that just filled up is not made full again by it); True when it is held."""
        if self.path.exists():
            return True
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return False
        if st.f_bavail * st.f_frsize < 2 * self.size:
            return False
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
            return True
        except OSError:
            tmp.unlink(missing_ok=True)
            return False

    def release(self) -> bool:
        """Give the reserve up; True when there was one (so a retry may now succeed)."""
        try:
            self.path.unlink()
            return True
        except OSError:
            return False
