"""Helpers shared by the job commands: running a command's coroutine, resolving JOB
arguments, waiting for a job to start and following its output across reconnects."""

from __future__ import annotations

import dataclasses
import re
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import click

from ..deps import Deps
from ..errors import CLIError, ExitCode, JobExit

if TYPE_CHECKING:
    import asyncio

    from neuro_sdk import Client, JobDescription

JOB_ID_RE = re.compile(r"^job-[0-9a-z]{8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}$")


def run_async(ctx: click.Context, fn: Callable[[Deps], Awaitable[int | None]]) -> None:
    """Run a command body on a fresh event loop; a non-zero result becomes the exit code."""
    import asyncio

    deps: Deps = ctx.find_root().obj

    async def main() -> int | None:
        # our own SIGINT handler: the command sees a CancelledError where it waits and may
        # clean up or detach; only an unhandled one becomes KeyboardInterrupt (exit 130)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        interrupted = False

        def on_sigint() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        deps.on_sigint = on_sigint
        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            pass
        try:
            return await fn(deps)
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    code = asyncio.run(main())
    if code:
        raise JobExit(code)


async def resolve_job(client: "Client", ref: str) -> str:
    """JOB is an id, or the name of the caller's most recent job with that name."""
    if JOB_ID_RE.match(ref):
        return ref
    if ref.startswith("job:"):
        ref = ref.rsplit("/", 1)[-1].removeprefix("job:")
        if JOB_ID_RE.match(ref):
            return ref
    async with client.jobs.list(name=ref, owners={client.username}, reverse=True,
                                limit=1) as it:  # closed once the first job is in
        async for job in it:
            return job.id
    raise CLIError(f"no job with id or name {ref!r}", ExitCode.NOT_FOUND,
                   hint="`neuro ps -a` lists finished jobs too")


def runtime_note(job: "JobDescription") -> str | None:
    rt = getattr(job, "runtime", None)
    if rt is not None and not rt.image_used:
        return (f"Note: the {rt.name} runtime does not use the image {job.container.image}: "
                "the command runs on this host")
    return None


def _status_line(job: "JobDescription") -> str:
    h = job.history
    text = f"Status: {job.status.value}"
    if h.reason:
        text += f" {h.reason}"
    if h.description and job.status.is_pending:
        text += f" ({h.description})"
    return text


class ProgressLine:
    """`run`'s pending progress on stderr.  On a terminal the current line is redrawn in place
    with a ticking elapsed time, and each new reason starts a new line (the earlier ones stay
    as a record); piped, one plain line per new reason."""

    def __init__(self, deps: Deps, *, live: bool) -> None:
        import asyncio

        self.io = deps.io
        self.live = live
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.text = ""
        self.ticker: asyncio.Task[None] | None = None

    def _elapsed(self) -> str:
        elapsed = self.loop.time() - self.t0
        return f"  [{elapsed:.1f}s]" if elapsed >= 0.05 else ""

    def show(self, text: str) -> None:
        import asyncio

        if text == self.text:
            return
        if not self.live:
            self.io.err(text + self._elapsed())
            self.text = text
            return
        if self.text:
            self.io.stderr.write("\n")  # the previous reason stays on its line
        self.text = text
        self._draw()
        if self.ticker is None:
            self.ticker = asyncio.ensure_future(self._tick())

    def _draw(self) -> None:
        self.io.stderr.write("\r\x1b[K" + self.text + self._elapsed())
        self.io.stderr.flush()

    async def _tick(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(0.1)
            self._draw()

    def close(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None
        if self.live and self.text:
            self._draw()
            self.io.stderr.write("\n")
            self.io.stderr.flush()
            self.text = ""


async def wait_started(client: "Client", job: "JobDescription", deps: Deps, *, quiet: bool,
                       stop_when_queued: bool = False) -> "JobDescription":
    """Wait until the job leaves pending, showing each pending reason with elapsed time.

    With ``stop_when_queued``, return as soon as the job waits for resources (``Scheduling``)."""
    progress = None if quiet else ProgressLine(deps, live=deps.io.stderr_tty)
    try:
        return await _wait_started(client, job, progress, stop_when_queued)
    finally:
        if progress is not None:
            progress.close()


async def _wait_started(client: "Client", job: "JobDescription", progress: ProgressLine | None,
                        stop_when_queued: bool) -> "JobDescription":
    import asyncio

    delay = 0.02
    fetched = False
    while True:
        if progress is not None:
            progress.show(_status_line(job))
        if not job.status.is_pending:
            return job
        if stop_when_queued and job.history.reason in ("Scheduling", "DiskUnavailable"):
            return job
        # a server that long-polls answers as soon as the job changes (and at least every
        # second); others are polled with a growing delay
        changed = await client.jobs.wait_change(job, 1.0)
        if changed is not None:
            job = changed
            continue
        if fetched:  # (the first status is asked at once: it tells whether the server long-polls)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        job = await client.jobs.status(job.id)
        fetched = True


def is_connection_error(exc: BaseException) -> bool:
    from neuro_sdk import ServerNotAvailable, ServerUnreachable

    try:
        import aiohttp

        if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError)):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (ServerUnreachable, ServerNotAvailable, ConnectionError))


