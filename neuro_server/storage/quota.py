"""Per-user storage quota: how much of it a user's tree takes, counted between walks."""

from __future__ import annotations

import asyncio
import math
import os
import stat
from pathlib import Path

from .operations import Upload
from .paths import PART_PREFIX, StorageError


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
        super().__init__(
            f"storage quota of {human_size(quota)} exceeded: {human_size(used)} "
            "used; remove files (neuro rm) or ask the admin for more",
            507,
        )


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
