"""What a runtime whose jobs run under the process runtime's supervisor (process, slurm) does
the same way, given the job's directory: its log by offset, and attach, exec and resize
through the supervisor's control socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ..base import RuntimeError_, StdioSession, tty_size
from ..jobdir import SPEC, read_json
from ..logfile import read_log
from . import control, sessions


def job_logs(
    d: Path,
    *,
    since: datetime | None,
    timestamps: bool,
    follow: bool,
    finished: Callable[[], bool],
    poll: float,
) -> AsyncIterator[bytes]:
    """The job's output.log (naive ``since``: UTC), following it until ``finished()``."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return read_log(
        str(d),
        since=None if since is None else since.timestamp(),
        timestamps=timestamps,
        follow=follow,
        finished=finished,
        poll=poll,
    )


async def attach(
    d: Path, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool
) -> StdioSession:
    """Attach to the running job's output (and its TTY's input: only a job with a tty)."""
    if stdin and not (read_json(str(d / SPEC)) or {}).get("tty"):
        raise RuntimeError_(
            f"job {job_id} was not started with a tty: its stdin cannot be attached",
            reason="BadRequest",
        )
    return await sessions.AttachSession.open(
        str(d), job_id, stdin=stdin, stdout=stdout, stderr=stderr, logs=logs
    )


async def exec_beside(
    d: Path,
    job_id: str,
    argv: Sequence[str],
    *,
    tty: bool,
    stdin: bool,
    env: Mapping[str, str] | None,
    size: tuple[int, int] | None,
) -> StdioSession:
    """``argv`` run beside the job by its supervisor (its cgroup or step, env, working dir)."""
    return await sessions.ExecSession.open(
        str(d), job_id, argv, tty=tty, stdin=stdin, env=env, size=tty_size(size)
    )


async def resize(d: Path, job_id: str, height: int, width: int) -> None:
    """Resize the job's TTY (its foreground process group gets SIGWINCH)."""
    await sessions.request(str(d), job_id, control.RESIZE, sessions._winsize(height, width))
