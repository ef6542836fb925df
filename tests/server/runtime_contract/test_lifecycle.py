"""The runtime contract, lifecycle and output: start, exit codes, stop, signals, logs, and jobs
that outlive the server.  Every runtime (conftest.RUNTIMES) runs these."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from datetime import UTC, datetime

import pytest

from neuro_server.runtime.base import RuntimeError_, State
from neuro_server.runtime.logfile import RECORD
from tests.server.runtime_contract.conftest import OUTLIVES, TIMEOUT, Harness, eventually


async def test_contract_echo_output_and_exit(rt: Harness) -> None:
    started = await rt.runtime.start(rt.spec("echo", ["echo", "hello", "world"]))
    assert started.started_at.tzinfo is not None
    ex = await rt.runtime.wait("echo")
    assert ex.exit_code == 0 and not ex.oom_killed and ex.error == ""
    assert await rt.read_all("echo") == b"hello world\n"
    assert await rt.read_all("echo", follow=False) == b"hello world\n"
    st = await rt.runtime.inspect("echo")
    assert st.state is State.EXITED and st.exit == ex


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 0", 0), ("exit 3", 3), ("kill -USR1 $$", 128 + signal.SIGUSR1)],
    ids=["zero", "three", "signal"],
)
async def test_contract_exit_codes(rt: Harness, script: str, code: int) -> None:
    await rt.runtime.start(rt.spec("exit", ["sh", "-c", script]))
    assert (await rt.runtime.wait("exit")).exit_code == code


async def test_contract_stdout_and_stderr_are_told_apart(rt: Harness) -> None:
    await rt.runtime.start(rt.spec("mixed", ["sh", "-c", "echo out1; sleep 0.1; echo err1 >&2"]))
    assert (await rt.runtime.wait("mixed")).exit_code == 0
    assert await rt.read_all("mixed") == b"out1\nerr1\n"
    idx = (rt.root / "mixed" / "output.idx").read_bytes()
    assert [rec[2] for rec in RECORD.iter_unpack(idx)] == [1, 2]


async def test_contract_env_and_working_dir(rt: Harness) -> None:
    await rt.runtime.start(
        rt.spec("env", ["sh", "-c", "pwd; env"], env={"FOO": "bar baz"}, working_dir="/tmp")
    )
    assert (await rt.runtime.wait("env")).exit_code == 0
    lines = (await rt.read_all("env")).decode().splitlines()
    assert lines[0] == "/tmp"
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert env["FOO"] == "bar baz"


async def test_contract_stop_runs_the_term_trap_within_grace(rt: Harness) -> None:
    script = 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.05; done'
    await rt.runtime.start(rt.spec("trap", ["sh", "-c", script]))
    await eventually(lambda: b"ready" in rt.output("trap"))
    t = time.monotonic()
    await rt.runtime.stop("trap", grace=30)
    ex = await rt.runtime.wait("trap")
    assert ex.exit_code == 7
    assert time.monotonic() - t < 10
    logs = await rt.read_all("trap")
    assert logs.startswith(b"ready\n") and b"got-term\n" in logs


async def test_contract_stop_kills_a_job_that_ignores_term(rt: Harness) -> None:
    script = 'trap "" TERM; echo ready; while :; do sleep 0.05; done'
    await rt.runtime.start(rt.spec("stubborn", ["sh", "-c", script]))
    await eventually(lambda: b"ready" in rt.output("stubborn"))
    t = time.monotonic()
    await rt.runtime.stop("stubborn", grace=0.5)
    ex = await rt.runtime.wait("stubborn")
    elapsed = time.monotonic() - t
    assert ex.exit_code == 137 and not ex.oom_killed
    assert 0.5 <= elapsed < 10


async def test_contract_stop_while_starting(rt: Harness) -> None:
    async def stop_soon() -> None:
        await eventually(lambda: (rt.root / "early" / "spec.json").exists())
        await rt.runtime.stop("early", grace=5)

    await asyncio.gather(rt.runtime.start(rt.spec("early", ["sleep", "60"])), stop_soon())
    assert (await rt.runtime.wait("early")).exit_code == 128 + signal.SIGTERM


async def test_contract_stop_and_signal_of_finished_or_unknown_job_do_nothing(
    rt: Harness,
) -> None:
    await rt.runtime.start(rt.spec("done", ["true"]))
    await rt.runtime.wait("done")
    await rt.runtime.stop("done", grace=1)
    await rt.runtime.signal("done", signal.SIGTERM)
    await rt.runtime.stop("never", grace=1)
    await rt.runtime.signal("never", signal.SIGTERM)
    assert (await rt.runtime.inspect("never")).state is State.NOT_FOUND
    assert (await rt.runtime.inspect("../etc")).state is State.NOT_FOUND
    with pytest.raises(RuntimeError_):
        await rt.runtime.wait("never")
    with pytest.raises(RuntimeError_) as e:
        await rt.runtime.signal("done", 0)
    assert e.value.reason == "BadRequest"


async def test_contract_signal_reaches_the_job(rt: Harness) -> None:
    script = 'trap "echo got-usr1; exit 0" USR1; echo ready; while :; do sleep 0.05; done'
    await rt.runtime.start(rt.spec("usr1", ["sh", "-c", script]))
    await eventually(lambda: b"ready" in rt.output("usr1"))
    await rt.runtime.signal("usr1", signal.SIGUSR1)
    assert (await rt.runtime.wait("usr1")).exit_code == 0
    assert b"got-usr1\n" in await rt.read_all("usr1")


async def test_contract_suspend_and_resume(rt: Harness) -> None:
    script = 'i=0; while :; do echo "$i"; i=$((i+1)); sleep 0.02; done'
    await rt.runtime.start(rt.spec("frozen", ["sh", "-c", script]))
    await eventually(lambda: b"\n3\n" in rt.output("frozen"))
    await rt.runtime.suspend("frozen")
    await asyncio.sleep(0.3)  # let what was on its way land
    frozen = rt.output("frozen")
    await asyncio.sleep(0.5)  # a frozen job prints nothing: a measurement over time
    assert rt.output("frozen") == frozen
    assert (await rt.runtime.inspect("frozen")).state is State.RUNNING
    await rt.runtime.resume("frozen")
    await eventually(lambda: len(rt.output("frozen")) > len(frozen))
    await rt.runtime.stop("frozen", grace=0)
    await rt.runtime.wait("frozen")


async def test_contract_logs_since_and_timestamps(rt: Harness) -> None:
    script = "echo first; trap 'echo second; echo third; exit 0' USR1; while :; do sleep 0.02; done"
    await rt.runtime.start(rt.spec("ts", ["sh", "-c", script]))
    await eventually(lambda: b"first" in rt.output("ts"))
    between = datetime.now(UTC)
    await rt.runtime.signal("ts", signal.SIGUSR1, group=False)  # (dash says so of a killed sleep)
    await rt.runtime.wait("ts")
    assert await rt.read_all("ts", since=between) == b"second\nthird\n"
    naive_utc = between.astimezone(UTC).replace(tzinfo=None)
    assert await rt.read_all("ts", since=naive_utc) == b"second\nthird\n"
    stamped = (await rt.read_all("ts", timestamps=True)).decode().splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["first", "second", "third"]
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
    times = []
    for line in stamped:
        ts = line.split(" ", 1)[0]
        assert stamp.fullmatch(ts), line
        times.append(datetime.fromisoformat(ts[:26] + "+00:00"))
    assert times[0] <= between <= times[1]


async def test_contract_logs_wait_for_the_job(rt: Harness) -> None:
    follower = asyncio.create_task(rt.read_all("later"))
    await asyncio.sleep(0.05)
    await rt.runtime.start(rt.spec("later", ["echo", "late"]))
    assert await asyncio.wait_for(follower, TIMEOUT) == b"late\n"
    assert await rt.read_all("absent", follow=False) == b""
    assert await rt.runtime.log_size("later") == len(b"late\n")
    assert await rt.runtime.log_size("absent") == 0 and await rt.runtime.log_size("../x") == 0


async def test_contract_big_output_is_complete(rt: Harness) -> None:
    # 8 MiB of numbered lines, every byte in order
    script = "seq 1 1000000 | sed 's/$/ xxxxxxxx/'"
    await rt.runtime.start(rt.spec("big", ["sh", "-c", script]))
    following = await rt.read_all("big")
    assert (await rt.runtime.wait("big")).exit_code == 0
    expected = "".join(f"{i} xxxxxxxx\n" for i in range(1, 1_000_001)).encode()
    assert following == expected
    assert await rt.read_all("big", follow=False) == expected


async def test_contract_restarted_job_appends_to_its_log(rt: Harness) -> None:
    await rt.runtime.start(rt.spec("again", ["echo", "one"]))
    await rt.runtime.wait("again")
    await rt.runtime.start(rt.spec("again", ["sh", "-c", "echo two; exit 4"]))
    assert (await rt.runtime.wait("again")).exit_code == 4
    assert await rt.read_all("again") == b"one\ntwo\n"


async def test_contract_cannot_start_a_running_job_twice(rt: Harness) -> None:
    await rt.runtime.start(rt.spec("twice", ["sleep", "60"]))
    with pytest.raises(RuntimeError_):
        await rt.runtime.start(rt.spec("twice", ["sleep", "60"]))
    await rt.runtime.stop("twice", grace=0)
    assert (await rt.runtime.wait("twice")).exit_code in (137, 143)


async def test_contract_a_job_outlives_its_runtime(rt: Harness) -> None:
    rt.needs(OUTLIVES)
    script = 'trap "exit 5" USR1; echo ready; while :; do sleep 0.05; done'
    started = await rt.runtime.start(rt.spec("survivor", ["sh", "-c", script]))
    await eventually(lambda: b"ready" in rt.output("survivor"))
    await rt.runtime.close()  # the server goes away; the job goes on
    later = rt.another()
    st = await later.inspect("survivor")
    assert st.state is State.RUNNING
    assert st.started_at is not None
    assert abs((st.started_at - started.started_at).total_seconds()) < 1.5
    await later.signal("survivor", signal.SIGUSR1, group=False)
    assert (await asyncio.wait_for(later.wait("survivor"), TIMEOUT)).exit_code == 5
    assert b"".join([c async for c in later.logs("survivor")]) == b"ready\n"


async def test_contract_capabilities_and_capacity_are_declared(rt: Harness) -> None:
    can = rt.runtime.capabilities
    assert can.needs_command is not can.runs_images  # (no image: no default command)
    cap = rt.runtime.capacity()
    assert cap.cpu > 0 and cap.memory > 0 and cap.nvidia_gpu >= 0
    assert sum(n.cpu for n in cap.nodes) == cap.cpu
    info = rt.runtime.info()
    assert info.name == rt.runtime.name == rt.kind and info.limits
