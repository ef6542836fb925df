"""Helpers shared by the job commands: running a command's coroutine, resolving JOB
arguments, waiting for a job to start and following its output across reconnects."""

from __future__ import annotations

import contextlib
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


def run_async(
    ctx: click.Context, fn: Callable[[Deps], Awaitable[int | None]], *, loop: bool = True
) -> None:
    """Run a command body on a fresh event loop; a non-zero result becomes the exit code.

    ``loop=False`` is for the one-shot commands that only make plain requests: with no event
    loop running the SDK's requests block (neuro_sdk._transport), so the body runs to its end
    in one step, and asyncio (~25 ms) is not even imported."""
    deps: Deps = ctx.find_root().obj
    if not loop:
        code = _run_without_loop(fn(deps))
        if code:
            raise JobExit(code)
        return
    import asyncio

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
        with contextlib.suppress(NotImplementedError, RuntimeError):  # (not the main thread)
            loop.add_signal_handler(signal.SIGINT, on_sigint)
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


def _run_without_loop(coro: Awaitable[int | None]) -> int | None:
    step = coro.__await__()
    try:
        while True:
            if step.send(None) is not None:  # it waits on a future: it needed a loop after all
                step.close()
                raise RuntimeError("a command run without an event loop awaited one")
    except StopIteration as e:
        result: int | None = e.value
        return result


async def resolve_job(client: Client, ref: str) -> str:
    """JOB is an id, or the name of the caller's most recent job with that name."""
    if JOB_ID_RE.match(ref):
        return ref
    if ref.startswith("job:"):
        ref = ref.rsplit("/", 1)[-1].removeprefix("job:")
        if JOB_ID_RE.match(ref):
            return ref
    async with client.jobs.list(
        name=ref, owners={client.username}, reverse=True, limit=1
    ) as it:  # closed once the first job is in
        async for job in it:
            return job.id
    raise CLIError(f"no such job: {ref}", ExitCode.NOT_FOUND, hint=NO_SUCH_JOB_HINT)


#: what follows "no such job: REF" (ours, or the server's 404 for an id)
NO_SUCH_JOB_HINT = "JOB is an id or the name of one of your jobs; `neuro ps -a` lists them all"


def job_ref(job: JobDescription, username: str | None) -> str:
    """How to name the job in a hint: its name when it has one and it is the caller's (a name
    resolves among the caller's own jobs), else its id."""
    if job.name and (username is None or job.owner == username):
        return job.name
    return job.id


def not_running_text(job: JobDescription) -> str:
    """Why a job cannot be attached or exec'd in, in words: "it has not started yet"..."""
    status = job.status.value
    return {
        "pending": "it has not started yet (pending)",
        "suspended": "it is suspended",
        "succeeded": "it has already finished (succeeded)",
        "failed": "it has already finished (failed)",
        "cancelled": "it was already cancelled",
    }.get(status, f"its status is {status}")


def runtime_note(job: JobDescription) -> str | None:
    rt = getattr(job, "runtime", None)
    if rt is not None and not rt.image_used:
        return (
            f"Note: the {rt.name} runtime does not use the image {job.container.image}: "
            "the command runs on this host"
        )
    return None


def _status_line(job: JobDescription) -> str:
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


#: pending reasons of a job that waits in a queue (ours, or Slurm's), not one that is starting
QUEUED_REASONS = frozenset(
    {"Scheduling", "DiskUnavailable", "Resources", "Priority", "Dependency", "BeginTime"}
    | {"ReqNodeNotAvail", "PartitionNodeLimit", "PartitionTimeLimit", "JobHeldUser"}
    | {"JobHeldAdmin", "Reservation", "Licenses"}
)


def queued(reason: str | None) -> bool:
    """Whether a pending job with this reason waits in a queue (``run --detach`` returns then):
    our scheduler's Scheduling, or Slurm's Resources, Priority, QOS and association limits..."""
    if not reason:
        return False
    return reason in QUEUED_REASONS or reason.startswith(("QOS", "Assoc", "MaxJobs"))


