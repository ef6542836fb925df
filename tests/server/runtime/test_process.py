"""The process runtime end to end: real supervisors, real jobs, real cgroups where writable."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from neuro_server.runtime import cgroups
from neuro_server.runtime.base import JobSpec, State
from neuro_server.runtime.jobdir import read_json
from neuro_server.runtime.process import ProcessRuntime
from neuro_server.runtime.process.procfs import supervisor_alive
from tests.server.runtime.conftest import (
    eventually,
    needs_cgroup_v1,
    output,
    read_all,
    spec,
)

PY = sys.executable
ROOT = str(Path(__file__).resolve().parents[3])


async def test_process_info_says_the_image_is_not_used(runtime: ProcessRuntime) -> None:
    info = runtime.info()
    assert info.name == "process"
    assert runtime.capabilities.runs_images is False
    assert "image is not used" in info.note
    assert "memory" in info.limits and "cpu" in info.limits


async def test_process_stderr_interleaved_in_arrival_order(runtime: ProcessRuntime) -> None:
    # each line is written only once the previous one is in the log: a fixed arrival order
    log = runtime.root / "mixed" / "output.log"
    script = (
        'echo out1; until grep -q out1 "$LOG"; do :; done; '
        'echo err1 >&2; until grep -q err1 "$LOG"; do :; done; '
        'echo out2; until grep -q out2 "$LOG"; do :; done; '
        "echo err2 >&2"
    )
    await runtime.start(spec("mixed", ["sh", "-c", script], env={"LOG": str(log)}))
    assert (await runtime.wait("mixed")).exit_code == 0
    assert await read_all(runtime, "mixed") == b"out1\nerr1\nout2\nerr2\n"
    idx = (runtime.root / "mixed" / "output.idx").read_bytes()
    from neuro_server.runtime.logfile import RECORD

    streams = [rec[2] for rec in RECORD.iter_unpack(idx)]
    assert streams == [1, 2, 1, 2]


async def test_process_env_and_working_dir(
    runtime: ProcessRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_SECRET", "leak")
    wd = tmp_path / "wd"
    wd.mkdir()
    await runtime.start(
        spec("env", ["sh", "-c", "pwd; env"], env={"FOO": "bar baz"}, working_dir=str(wd))
    )
    assert (await runtime.wait("env")).exit_code == 0
    lines = (await read_all(runtime, "env")).decode().splitlines()
    assert lines[0] == str(wd)
    env = dict(line.split("=", 1) for line in lines[1:])
    assert env["FOO"] == "bar baz"
    assert env["PATH"] == os.environ["PATH"]  # the server's user's, as srun passes it
    assert env["HOME"] == os.environ["HOME"]
    # only the user's own settings pass, never the rest of the server's environment
    assert "SERVER_SECRET" not in env and "PYTHONPATH" not in env


async def test_process_job_gets_default_signal_dispositions(runtime: ProcessRuntime) -> None:
    # Python ignores SIGPIPE and SIGXFSZ; a job must not inherit that (nor a blocked mask)
    script = "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -n 1"
    await runtime.start(spec("sigs", ["sh", "-c", script]))
    assert (await runtime.wait("sigs")).exit_code == 0
    assert await read_all(runtime, "sigs") == (
        b"SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\ny\n"
    )


async def test_process_job_inherits_only_stdio(runtime: ProcessRuntime) -> None:
    await runtime.start(spec("fds", ["sh", "-c", "ls /proc/$$/fd; readlink /proc/$$/fd/0"]))
    await runtime.wait("fds")
    assert await read_all(runtime, "fds") == b"0\n1\n2\n/dev/null\n"


async def test_process_default_working_dir_and_given_path(runtime: ProcessRuntime) -> None:
    await runtime.start(
        spec("wd", ["sh", "-c", 'pwd; echo "$PATH"'], env={"PATH": "/bin:/usr/bin"})
    )
    await runtime.wait("wd")
    assert (
        await read_all(runtime, "wd") == f"{runtime.root / 'wd' / 'work'}\n/bin:/usr/bin\n".encode()
    )


async def test_process_jobs_get_umask_022_whatever_the_servers(runtime: ProcessRuntime) -> None:
    """neuro-server runs with a umask of 077 (its files are its own): a job's must not be."""
    old = os.umask(0o077)
    try:
        await runtime.start(spec("umask", ["sh", "-c", "umask; : > f; stat -c %a f"]))
    finally:
        os.umask(old)
    await runtime.wait("umask")
    assert await read_all(runtime, "umask") == b"0022\n644\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs jobs as other uids")
