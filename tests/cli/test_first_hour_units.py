"""The pure parts behind issue 16's fixes: reading stdin without a thread, the restart line,
the style of usage errors."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest

from neuro_cli._terminal import read_stdin
from neuro_cli.commands._jobs_common import Attempts, is_restarting
from neuro_cli.formatters.jobs import status_rows
from neuro_cli.main import cli, usage_error_lines
from neuro_sdk import JobDescription
from neuro_sdk._parsing import job_description_from_api
from tests.sdk.helpers import job_json

NOW = datetime(2024, 1, 2, 3, 5, tzinfo=UTC)


async def _drain(fd: int) -> list[bytes | None]:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    await read_stdin(queue, fd)
    return [queue.get_nowait() for _ in range(queue.qsize())]


def test_read_stdin_pipe_left_open_leaves_no_thread_behind() -> None:
    """A thread blocked in read() kept asyncio.run from returning until stdin closed."""
    r, w = os.pipe()
    try:
        os.write(w, b"typed")
        threads = threading.active_count()

        async def main() -> bytes | None:
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            task = asyncio.ensure_future(read_stdin(queue, r))
            first = await asyncio.wait_for(queue.get(), 5)
            task.cancel()  # the command ended: stdin (still open) is not waited for
            return first

        assert asyncio.run(asyncio.wait_for(main(), 5)) == b"typed"
        assert threading.active_count() == threads
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("kind", ["file", "devnull", "pipe-closed"])
def test_read_stdin_reads_to_the_end(tmp_path: Path, kind: str) -> None:
    if kind == "file":  # (epoll refuses regular files: read in place)
        path = tmp_path / "in"
        path.write_bytes(b"x" * 100_000)
        fd = os.open(path, os.O_RDONLY)
    elif kind == "devnull":
        fd = os.open(os.devnull, os.O_RDONLY)
    else:
        fd, w = os.pipe()
        os.write(w, b"abc")
        os.close(w)
    try:
        chunks = asyncio.run(asyncio.wait_for(_drain(fd), 5))
    finally:
        os.close(fd)
    assert chunks[-1] is None and None not in chunks[:-1]
    data = b"".join(c for c in chunks if c)
    assert data == {"file": b"x" * 100_000, "devnull": b"", "pipe-closed": b"abc"}[kind]


def _restarting(restarts: int, description: str, **history: Any) -> JobDescription:
    """A job between two runs, as the server says it: running (restarted in place)."""
    h = {
        "status": "running",
        "reason": "Restarting",
        "description": description,
        "created_at": "2024-01-02T03:04:05Z",
        "restarts": restarts,
        **history,
    }
    return job_description_from_api(job_json("job-1", status="running", history=h))


def test_attempts_announce_each_restart_once_and_remember_its_exit() -> None:
    attempts = Attempts()
    first = _restarting(
        1, "The job exited with code 1; restart 1 in 1s (restart policy on-failure)"
    )
    assert attempts.restarted(first) == "restarting after exit 1, attempt 2 (in 1s)"
    assert attempts.restarted(first) is None  # seen
    oom = _restarting(2, "The job ran out of memory; restart 2 in 2s (restart policy always)")
    assert attempts.restarted(oom) == "restarting after running out of memory, attempt 3 (in 2s)"
    killed = job_description_from_api(
        job_json(
            "job-1",
            status="cancelled",
            history={
                "status": "cancelled",
                "reason": "UserRequested",
                "description": "",
                "created_at": "2024-01-02T03:04:05Z",
                "restarts": 2,
            },
        )
    )
    assert attempts.exit_code(killed) == 137  # killed between attempts: the last one's code
    assert Attempts().exit_code(killed) == 125  # no attempt seen: failed without a code


def test_status_of_a_job_between_two_runs_says_why() -> None:
    why = "The job exited with code 1; restart 2 in 2s (restart policy on-failure)"
    job = _restarting(2, why, started_at="2024-01-02T03:04:06Z")
    assert is_restarting(job)
    rows = dict(status_rows(job, NOW, False))
    assert (rows["Status"], rows["Restarts"], rows["Reason"]) == ("running (Restarting)", "2", why)
    running = job_description_from_api(job_json("job-1", status="running"))
    assert not is_restarting(running) and "Reason" not in dict(status_rows(running, NOW, False))


@pytest.mark.parametrize(
    "argv, message, hint",
    [
        (["stauts"], "no such command 'stauts'", "did you mean `neuro status`?"),
        (["run", "-it", "ubuntu"], "no such option: -i", "`neuro run -t` is docker's -it"),
        (["exec", "-p", "x"], "no such option: -p", "usage: neuro exec"),  # docker hints: run only
        (["ps", "-s", "nope"], "invalid value for '-s' / '--status'", "usage: neuro ps"),
    ],
)
def test_usage_error_lines(argv: list[str], message: str, hint: str) -> None:
    with pytest.raises(click.UsageError) as info:
        cli.main(args=argv, prog_name="neuro", standalone_mode=False)
    got_message, got_hint = usage_error_lines(info.value)
    assert got_message.startswith(message) and not got_message.endswith("."), got_message
    assert hint in got_hint, got_hint


def test_run_detach_returns_on_a_queue_wait_not_a_start() -> None:
    from neuro_cli.commands._jobs_common import queued

    # our scheduler's and Slurm's queue waits: `run --detach` returns, the job waits there
    for reason in (
        "Scheduling",
        "Resources",
        "Priority",
        "QOSMaxJobsPerUserLimit",
        "AssocGrpCpuLimit",
    ):
        assert queued(reason), reason
    # a start under way (and Slurm's next pass, "Submitted"): it waits until the job runs
    for reason in (
        "Creating",
        "ContainerCreating",
        "Starting",
        "Submitting",
        "Submitted",
        "",
        None,
    ):
        assert not queued(reason), reason
