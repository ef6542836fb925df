"""The process runtime under faults: a full disk, an output quota, a lost supervisor, a fork loop.

A full disk is a real one: a small tmpfs mounted for the test (root only)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from neuro_server.runtime import cgroups
from neuro_server.runtime.base import State
from neuro_server.runtime.jobdir import SUPERVISOR, read_json
from neuro_server.runtime.logfile import IDX_NAME, LOG_NAME, RECORD, STDOUT, LogWriter
from neuro_server.runtime.process import ProcessRuntime
from neuro_server.runtime.process.procfs import supervisor_alive
from tests.server.runtime.conftest import eventually, kill_jobs, output, read_all, spec
from tests.server.runtime.tmpfs import fill, free_bytes, needs_mount, small_tmpfs

PY = sys.executable
LOST = b"bytes of output lost: no space left on device]\n"


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


def _pids_writable() -> bool:
    return os.access(os.path.join(cgroups.ROOT, "pids"), os.W_OK) and os.path.isfile(
        os.path.join(cgroups.ROOT, "pids", "cgroup.procs")
    )


@pytest.fixture
def small_jobs_root(tmp_path: Path, cgroup_parent: str) -> Iterator[Path]:
    """A jobs root on a 2 MiB tmpfs."""
    mnt = tmp_path / "small"
    with small_tmpfs(mnt, "2m", lambda: kill_jobs(mnt / "jobs", cgroup_parent)):
        yield mnt / "jobs"


# -- the log writer -------------------------------------------------------------------------------


@needs_mount
def test_logwriter_drops_what_does_not_fit_and_says_so_once_there_is_room(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    with small_tmpfs(mnt, "1m", lambda: None):
        w = LogWriter(str(mnt))
        ballast = fill(mnt, leave=40 << 10)
        sent = 0
        for _ in range(8):
            w.write(b"x" * (32 << 10), STDOUT)
            sent += 32 << 10
        kept = os.path.getsize(mnt / LOG_NAME)
        assert 0 < kept < sent and w.lost == sent - kept
        ballast.unlink()
        w.write(b"after\n", STDOUT)
        w.close()
        log = (mnt / LOG_NAME).read_bytes()
        marker = f"\n[neuro: {sent - kept} bytes of output lost: no space left on device]\n"
        assert log == b"x" * kept + marker.encode() + b"after\n"
        # every byte is indexed, none twice: attach and timestamped logs see the same
        records = list(RECORD.iter_unpack((mnt / IDX_NAME).read_bytes()))
        assert sum(r[3] for r in records) == len(log)
        assert all(a[0] + a[3] == b[0] for a, b in itertools.pairwise(records))


@needs_mount
def test_logwriter_finish_says_what_was_lost_on_a_disk_still_full(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    with small_tmpfs(mnt, "1m", lambda: None):
        w = LogWriter(str(mnt))
        fill(mnt, leave=0)
        w.write(b"y" * 10000, STDOUT)
        assert w.lost == 10000 and os.path.getsize(mnt / LOG_NAME) == 0
        w.finish()  # the job ended: its reserve makes room for the marker
        w.close()
        log = (mnt / LOG_NAME).read_bytes()
        assert log == b"[neuro: 10000 bytes of output lost: no space left on device]\n"


def test_logwriter_output_limit_keeps_the_first_bytes_and_says_so_once(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path), limit=100)
    for _ in range(5):
        w.write(b"z" * 60, STDOUT)
    w.finish()
    w.close()
    assert (tmp_path / LOG_NAME).read_bytes() == (
        b"z" * 100 + b"\n[neuro: the output limit of 100 bytes was reached: "
        b"the rest of the job's output is not kept]\n"
    )


# -- a full disk ---------------------------------------------------------------------------------


@needs_mount
async def test_process_full_disk_keeps_the_job_its_exit_code_and_exec(
    small_jobs_root: Path, cgroup_parent: str, tmp_path: Path
) -> None:
    rt = ProcessRuntime(small_jobs_root, cgroup_parent=cgroup_parent)
    go = tmp_path / "go"  # (not on the small disk)
    script = (
        f"head -c 4000000 /dev/zero | tr '\\0' x; echo; echo printed > {tmp_path}/printed; "
        f"until [ -e {go} ]; do sleep 0.05; done; exit 3"
    )
    await rt.start(spec("full", ["sh", "-c", script]))
    await eventually(lambda: (tmp_path / "printed").exists())
    assert free_bytes(small_jobs_root) < 64 << 10
    assert (await rt.inspect("full")).state is State.RUNNING  # the supervisor lives on
    s = await rt.exec("full", ["sh", "-c", "echo from-exec"], tty=False, stdin=False)
    try:
        got = b""
        while (chunk := await s.read()) is not None:
            got += chunk[1]
        assert got == b"from-exec\n" and await s.wait() == 0
    finally:
        await s.close()
    attached = await rt.attach("full", stdin=False, stdout=True, stderr=True, logs=True)
    try:
        go.touch()
        seen = b""
        while (chunk := await attached.read()) is not None:
            seen += chunk[1]
    finally:
        await attached.close()
    ex = await asyncio.wait_for(rt.wait("full"), 15)
    assert ex.exit_code == 3 and not ex.error  # the exit code is kept on a full disk
    log = await read_all(rt, "full")
    assert log.startswith(b"x" * 1000) and log.endswith(LOST)
    assert seen == log  # attach shows what the log kept, the marker included


async def test_process_output_limit_stops_the_log_not_the_job(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path
) -> None:
    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent, output_limit=1000)
    script = f"head -c 5000 /dev/zero | tr '\\0' x; echo; echo more; touch {tmp_path}/went-on"
    await rt.start(spec("quota", ["sh", "-c", script]))
    assert (await rt.wait("quota")).exit_code == 0
    assert (tmp_path / "went-on").exists()
    log = await read_all(rt, "quota")
    assert log.startswith(b"x" * 1000) and b"more" not in log
    assert log[1000:] == (
        b"\n[neuro: the output limit of 1000 bytes was reached: "
        b"the rest of the job's output is not kept]\n"
    )


# -- a lost supervisor ---------------------------------------------------------------------------


@pytest.mark.parametrize("with_cgroups", [True, False], ids=["cgroups", "no-cgroups"])
async def test_process_lost_supervisor_takes_the_job_with_it(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path, with_cgroups: bool
) -> None:
    (tmp_path / "none").mkdir()
    root = cgroups.ROOT if with_cgroups else str(tmp_path / "none")
    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent, cgroup_root=root)
    await rt.start(spec("lost", ["sh", "-c", "sleep 300 & echo $!; sleep 301"]))
    await eventually(lambda: output(rt, "lost").strip())
    child = int(output(rt, "lost"))
    main = json.loads((jobs_root / "lost" / "started.json").read_text())["pid"]
    sup = read_json(str(jobs_root / "lost" / SUPERVISOR))
    assert sup is not None
    waiter = asyncio.create_task(rt.wait("lost"))
    os.kill(sup["pid"], signal.SIGKILL)
    ex = await asyncio.wait_for(waiter, 15)
    assert ex.lost == "the job's supervisor was lost; its processes were killed"
    assert ex.exit_code == 137
    await eventually(lambda: _dead(main) and _dead(child))
    assert (await rt.inspect("lost")).state is State.EXITED
    assert cgroups.JobCgroup.find(cgroup_parent, "lost", root) is None
    await rt.cleanup("lost")  # nothing left: no error
    assert not supervisor_alive(sup)


# -- a fork loop ---------------------------------------------------------------------------------


@pytest.mark.skipif(not _pids_writable(), reason="needs a writable cgroup v1 pids hierarchy")
async def test_process_pids_limit_stops_a_fork_loop(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path
) -> None:
    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent, pids_limit=32)
    forks = (
        "import errno, os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 1000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print(f'fork {n + 1}:', errno.errorcode[e.errno], flush=True)\n"
        "time.sleep(60)\n"
    )
    started = await rt.start(spec("forks", [PY, "-c", forks], cpu=0.5))
    assert "pids 32" in started.limits
    pids_dir = Path(cgroups.ROOT, "pids", cgroup_parent, "forks")
    assert (pids_dir / "pids.max").read_text().strip() == "32"
    await eventually(lambda: b"EAGAIN" in output(rt, "forks"))
    assert output(rt, "forks") == b"fork 32: EAGAIN\n"  # 31 children and the job itself
    assert int((pids_dir / "pids.current").read_text()) == 32
    assert (
        await rt.inspect("forks")
    ).state is State.RUNNING  # the job goes on, only its forks fail
    # the host goes on: another job starts, with the default limit
    other = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent)
    assert "pids 4096" in (await other.start(spec("next", ["echo", "hi"]))).limits
    assert (await other.wait("next")).exit_code == 0
    await rt.stop("forks", grace=0)
    await asyncio.wait_for(rt.wait("forks"), 15)
    assert not pids_dir.exists()
