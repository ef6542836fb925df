"""A job's directory, ``ROOT/<job id>/``, the same for every runtime: its id check, its record
files and how they are written, and its exit record.  The output files in it (``output.log``,
``output.idx``) are logfile.py's.

Standard library only and light: the process runtime's supervisor imports it at every job start
(it writes the records there; the server reads them).

Record files (JSON, written atomically: a tmp file, then a rename):
    spec.json        what the runtime was asked to run (the runtime's own keys)
    supervisor.json  the process runtime's supervisor: {pid, starttime, boot_id, started_at}
    started.json     once the job runs: {started_at, limits, ...}
    stop.json        {grace, requested_at}: a stop was asked (a start under way honours it)
    exit.json        the job's end (EXIT_KEYS), fsynced where a full disk must not lose it
    *.json.slot      room for a record taken before the start (make_slot): write_record fills
                     it in place, so a full disk cannot cost a job its exit code
"""

from __future__ import annotations

import json
import os
import re
import time

from .logfile import LOG_NAME

TYPE_CHECKING = False  # typing itself costs milliseconds at every job start
if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from pathlib import Path
    from typing import Any

    from .base import ExitInfo

    Record = dict[str, Any]

SPEC = "spec.json"
SUPERVISOR = "supervisor.json"
STARTED = "started.json"
STOP = "stop.json"
EXIT = "exit.json"
SLOT_SIZE = 4096  # bytes of a record's slot: one page, one block
#: what exit.json holds (a runtime may add its own keys, e.g. the container's id)
EXIT_KEYS = (
    "started",
    "exit_code",
    "oom_killed",
    "finished_at",
    "error",
    "started_at",
    "limits",
    "lost",
)
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def job_dir(root: Path, job_id: str) -> Path:
    """``root/job_id``; RuntimeError_ (NotFound) for an id that is not a job's (no path
    separators, no dot-dot: it names a directory beneath ``root``)."""
    if not JOB_ID.fullmatch(job_id):
        from .base import RuntimeError_

        raise RuntimeError_(f"bad job id {job_id!r}", reason="NotFound")
    return root / job_id


def log_size(d: Path | str) -> int:
    """Bytes of output the job has in its directory ``d`` (0 when none)."""
    try:
        return os.stat(os.path.join(d, LOG_NAME)).st_size
    except OSError:
        return 0


# -- writing and reading records ---------------------------------------------------------------


def iso_now(t: float | None = None) -> str:
    """``2024-05-01T12:00:00.123456+00:00``: what datetime.fromisoformat reads back."""
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}+00:00"


def write_json(path: str, data: Record, *, durable: bool = False) -> None:
    """Write atomically (readers see the old file or the new one); ``durable``: fsync too."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.rename(tmp, path)
    if durable:
        _fsync_dir(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_slot(path: str) -> None:
    """Take the room of the record ``path`` now (``path.slot``, SLOT_SIZE bytes written):
    write_record fills it in place later, which needs no new space.  OSError (ENOSPC) when
    there is no room even now."""
    fd = os.open(f"{path}.slot", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, b" " * SLOT_SIZE)  # real bytes: allocated now, on every filesystem
    finally:
        os.close(fd)


def write_record(path: str, data: Record, *, durable: bool = False) -> None:
    """write_json, on a full disk too: into ``path``'s slot in place (the JSON padded with
    spaces, which readers skip), then renamed over ``path`` (atomic; a rename needs no data
    space).  Without a slot (or a record too long for one), write_json."""
    body = json.dumps(data).encode()
    try:
        fd = os.open(f"{path}.slot", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd < 0 or len(body) > SLOT_SIZE:
        if fd >= 0:
            os.close(fd)
        write_json(path, data, durable=durable)
        return
    try:
        os.pwrite(fd, body.ljust(SLOT_SIZE), 0)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(f"{path}.slot", path)
    if durable:
        _fsync_dir(path)


def read_json(path: str) -> Record | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- exit records ----------------------------------------------------------------------------


def exit_record(
    code: int,
    *,
    finished_at: str,
    started_at: str | None,
    oom_killed: bool = False,
    error: str = "",
    limits: str = "",
    started: bool = True,
    lost: str = "",
) -> Record:
    """The contents of exit.json (every runtime's, read back by exit_from_record).
    ``started``: False when the job could not be set up at all (its volumes): the server
    reports that as a failure to start, not as the job's exit.  ``lost``: why the runtime
    recorded the end itself (its supervisor was lost), in words."""
    record: Record = {
        "started": started,
        "exit_code": code,
        "oom_killed": oom_killed,
        "finished_at": finished_at,
        "error": error,
        "started_at": started_at,
        "limits": limits,
    }
    if lost:
        record["lost"] = lost
    return record


def record_time(record: Mapping[str, Any] | None, key: str) -> datetime | None:
    """An ISO time from a record (None when absent or broken)."""
    from datetime import datetime

    value = (record or {}).get(key)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def exit_from_record(record: Mapping[str, Any]) -> ExitInfo:
    """ExitInfo from an exit.json record."""
    from datetime import UTC, datetime

    from .base import ExitInfo

    return ExitInfo(
        exit_code=int(record.get("exit_code", 255)),
        finished_at=record_time(record, "finished_at") or datetime.now(UTC),
        oom_killed=bool(record.get("oom_killed", False)),
        error=str(record.get("error") or ""),
        lost=str(record.get("lost") or ""),
    )