async def test_process_job_of_a_uid_of_its_own(runtime: ProcessRuntime) -> None:
    """Its uid and gid, no other group, HOME its home, the default working dir made there by
    the job itself (so only its own permissions apply)."""
    uid = gid = 100_000_000 + os.getpid() % 1000
    base = Path(tempfile.mkdtemp(prefix="neuro-home-"))
    try:
        base.chmod(0o711)
        home = base / "h"
        home.mkdir(mode=0o700)
        os.chown(home, uid, gid)
        await runtime.start(
            JobSpec(
                "mine",
                ["sh", "-c", "id -u; id -G; pwd; echo $HOME"],
                env={},
                working_dir=None,
                cpu=0,
                memory=0,
                uid=uid,
                gid=gid,
                home=str(home),
            )
        )
        assert (await runtime.wait("mine")).exit_code == 0
        assert (await read_all(runtime, "mine")).decode().split() == [
            str(uid),
            str(gid),
            f"{home}/jobs/mine",
            str(home),
        ]
        assert (home / "jobs" / "mine").stat().st_uid == uid
        # a working dir it may not enter is not entered for it
        await runtime.start(
            JobSpec(
                "denied",
                ["true"],
                env={},
                working_dir=str(runtime.root),
                cpu=0,
                memory=0,
                uid=uid,
                gid=gid,
                home=str(home),
            )
        )
        ex = await runtime.wait("denied")
        assert ex.exit_code == 127 and "Permission denied" in ex.error
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    ("argv", "working_dir", "code", "message"),
    [
        (
            ["no-such-command-x"],
            None,
            127,
            'neuro: cannot run "no-such-command-x": No such file or directory',
        ),
        (["{tmp}/data.txt"], None, 126, 'neuro: cannot run "{tmp}/data.txt": Permission denied'),
        (
            ["true"],
            "/no/such/dir",
            127,
            'neuro: cannot run "true": working directory "/no/such/dir": No such file or directory',
        ),
    ],
    ids=["not-found", "not-executable", "bad-working-dir"],
)
async def test_process_cannot_run(
    runtime: ProcessRuntime,
    tmp_path: Path,
    argv: list[str],
    working_dir: str | None,
    code: int,
    message: str,
) -> None:
    (tmp_path / "data.txt").write_text("not a program\n")  # mode 0644: not executable
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    message = message.replace("{tmp}", str(tmp_path))
    started = await runtime.start(spec("bad", argv, working_dir=working_dir))
    assert started.started_at is not None
    ex = await runtime.wait("bad")
    assert ex.exit_code == code
    assert ex.error == message.removeprefix("neuro: ")
    assert await read_all(runtime, "bad") == message.encode() + b"\n"
    assert not (runtime.root / "bad" / "started.json").exists()


@needs_cgroup_v1
async def test_process_memory_limit_oom_killed(runtime: ProcessRuntime) -> None:
    started = await runtime.start(
        spec("oom", [PY, "-c", "b = bytearray(300 << 20)"], memory=64 << 20)
    )
    assert started.limits == "memory 64 MiB and pids 4096 enforced by cgroup v1"
    ex = await runtime.wait("oom")
    assert ex.exit_code == 137
    assert ex.oom_killed is True