async def wait_started(
    client: Client,
    job: JobDescription,
    deps: Deps,
    *,
    quiet: bool,
    stop_when_queued: bool = False,
) -> JobDescription:
    """Wait until the job leaves pending, showing each pending reason with elapsed time.

    With ``stop_when_queued``, return as soon as the job waits for resources (``Scheduling``)."""
    progress = None if quiet else ProgressLine(deps, live=deps.io.stderr_tty)
    try:
        return await _wait_started(client, job, progress, stop_when_queued)
    finally:
        if progress is not None:
            progress.close()


async def _wait_started(
    client: Client, job: JobDescription, progress: ProgressLine | None, stop_when_queued: bool
) -> JobDescription:
    import asyncio

    delay = 0.02
    fetched = False
    while True:
        if progress is not None:
            progress.show(_status_line(job))
        if not job.status.is_pending:
            return job
        if stop_when_queued and queued(job.history.reason):
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
    connected: bool = False  # a stream is open (the output so far is on its way)


async def follow_output(
    deps: Deps,
    job_id: str,
    *,
    since: Any = None,
    timestamps: bool = False,
    retry_for: float = 60.0,
    progress: Progress | None = None,
) -> None:
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
                async with client.jobs.monitor(
                    job_id, since=since, timestamps=timestamps, offset=progress.seen
                ) as chunks:
                    progress.connected = True
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


async def final_status(
    deps: Deps, job_id: str, *, restarts: int | None = None, retry_for: float = 60.0
) -> JobDescription:
    """The job's status once it is finished (the output can end a moment before the record)
    or, given ``restarts`` (the count the caller has seen), once it was restarted.

    It waits as long as that takes: a job that goes on (a restart policy) is followed, never
    given up on; only an unreachable server ends the wait, after ``retry_for`` seconds."""
    import asyncio

    loop = asyncio.get_running_loop()
    give_up = loop.time() + retry_for
    delay = 0.02

    def settled(job: JobDescription) -> bool:
        return job.status.is_finished or (restarts is not None and job.history.restarts > restarts)

    while True:
        try:
            async with deps.client() as client:
                job = await client.jobs.status(job_id)
                while not settled(job):
                    # a server that long-polls answers when the job changes; others are asked
                    # again after a growing delay
                    changed = await client.jobs.wait_change(job, 10.0)
                    if changed is None:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 0.5)
                        changed = await client.jobs.status(job_id)
                    job = changed
                    give_up = loop.time() + retry_for
                return job
        except Exception as e:
            if not is_connection_error(e) or loop.time() > give_up:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


def is_restarting(job: JobDescription) -> bool:
    """It waits out a restart's backoff: running (as on the platform, a job restarts in
    place), reason Restarting, with no run to attach to."""
    return job.status.value == "running" and job.history.reason == "Restarting"


async def wait_next_run(client: Client, job: JobDescription) -> JobDescription:
    """``job`` once it is out of a restart's backoff: running again, or finished."""
    import asyncio

    while is_restarting(job):
        changed = await client.jobs.wait_change(job, 10.0)
        if changed is None:  # (a server that does not long-poll)
            await asyncio.sleep(0.2)
            changed = await client.jobs.status(job.id)
        job = changed
    return job


def _restart_transition(job: JobDescription) -> tuple[str, str]:
    """(description, reason) of the job's latest restart: its status while it waits to start
    again, else the last Restarting transition of its history."""
    h = job.history
    if h.reason == "Restarting":
        return h.description, h.reason
    for item in reversed(h.transitions):
        if item.reason == "Restarting":
            return item.description, item.reason
    return "", ""


