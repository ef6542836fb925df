"""Persistent disks: an ext4 filesystem of a fixed size in a sparse image file per disk
(``<data_dir>/disks/<id>.img``), loop-mounted at ``<data_dir>/disks/<id>/`` while jobs use
it, and bound into their containers from there, pinned (``volume_source``).  The size is the
filesystem's: a job cannot write more.

One writer at a time: a job that would write to a disk another running job writes to (or
reads, for a writer) waits with reason ``DiskUnavailable``; readers share.  Needs root, loop
devices and mkfs.ext4 (e2fsprogs); without them, creating a disk fails with a clear error."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

MIN_SIZE = 16 << 20
MAX_SIZE = 16 << 40


class DiskError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def disks_dir(data_dir: Path) -> Path:
    d = data_dir / "disks"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def image(data_dir: Path, disk_id: str) -> Path:
    return disks_dir(data_dir) / f"{disk_id}.img"


def mountpoint(data_dir: Path, disk_id: str) -> Path:
    return disks_dir(data_dir) / disk_id


def volume_source(data_dir: Path, disk_id: str) -> tuple[Path, str]:
    """Where a job's volume of the disk is opened (pinned, as storage volumes are): beneath
    the server's disks directory, the disk's mount point by name, no link followed.  A
    runtime mounts the directory it opened, never the path string."""
    return disks_dir(data_dir), disk_id


def why_unsupported() -> str | None:
    if os.geteuid() != 0:
        return "disks need a server running as root (loop devices)"
    if shutil.which("mkfs.ext4") is None:
        return "disks need mkfs.ext4 (e2fsprogs) on the server"
    if not os.path.exists("/dev/loop-control"):
        return "disks need loop devices (/dev/loop-control) on the server"
    return None


async def create_image(data_dir: Path, disk_id: str, size: int) -> None:
    why = why_unsupported()
    if why:
        raise DiskError(why)
    path = image(data_dir, disk_id)

    def mkfs() -> subprocess.CompletedProcess[str]:
        with open(path, "wb") as f:
            f.truncate(size)  # sparse: takes space only as it fills
        return subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )

    r = await asyncio.to_thread(mkfs)
    if r.returncode != 0:
        path.unlink(missing_ok=True)
        raise DiskError(f"cannot make the disk's filesystem: {r.stderr.strip()}", 500)


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == target for line in f)
    except OSError:
        return False


async def mount(data_dir: Path, disk_id: str, owner: tuple[int, int] | None = None) -> Path:
    """Mount the disk (if it is not); its filesystem's root is then ``owner``'s (uid, gid):
    the user whose jobs run as that uid writes there (None: left as it is)."""
    mnt = mountpoint(data_dir, disk_id)
    mnt.mkdir(exist_ok=True, mode=0o700)
    if not is_mounted(mnt):
        await _mount(data_dir, disk_id, mnt)
    if owner is not None:
        await asyncio.to_thread(_give_root, mnt, owner)
    return mnt


def _give_root(mnt: Path, owner: tuple[int, int]) -> None:
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != owner:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)


async def _mount(data_dir: Path, disk_id: str, mnt: Path) -> None:

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mount", "-o", "loop,nosuid,nodev", str(image(data_dir, disk_id)), str(mnt)],
            capture_output=True,
            text=True,
            check=False,
        )

    r = await asyncio.to_thread(run)
    if r.returncode != 0:
        raise DiskError(f"cannot mount disk {disk_id}: {r.stderr.strip()}", 500)


async def unmount(data_dir: Path, disk_id: str) -> None:
    mnt = mountpoint(data_dir, disk_id)
    if not is_mounted(mnt):
        return

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["umount", str(mnt)], capture_output=True, text=True, check=False)

    await asyncio.to_thread(run)


def used_bytes(data_dir: Path, disk_id: str) -> int:
    mnt = mountpoint(data_dir, disk_id)
    if is_mounted(mnt):
        st = os.statvfs(mnt)
        return (st.f_blocks - st.f_bfree) * st.f_frsize
    try:
        return os.stat(image(data_dir, disk_id)).st_blocks * 512
    except OSError:
        return 0