async def test_process_memory_limit_by_rlimit_without_cgroups(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path
) -> None:
    (tmp_path / "no-cgroups").mkdir()
    rt = ProcessRuntime(
        jobs_root, cgroup_parent=cgroup_parent, cgroup_root=str(tmp_path / "no-cgroups")
    )
    assert rt.info().limits == (
        "memory enforced by rlimit (RLIMIT_DATA); cpu and pids not enforced (no writable cgroup)"
    )
    started = await rt.start(
        spec("rl", [PY, "-c", "b = bytearray(300 << 20)"], memory=64 << 20, cpu=0.5)
    )
    assert started.limits == (
        "memory 64 MiB enforced by rlimit (RLIMIT_DATA); "
        "cpu 0.5 and pids 4096 not enforced (no writable cgroup)"
    )
    ex = await rt.wait("rl")
    assert ex.exit_code == 1 and not ex.oom_killed
    assert b"MemoryError" in await read_all(rt, "rl")


@needs_cgroup_v1
async def test_process_cgroup_limits_written_and_removed(
    runtime: ProcessRuntime, cgroup_parent: str
) -> None:
    started = await runtime.start(spec("cg", ["sleep", "60"], cpu=0.5, memory=1 << 30))
    assert started.limits == "memory 1.0 GiB, cpu 0.5 and pids 4096 enforced by cgroup v1"
    cpu_dir = Path(cgroups.ROOT, "cpu", cgroup_parent, "cg")
    mem_dir = Path(cgroups.ROOT, "memory", cgroup_parent, "cg")
    assert (cpu_dir / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (mem_dir / "memory.limit_in_bytes").read_text().strip() == str(1 << 30)
    pid = json.loads((runtime.root / "cg" / "started.json").read_text())["pid"]
    for c in cgroups.V1_CONTROLLERS:
        assert str(pid) in Path(cgroups.ROOT, c, cgroup_parent, "cg", "cgroup.procs").read_text()
    await runtime.stop("cg", grace=5)
    assert (await runtime.wait("cg")).exit_code == 128 + signal.SIGTERM
    assert not cpu_dir.exists() and not mem_dir.exists()
    await runtime.cleanup("cg")  # nothing left to do, and no error


@pytest.mark.parametrize("with_cgroups", [True, False], ids=["cgroups", "no-cgroups"])
async def test_process_background_children_are_killed_with_the_job(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path, with_cgroups: bool
) -> None:
    (tmp_path / "none").mkdir()
    root = cgroups.ROOT if with_cgroups else str(tmp_path / "none")
    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent, cgroup_root=root)
    # one child in the job's process group, one that left it (setsid): both go with the job
    await rt.start(spec("bg", ["sh", "-c", "sleep 60 & echo $!; setsid sleep 61 & echo $!"]))
    assert (await rt.wait("bg")).exit_code == 0
    pids = [int(p) for p in (await read_all(rt, "bg")).split()]
    assert len(pids) == 2
    for pid in pids:
        assert _dead(pid)


def _start_in_a_server_process(
    root: Path, cgroup_parent: str, job_id: str, argv: list[str]
) -> None:
    """Start a job from another process that is then SIGKILLed, as a crashing server would be."""
    code = f"""
import asyncio, os, signal
from pathlib import Path
from neuro_server.runtime.base import JobSpec
from neuro_server.runtime.process import ProcessRuntime
rt = ProcessRuntime(Path({str(root)!r}), cgroup_parent={cgroup_parent!r})
asyncio.run(rt.start(JobSpec({job_id!r}, {argv!r}, env={{}}, working_dir=None, cpu=0.5, memory=256 << 20)))
os.kill(os.getpid(), signal.SIGKILL)
"""
    r = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr


async def test_process_job_survives_the_server(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = (
        f'i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done; '
        f'until [ -e "{go}" ]; do sleep 0.02; done; echo after; exit 5'
    )
    _start_in_a_server_process(jobs_root, cgroup_parent, "survivor", ["sh", "-c", script])

    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent)  # the restarted server
    st = await rt.inspect("survivor")
    assert st.state is State.RUNNING and st.started_at is not None
    waiter = asyncio.create_task(rt.wait("survivor"))
    follower = asyncio.create_task(read_all(rt, "survivor"))
    await eventually(lambda: b"line 199" in output(rt, "survivor"))
    assert not waiter.done() and not follower.done()
    go.touch()
    ex = await asyncio.wait_for(waiter, 15)
    assert ex.exit_code == 5
    expected = "".join(f"line {i}\n" for i in range(200)) + "after\n"
    assert (await asyncio.wait_for(follower, 15)).decode() == expected
    assert (await rt.inspect("survivor")).state is State.EXITED