@dataclasses.dataclass
class Attempts:
    """The attempts of a restarting job (``--restart``) that an attached run follows."""

    restarts: int = 0  # how many restarts were seen (announced) so far
    last_exit: int | None = None  # the exit code of the last attempt that ended

    def restarted(self, job: JobDescription) -> str | None:
        """If ``job`` restarted since it was last seen, the line that says so ("restarting
        after exit 1, attempt 3 (in 4s)"), and it is remembered; else None."""
        if job.history.restarts <= self.restarts:
            return None
        self.restarts = job.history.restarts
        text, _ = _restart_transition(job)
        code = re.search(r"exited with code (-?\d+)", text)
        if code:
            self.last_exit = int(code.group(1))
            why = f"exit {code.group(1)}"
        elif "out of memory" in text:
            self.last_exit = 137
            why = "running out of memory"
        else:
            why = "its end"
        delay = re.search(r"restart \d+ in (\d+(?:\.\d+)?s)", text)
        return f"restarting after {why}, attempt {self.restarts + 1}" + (
            f" (in {delay.group(1)})" if delay else ""
        )

    def exit_code(self, job: JobDescription) -> int:
        """What the run exits with: the job's code; killed between two attempts (no code of
        its own), the last attempt's."""
        if job.history.exit_code is None and self.last_exit is not None:
            return self.last_exit
        return job_exit_code(job)


async def follow_attempts(
    deps: Deps, job_id: str, *, progress: Progress, attempts: Attempts
) -> None:
    """:func:`follow_output`, with a line on stderr between the attempts of a job that
    restarts (the output stream goes on across them)."""
    import asyncio
    import contextlib

    watcher = asyncio.ensure_future(_announce_restarts(deps, job_id, progress, attempts))
    try:
        await follow_output(deps, job_id, progress=progress)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    async with deps.client() as client:  # a restart seen late (or not at all) still shows
        job = await client.jobs.status(job_id)
    if (line := attempts.restarted(job)) is not None:
        deps.io.err(line)


async def _announce_restarts(
    deps: Deps, job_id: str, progress: Progress, attempts: Attempts
) -> None:
    import asyncio

    while True:
        try:
            async with deps.client() as client:
                job = await client.jobs.status(job_id)
                while not job.status.is_finished:
                    if (line := attempts.restarted(job)) is not None:
                        await _output_quiet(progress)  # the attempt's last output comes first
                        deps.io.err(line)
                    changed = await client.jobs.wait_change(job, 10.0)
                    if changed is None:
                        await asyncio.sleep(0.2)
                        changed = await client.jobs.status(job_id)
                    job = changed
                return
        except Exception as e:  # noqa: BLE001 - best effort: the output goes on regardless
            if not is_connection_error(e):
                if deps.verbose:
                    deps.io.err(f"(cannot follow the job's restarts: {e})")
                return
        await asyncio.sleep(0.5)


async def _output_quiet(progress: Progress, quiet: float = 0.25, most: float = 2.0) -> None:
    """Wait until the output stream is open and no output came for ``quiet`` seconds (at most
    ``most``): an attempt that ended has all its output in the log, which the stream delivers
    a moment later."""
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + most
    while not progress.connected and loop.time() < end:  # noqa: ASYNC110 - bounded poll of a flag
        await asyncio.sleep(0.02)
    seen, since = progress.seen, loop.time()
    while loop.time() < end and loop.time() - since < quiet:
        await asyncio.sleep(0.05)
        if progress.seen != seen:
            seen, since = progress.seen, loop.time()


def result_line(job: JobDescription) -> str:
    h = job.history
    if job.status.value == "succeeded":
        return f"Job {job.id} finished successfully"
    if job.status.value == "cancelled":
        return f"Job {job.id} was cancelled ({h.reason}){': ' + h.description if h.description else ''}"
    code = f", exit code {h.exit_code}" if h.exit_code is not None else ""
    return f"Job {job.id} failed ({h.reason}{code}){': ' + h.description if h.description else ''}"


def job_exit_code(job: JobDescription) -> int:
    """What an attached ``run`` exits with: the job's code; failed without one: 125."""
    code = job.history.exit_code
    if code is not None:
        return int(code)
    if job.status.value == "succeeded":
        return 0
    return int(ExitCode.PLATFORM)
