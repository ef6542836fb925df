"""Volumes for the docker runtime, pinned: the engine is given a path that no job can change.

    binds = pin(job_dir / STAGING, spec.mounts)   # before the container is created
    ...create, attach, start...
    unpin(job_dir / STAGING)                      # once it runs (it has its own copies)

The engine takes a bind mount's source as a path string and resolves it when the container
starts, long after the server checked it: a job that swaps a directory of its owner's storage
for a link in between gets the link's target (the server's data dir, any host path, read-write
as root).  So the server opens each volume beneath its tree with neuro_server.pathsafe (no link
followed), binds that open directory (``/proc/self/fd/N``) onto ``<job dir>/volumes/<i>``, a
directory of the server's that no job reaches (the job dir is 0700), and gives the engine that
path.  Whatever the job renames afterwards, the staging mount is the inode that was checked.

The staging directory is first bound onto itself and made private, so the mounts beneath it
propagate nowhere (on hosts whose root is a shared mount, as with systemd), and the container's
bind of one is a copy of its own: once the container started, ``unpin`` detaches ours and the
job keeps its volume.  ``unpin_stale`` detaches what a server killed between the two left.
Read-only volumes are read-only already on the staging mount; all of them nosuid, nodev.
Mounting needs root (CAP_SYS_ADMIN): ``why_unsupported`` says when the server cannot.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
from collections.abc import Collection, Sequence
from pathlib import Path

from ... import pathsafe
from ..base import Mount

STAGING = "volumes"
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_PRIVATE = 1, 2, 4, 32, 4096, 1 << 18
MNT_DETACH = 2
_MAX_DETACH = 16  # mounts stacked on one staging point (there is one; a bound on the loop)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


class PinError(OSError):
    """A volume could not be pinned; ``str()`` says which and why, in one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def why_unsupported() -> str | None:
    """Why this server cannot pin volumes for containers (None: it can)."""
    if os.geteuid() != 0:
        return (
            "storage volumes and disks on the docker runtime need a server running as "
            "root: it pins each volume with a bind mount, so that a job cannot swap the "
            "volume's directory for a link to another host path"
        )
    return None


def _mount(source: str | None, target: str, flags: int) -> None:
    if _libc.mount(source.encode() if source else None, target.encode(), None, flags, None):
        err = ctypes.get_errno()
        raise PinError(err, f"mount {target}: {os.strerror(err)}")


def open_volume(m: Mount) -> int:
    """An O_PATH fd of the volume ``m``: its path beneath its tree's root, no link followed
    (pathsafe).  Raises PinError naming the volume."""
    try:
        return pathsafe.open_under(m.root, m.path, directory=False)
    except OSError as e:
        raise PinError(e.errno or 0, f"volume source for {m.dst}: {e.strerror}") from None


def pin(staging: Path, mounts: Sequence[Mount]) -> list[str]:
    """Bind each volume, opened race-free, onto ``staging/<i>``; the engine's ``Binds`` for
    them (``path:dst:ro|rw``).  Raises PinError (nothing stays mounted then)."""
    if not mounts:
        return []
    if why := why_unsupported():
        raise PinError(1, why)
    binds = []
    try:
        _private(staging)
        for i, m in enumerate(mounts):
            target = str(staging / str(i))
            fd = open_volume(m)
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.mkdir(target, 0o700)
                else:
                    os.close(
                        os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    )
                _mount(pathsafe.fd_path(fd), target, MS_BIND)
            finally:
                os.close(fd)
            _mount(
                None,
                target,
                MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (MS_RDONLY if m.read_only else 0),
            )
            binds.append(f"{target}:{m.dst}:{'ro' if m.read_only else 'rw'}")
    except BaseException:
        unpin(staging)
        raise
    return binds


def _private(staging: Path) -> None:
    """``staging``, empty, bound onto itself and private: what is mounted beneath it stays
    in this mount namespace."""
    unpin(staging)  # an earlier run's
    staging.mkdir(mode=0o700, exist_ok=True)
    os.chmod(staging, 0o700)
    _mount(str(staging), str(staging), MS_BIND)
    _mount(None, str(staging), MS_PRIVATE)


def unpin(staging: Path) -> None:
    """Detach the staging mounts under ``staging`` (and its own), then remove their mount
    points: never recursively (a mount still there is someone's files), one by one."""
    for target in sorted(mounted_under(staging), key=len, reverse=True):
        for _ in range(_MAX_DETACH):
            if _libc.umount2(target.encode(), MNT_DETACH) != 0:
                break
    if not staging.is_dir():
        return
    for entry in os.scandir(staging):
        try:
            if entry.is_dir(follow_symlinks=False):
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass  # still a mount point (EBUSY): left alone, never emptied
    with contextlib.suppress(OSError):
        os.rmdir(staging)


def unpin_stale(jobs_root: Path, keep: Collection[str] = ()) -> list[str]:
    """Detach staging mounts a server killed while starting a job left under ``jobs_root``
    (except those of the job ids in ``keep``); the job ids it cleaned."""
    prefix = str(jobs_root.resolve()) + "/"
    found = set()
    for target in _mount_points():
        if target.startswith(prefix):
            rest = target[len(prefix) :].split("/")
            if len(rest) >= 2 and rest[1] == STAGING and rest[0] not in keep:
                found.add(rest[0])
    for job_id in sorted(found):
        unpin(jobs_root / job_id / STAGING)
    return sorted(found)


def mounted_under(staging: Path) -> list[str]:
    """Mount points at ``staging`` or beneath it."""
    top = str(staging.resolve()) if staging.exists() else str(staging)
    return [t for t in _mount_points() if t == top or t.startswith(top + "/")]


def _mount_points() -> list[str]:
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [_unescape(line.split(b" ")[4]) for line in lines if line.count(b" ") >= 4]


def _unescape(field: bytes) -> str:
    r"""mountinfo writes space, tab, newline and backslash as \NNN (octal)."""
    out, i = bytearray(), 0
    while i < len(field):
        if field[i : i + 1] == b"\\" and field[i + 1 : i + 4].isdigit():
            out.append(int(field[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return out.decode(errors="surrogateescape")
