"""What /proc says about processes (standard library only: the supervisor and the server's
side of the process runtime both use it): a pid's state and start time (so that a reused pid
is never taken for the process it was), the boot's id, sessions and children to kill."""

from __future__ import annotations

import contextlib
import os
import signal

TYPE_CHECKING = False  # typing itself costs milliseconds at every job start
if TYPE_CHECKING:
    from typing import Any

    Record = dict[str, Any]


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks since boot)`` of a live pid, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0].decode(), int(fields[19])


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def supervisor_alive(record: Record) -> bool:
    """Whether the supervisor described by supervisor.json still runs (not a reused pid)."""
    try:
        pid, starttime = int(record["pid"]), int(record["starttime"])
    except (KeyError, TypeError, ValueError):
        return False
    if record.get("boot_id", "") != boot_id():
        return False
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in "ZXx" and stat[1] == starttime


def kill_session(sid: int) -> None:
    """SIGKILL a process session: its leader's group, and members that left the group."""
    killpg(sid, signal.SIGKILL)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[3]) == sid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), signal.SIGKILL)


def killpg(pgid: int, signum: int) -> None:
    if pgid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def children(ppid: int) -> list[int]:
    """Pids whose parent is ``ppid`` (/proc/PID/task/TID/children is not always built in)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == ppid and fields[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found
