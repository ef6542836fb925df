"""The server's data dir is private: 0700, and its own files 0600.

It holds the signing key (``secret``), the database (users, tokens, secrets' values), tokens
and job output, so any local user who can read it can act as any platform user.  Every
``neuro-server`` command runs with a umask of 077 (what it creates is its user's only) and calls
``secure`` first: a missing dir is made 0700, an existing one that is too open (from an older
version, or made by hand) is tightened, and one owned by another user is refused, since its
owner could read or replace what the server keeps there.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from pathlib import Path

UMASK = 0o077

#: files the server and the admin commands keep at the top of the data dir
FILES = (
    "neuro.db",
    "neuro.db-wal",
    "neuro.db-shm",
    "neuro.db-journal",
    "secret",
    "token",
    "server.json",
    "port",
    "http_port",
    "server.log",
    "server.lock",
    "start.lock",
)
#: directories below it (each user's storage, the jobs' files, disks)
DIRS = ("storage", "jobs", "disks")


class DataDirError(Exception):
    pass


def _who(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _tighten(path: Path, mode: int, changed: list[str]) -> None:
    """chmod ``path`` to ``mode`` when group or others have any access; a symlink or a missing
    path is left alone (chmod would follow the link), one of another user's is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        return
    if st.st_uid != os.geteuid():
        raise DataDirError(
            f"{path} belongs to {_who(st.st_uid)}, not to this server's user "
            f"{_who(os.geteuid())}: chown it, or use another --data-dir"
        )
    if st.st_mode & 0o077:
        os.chmod(path, mode)
        changed.append(f"{path.name or path} {stat.S_IMODE(st.st_mode):04o} -> {mode:04o}")


def secure(data_dir: Path) -> list[str]:
    """Make ``data_dir`` private (see the module's docstring); returns what was tightened, as
    lines for a log.  DataDirError (one line) when it is not ours or not a directory."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.stat(data_dir)
    if not stat.S_ISDIR(st.st_mode):
        raise DataDirError(f"{data_dir} is not a directory")
    changed: list[str] = []
    _tighten(data_dir, 0o700, changed)
    for name in DIRS:
        _tighten(data_dir / name, 0o700, changed)
    for name in FILES:
        _tighten(data_dir / name, 0o600, changed)
    # SQLite makes the -wal and -shm files with the mode of the database: make it 0600 first
    with contextlib.suppress(FileExistsError):
        os.close(
            os.open(
                data_dir / "neuro.db",
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        )
    return changed