async def test_process_job_that_ends_while_the_server_is_down(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = f'echo before; until [ -e "{go}" ]; do sleep 0.02; done; echo after; exit 9'
    _start_in_a_server_process(jobs_root, cgroup_parent, "offline", ["sh", "-c", script])
    go.touch()  # the job ends with no server around
    exit_json = jobs_root / "offline" / "exit.json"
    await eventually(exit_json.exists)

    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent)
    st = await rt.inspect("offline")
    assert st.state is State.EXITED and st.exit is not None and st.exit.exit_code == 9
    assert (await rt.wait("offline")).exit_code == 9
    assert await read_all(rt, "offline") == b"before\nafter\n"


async def test_process_lost_supervisor_is_not_found_until_buried(runtime: ProcessRuntime) -> None:
    await runtime.start(spec("lost", ["sleep", "60"]))
    sup = read_json(str(runtime.root / "lost" / "supervisor.json"))
    assert sup is not None and (await runtime.inspect("lost")).state is State.RUNNING
    os.kill(sup["pid"], signal.SIGKILL)
    await eventually(lambda: not supervisor_alive(sup))
    assert (await runtime.inspect("lost")).state is State.NOT_FOUND
    assert await read_all(runtime, "lost") == b""  # follow ends: nobody writes any more
    # wait (or cleanup) kills what the supervisor left and records that end (test_faults.py)
    ex = await runtime.wait("lost")
    assert ex.lost and ex.exit_code == 137
    assert (await runtime.inspect("lost")).state is State.EXITED
    pid = json.loads((runtime.root / "lost" / "started.json").read_text())["pid"]
    await eventually(lambda: _dead(pid))


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


async def test_process_logs_waits_for_the_job_dir(runtime: ProcessRuntime) -> None:
    follower = asyncio.create_task(read_all(runtime, "later"))
    await runtime.start(spec("later", ["echo", "late"]))
    assert await asyncio.wait_for(follower, 15) == b"late\n"
    assert await read_all(runtime, "absent", follow=False) == b""


async def test_process_big_output_is_complete(runtime: ProcessRuntime) -> None:
    size = 32 << 20
    code = (
        f"import os, sys; data = os.urandom({size}); sys.stdout.buffer.write(data); "
        f"sys.stderr.write(__import__('hashlib').sha256(data).hexdigest())"
    )
    await runtime.start(spec("big", [PY, "-c", code]))
    following = await read_all(runtime, "big")
    assert (await runtime.wait("big")).exit_code == 0
    digest = following[-64:].decode()
    assert len(following) == size + 64
    assert hashlib.sha256(following[:-64]).hexdigest() == digest
    assert await read_all(runtime, "big", follow=False) == following


async def test_process_concurrent_starts(runtime: ProcessRuntime) -> None:
    n = 20
    starts = [
        runtime.start(spec(f"c{i}", ["sh", "-c", f"echo job {i}"], cpu=0.1, memory=128 << 20))
        for i in range(n)
    ]
    await asyncio.gather(*starts)
    exits = await asyncio.gather(*(runtime.wait(f"c{i}") for i in range(n)))
    assert [e.exit_code for e in exits] == [0] * n
    for i in range(n):
        assert await read_all(runtime, f"c{i}") == f"job {i}\n".encode()


def test_process_supervisor_imports_only_the_standard_library() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import neuro_server.runtime.process.supervisor.__main__; "
        "print(time.perf_counter() - t); "
        "tops = {m.split('.')[0] for m in sys.modules} - sys.stdlib_module_names; "
        "print(' '.join(sorted(tops - {'__main__'})))"
    )
    r = subprocess.run(
        [PY, "-S", "-c", code],
        env={"PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    import_time, modules = r.stdout.splitlines()
    assert modules.split() == ["neuro_server"]
    assert float(import_time) < 0.2  # typically ~10 ms; generous for a busy CI machine
