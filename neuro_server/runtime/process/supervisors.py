"""The process runtime's supervisors as the server sees them: how one is found alive (or lost),
signalled, waited for, and buried (a lost supervisor's job killed, its end recorded), and what
a start left in the job's directory."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import cgroups
from ..base import ExitInfo, RuntimeError_, StartInfo
from ..jobdir import (
    EXIT,
    STARTED,
    SUPERVISOR,
    exit_from_record,
    iso_now,
    read_json,
    record_time,
    write_record,
)
from . import control, sessions
from .procfs import boot_id, kill_session, proc_stat, supervisor_alive
from .supervisor.job import SUPERVISOR_LOG
from .supervisor.spawn import DEFAULT_PATH

PACKAGE_PARENT = str(Path(__file__).resolve().parents[3])  # where neuro_server is importable
LOST = "the job's supervisor was lost; its processes were killed"
log = logging.getLogger(__name__)


async def launch(d: Path, timeout: float) -> StartInfo:
    """Start the supervisor of the job in ``d`` (its spec.json written) and return once the
    job runs, or raise RuntimeError_ when it could not start (within ``timeout``)."""
    env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "PYTHONPATH": PACKAGE_PARENT}
    ready_r, ready_w = os.pipe()  # the supervisor writes it once the job runs (or cannot)
    argv = [
        sys.executable,
        "-S",
        "-m",
        "neuro_server.runtime.process.supervisor",
        str(d),
        "--ready-fd",
        str(ready_w),
    ]
    try:  # blocking, but brief: an open and a vfork+exec
        with open(d / SUPERVISOR_LOG, "ab") as log:  # noqa: ASYNC230
            proc = subprocess.Popen(  # noqa: ASYNC220
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=d,
                pass_fds=(ready_w,),
            )
    except OSError as e:
        os.close(ready_r)
        raise RuntimeError_(f"cannot start the job's supervisor: {e}") from e
    finally:
        os.close(ready_w)
    try:
        if not await readable(ready_r, timeout):
            sup = read_json(str(d / SUPERVISOR))
            if sup is not None:
                signal_supervisor(sup, signal.SIGKILL)
            raise RuntimeError_(f"the job did not start within {timeout:g} s: {tail(d)}")
        started = start_info(d)
        if started is None:  # the pipe closed unwritten: the supervisor died
            rc = await reap(proc)
            raise RuntimeError_(f"the job's supervisor failed (exit {rc}): {tail(d)}")
        await reap(proc)
        record = read_json(str(d / EXIT))
        if record is not None and record.get("started") is False:  # its volumes
            raise RuntimeError_(str(record.get("error") or "the job could not start"))
        return started
    finally:
        os.close(ready_r)
        if proc.poll() is None:  # only when the supervisor hung before it detached
            proc.kill()
            proc.wait()


async def bury(d: Path, job_id: str, cg: cgroups.JobCgroup | None) -> ExitInfo:
    """The job's supervisor is gone and left no exit record (SIGKILLed, OOM-killed): kill
    what it left of the job (its cgroup, else its session as started.json has it), and
    record that end in exit.json (in its slot: on a full disk too), so that every later
    look (status, a restarted server) sees the same.  OSError when it cannot be recorded
    yet (no slot, no space): the caller tries again."""
    started = read_json(str(d / STARTED))
    sup = read_json(str(d / SUPERVISOR))
    if sup is not None and supervisor_alive(sup):
        raise RuntimeError_(f"job {job_id} still has its supervisor")
    await asyncio.to_thread(kill_lost, cg, started, sup)
    if (record := read_json(str(d / EXIT))) is None:
        record = {
            "started": True,
            "exit_code": 128 + signal.SIGKILL,
            "oom_killed": False,
            "finished_at": iso_now(),
            "error": "",
            "lost": LOST,
            "started_at": (started or {}).get("started_at", ""),
            "limits": (started or {}).get("limits", ""),
        }
        write_record(str(d / EXIT), record, durable=True)
        log.warning("job %s: %s", job_id, LOST)
    remove_stale_socket(d)
    return exit_from_record(record)


def remove_stale_socket(d: Path) -> None:
    """A control socket left by a supervisor that was killed (only ours: in the job dir or the
    short-path directory)."""
    path = sessions.control_path(str(d))
    if path is None:
        return
    p = Path(path)
    if p.parent in (d, Path(f"/tmp/neuro-{os.getuid()}")) and p.suffix == ".sock":
        p.unlink(missing_ok=True)
    (d / control.CONTROL).unlink(missing_ok=True)


def kill_and_remove(cg: cgroups.JobCgroup) -> None:
    cg.kill()
    cg.remove()


def kill_lost(
    cg: cgroups.JobCgroup | None, started: dict[str, Any] | None, sup: dict[str, Any] | None
) -> None:
    """SIGKILL what a lost supervisor left: the job's cgroup (frozen first, then removed),
    and its session (members that left the cgroup's reach, or all of them where there is no
    cgroup), unless its leader's pid now belongs to another process."""
    if cg is not None:
        kill_and_remove(cg)
    try:
        sid = int((started or {}).get("pgid") or 0)
        starttime = int((started or {}).get("starttime") or 0)
    except (TypeError, ValueError):
        return
    if sid <= 0 or sup is None or sup.get("boot_id") != boot_id():
        return
    stat = proc_stat(sid)
    if stat is None or stat[0] in "ZXx" or (starttime and stat[1] == starttime):
        kill_session(sid)


def start_info(d: Path) -> StartInfo | None:
    """Once the job runs (started.json) or could not run (exit.json)."""
    for name in (STARTED, EXIT):
        record = read_json(str(d / name))
        if record is not None:
            started_at = record_time(record, "started_at") or record_time(record, "finished_at")
            return StartInfo(
                started_at=started_at or datetime.now(UTC),
                limits=str(record.get("limits", "")),
            )
    return None


def tail(d: Path, size: int = 2000) -> str:
    try:
        with open(d / SUPERVISOR_LOG, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            text = f.read().decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "(supervisor.log is empty)"


def open_pidfd(sup: dict[str, Any]) -> int | None:
    """A pidfd of the live supervisor (checked after opening, so it is not a reused pid)."""
    try:
        fd = os.pidfd_open(int(sup["pid"]))
    except (AttributeError, OSError, KeyError, TypeError, ValueError):
        return None
    if supervisor_alive(sup):
        return fd
    os.close(fd)
    return None


def signal_supervisor(sup: dict[str, Any], signum: int) -> None:
    fd = open_pidfd(sup)
    try:
        if fd is not None:
            signal.pidfd_send_signal(fd, signum)
        elif supervisor_alive(sup):
            os.kill(int(sup["pid"]), signum)
    except ProcessLookupError:
        pass
    finally:
        if fd is not None:
            os.close(fd)


async def readable(fd: int, timeout: float) -> bool:
    """Wait until ``fd`` is readable (data, EOF, or an exited pidfd's process); False on timeout."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_ready)
    try:
        await asyncio.wait_for(ready, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def reap(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """Reap the supervisor's first process, which exits as soon as it has forked."""
    deadline = time.monotonic() + timeout
    while (rc := proc.poll()) is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a child that exits at once
        await asyncio.sleep(0.001)
    return rc