@dataclasses.dataclass
class Progress:
    """How many output bytes were written so far (survives restarts of a stream)."""

    seen: int = 0


async def follow_output(deps: Deps, job_id: str, *, since: Any = None, timestamps: bool = False,
                        retry_for: float = 60.0, progress: Progress | None = None) -> None:
    """Copy the job's output to stdout until the job is finished and its output drained.

    A dropped connection (the server restarted, for example) is retried with backoff, and the
    output resumes where it stopped: the job's log is append-only, so the stream asked again
    with the same ``since`` and ``timestamps`` starts with the bytes already written
    (``progress.seen``), which are skipped (by the server where it can) instead of printed
    twice.  A stream that ends is only the end when the job is finished: otherwise (a restart
    policy, a server that ended it early) it is followed on from the same offset."""
    import asyncio

    progress = progress or Progress()
    delay = 0.1
    loop = asyncio.get_running_loop()
    give_up = loop.time() + retry_for
    while True:
        try:
            async with deps.client() as client:
                async with client.jobs.monitor(job_id, since=since, timestamps=timestamps,
                                               offset=progress.seen) as chunks:
                    async for chunk in chunks:
                        deps.io.write_bytes(chunk)
                        progress.seen += len(chunk)
                        delay = 0.1
                        give_up = loop.time() + retry_for
                if (await client.jobs.status(job_id)).status.is_finished:
                    return
        except Exception as e:
            if not is_connection_error(e) or loop.time() > give_up:
                raise
            if deps.verbose:
                deps.io.err(f"Connection lost ({e}); retrying in {delay:.1f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def final_status(deps: Deps, job_id: str, timeout: float = 30.0) -> "JobDescription":
    """The job's status once it is finished (the output can end a moment before the record)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.02
    while True:
        try:
            async with deps.client() as client:
                job = await client.jobs.status(job_id)
                if job.status.is_finished:
                    return job
        except Exception as e:
            if not is_connection_error(e) or loop.time() > deadline:
                raise
        if loop.time() > deadline:
            raise CLIError(f"job {job_id} did not finish in time", ExitCode.TIMEOUT)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


def result_line(job: "JobDescription") -> str:
    h = job.history
    if job.status.value == "succeeded":
        return f"Job {job.id} finished successfully"
    if job.status.value == "cancelled":
        return f"Job {job.id} was cancelled ({h.reason}){': ' + h.description if h.description else ''}"
    code = f", exit code {h.exit_code}" if h.exit_code is not None else ""
    return f"Job {job.id} failed ({h.reason}{code}){': ' + h.description if h.description else ''}"


def job_exit_code(job: "JobDescription") -> int:
    """What an attached ``run`` exits with: the job's code; failed without one: 125."""
    code = job.history.exit_code
    if code is not None:
        return int(code)
    if job.status.value == "succeeded":
        return 0
    return int(ExitCode.PLATFORM)
