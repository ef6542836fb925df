"""A small tmpfs for tests of a full disk: mounted for the test, unmounted whatever happened."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def can_mount() -> bool:
    return os.geteuid() == 0


needs_mount = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str, before_unmount: Callable[[], None]) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. "8m") at ``path``; ``before_unmount`` ends what may
    still hold files there (supervisors, jobs).  A busy mount is retried for a while, then
    detached lazily: no test leaves a mount behind."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield path
    finally:
        try:
            before_unmount()
        finally:
            deadline = time.monotonic() + 10
            while (
                subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode
                != 0
            ):
                if time.monotonic() > deadline:
                    subprocess.run(["umount", "-l", str(path)], check=False)
                    break
                time.sleep(0.05)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> Path:
    """A ballast file that leaves about ``leave`` bytes free on ``path``'s filesystem."""
    ballast = path / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * (64 << 10)
        with contextlib.suppress(OSError):
            while os.write(fd, chunk):
                pass
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return ballast
