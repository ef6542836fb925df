"""Attaching the local terminal to a running job (neuro attach, neuro run -t), with reconnects
that resume exactly where the output stopped, and the Ctrl-C dialog of non-TTY sessions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._terminal import Outcome, pump_plain, pump_tty
from ..deps import Deps
from ..errors import Interrupted
from ._jobs_common import (
    Attempts,
    Progress,
    final_status,
    follow_output,
    is_connection_error,
    is_restarting,
    job_exit_code,
    result_line,
    wait_next_run,
    wait_started,
)

if TYPE_CHECKING:
    from neuro_sdk import JobDescription, StdStream


PROMPT = (
    "\nCtrl-C: [k]ill the job, [d]etach (it goes on), or [c]ontinue? "
    "(Ctrl-C again: detach and quit) "
)
PROMPT_PENDING = (
    "\nCtrl-C: the job has not started yet. [k]ill it, [d]etach (it stays "
    "pending), or [c]ontinue waiting? (Ctrl-C again: detach and quit) "
)
KEYS = {
    b"k": "kill",
    b"d": "detach",
    b"c": "continue",
    b"\r": "continue",
    b"\n": "continue",
    b"\x1b": "continue",
    b"\x03": "interrupt",
    b"\x04": "detach",
}


async def ctrl_c_dialog(deps: Deps, keys: asyncio.Queue[bytes], *, pending: bool = False) -> str:
    """Ask what Ctrl-C should do: "kill", "detach", "continue", or "interrupt" (Ctrl-C again:
    detach, and the command ends as interrupted).  Without a terminal to ask on it is
    "interrupt": the job is never killed by surprise, and a script sees 130.

    ``keys`` gets the bytes typed and a b"\\x03" for every SIGINT (the caller's handler): a
    Ctrl-C typed before the terminal left canonical mode counts the same as one at the prompt.
    Keys are read by the event loop (no thread left blocked in read()), with the terminal out of
    canonical mode and ISIG off, so that Ctrl-C is a key here, and restored on the way out."""
    if not deps.io.stdin_tty or not deps.io.stderr_tty:
        return "interrupt"
    import termios

    fd = sys.stdin.fileno()
    loop = asyncio.get_running_loop()
    old = termios.tcgetattr(fd)
    new = termios.tcgetattr(fd)
    new[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG)
    new[6][termios.VMIN], new[6][termios.VTIME] = 1, 0

    def on_key() -> None:
        try:
            data = os.read(fd, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        keys.put_nowait(data or b"\x04")  # the terminal went away: as Ctrl-D

    deps.io.stderr.write(PROMPT_PENDING if pending else PROMPT)
    deps.io.stderr.flush()
    # (TCSAFLUSH: what was typed before the prompt, while the output ran, is no answer)
    termios.tcsetattr(fd, termios.TCSAFLUSH, new)
    loop.add_reader(fd, on_key)
    try:
        while True:
            data = await keys.get()
            for i in range(len(data)):
                choice = KEYS.get(data[i : i + 1].lower())
                if choice is not None:
                    words = {"interrupt": "Ctrl-C again: detach"}
                    deps.io.err(words.get(choice, choice))
                    return choice
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


async def attach_loop(
    deps: Deps,
    job_id: str,
    *,
    tty: bool,
    stdin: bool,
    detach_keys: bytes,
    from_start: bool,
    retry_for: float = 60.0,
    ref: str | None = None,
    restarts: int = 0,
) -> int:
    """Attach until the job ends (its exit code) or the user detaches (0).  A dropped
    connection is retried with backoff; the output resumes at the byte where it stopped.  A
    job that restarts (``--restart``; ``restarts``: its count when the caller saw it) is
    attached again for every attempt, with a line between them."""
    ref = ref or job_id
    loop = asyncio.get_running_loop()
    offset: int | None = 0 if from_start else None  # None: from now
    attempts = Attempts(restarts=restarts)
    delay = 0.1
    give_up = loop.time() + retry_for
    while True:
        try:
            async with (
                deps.client() as client,
                client.jobs.attach(
                    job_id,
                    stdin=stdin,
                    stdout=True,
                    stderr=not tty,
                    tty=tty,
                    offset="end" if offset is None else offset,
                ) as stream,
            ):
                start = stream.offset if stream.offset is not None else (offset or 0)
                outcome = Outcome()
                try:
                    if tty:
                        await pump_tty(stream, outcome, detach_keys=detach_keys)
                    else:
                        await _plain_with_dialog(deps, stream, job_id, ref, outcome)
                finally:
                    offset = start + outcome.seen
                delay = 0.1
                give_up = loop.time() + retry_for
            if outcome.detached:
                if tty:
                    deps.io.err(f"\r\nDetached from {ref}: it keeps running (neuro attach {ref}).")
                return 0
            if outcome.exit_code is None:
                # the stream ended without the job's exit frame: the connection dropped, or
                # the job ended (or restarted) meanwhile
                async with deps.client() as client:
                    current = await client.jobs.status(job_id)
                if current.status.is_running and current.history.restarts == attempts.restarts:
                    raise ConnectionResetError("the attach stream ended")
            # this attempt is over: the job has finished, or it restarts
            job = await final_status(deps, job_id, restarts=attempts.restarts)
            if job.status.is_finished:
                return await _rest_and_result(deps, job_id, offset, tty, attempts)
            await _next_attempt(deps, job, attempts)
        except Exception as e:
            from neuro_sdk import ResourceNotFound

            if not isinstance(e, ResourceNotFound):
                if not is_connection_error(e) or loop.time() > give_up:
                    raise
                deps.io.err(
                    ("\r\n" if tty else "") + f"Connection lost; reconnecting in {delay:.1f}s"
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            # the job was not running when we attached: it ended before (its record may lag a
            # moment behind: final_status waits for it), or it waits to restart
            async with deps.client() as client:
                current = await client.jobs.status(job_id)
            if is_restarting(current) and current.history.restarts <= attempts.restarts:
                await _next_attempt(deps, current, attempts)  # (a restart already announced)
                continue
            job = await final_status(deps, job_id, restarts=attempts.restarts)
            if job.status.is_finished:
                return await _rest_and_result(deps, job_id, offset, tty, attempts)
            await _next_attempt(deps, job, attempts)


async def _next_attempt(deps: Deps, job: JobDescription, attempts: Attempts) -> None:
    """Between two attempts of a restarting job: the line that says it restarts, and the wait
    until the next one runs (or the job ends).  The next attach goes on at the byte where the
    output stopped: the job's log goes on across its attempts."""
    line = attempts.restarted(job)
    if line:
        deps.io.err(line)  # (raw mode is off between attempts)
    async with deps.client() as client:
        current = await wait_next_run(client, await client.jobs.status(job.id))
        if current.status.is_pending:  # (a server that restarts jobs from pending)
            await wait_started(client, current, deps, quiet=True)


async def _rest_and_result(
    deps: Deps, job_id: str, offset: int | None, tty: bool, attempts: Attempts | None = None
) -> int:
    """Print the job's output from byte ``offset`` on (None: nothing more), then its result;
    return the exit code for the command."""
    if offset is not None:
        await follow_output(deps, job_id, progress=Progress(seen=offset))
    job = await final_status(deps, job_id)
    if job.status.value != "succeeded":
        deps.io.err(("\r\n" if tty else "") + result_line(job))
    return attempts.exit_code(job) if attempts is not None else job_exit_code(job)


async def interruptible(
    deps: Deps,
    job_id: str,
    make: Callable[[], Awaitable[None]],
    *,
    ref: str | None = None,
    pending: bool = False,
) -> str:
    """Run ``make()``; on Ctrl-C ask what to do (kill, detach, continue: then ``make()`` runs
    again and must resume where it stopped).  Returns "done", "detach", "kill" or "interrupt"
    (detached by Ctrl-C: the caller ends as interrupted, see errors.Interrupted).  ``ref``
    names the job in the hints (its name, else its id); ``pending``: the job has not started.

    One SIGINT handler serves the whole time, the dialog included, so no Ctrl-C ever falls
    through to the default handler (which left a thread reading the terminal, keys echoed and
    ignored, and ``Aborted.``)."""
    import signal

    ref = ref or job_id
    loop = asyncio.get_running_loop()
    keys: asyncio.Queue[bytes] = asyncio.Queue()
    loop.add_signal_handler(signal.SIGINT, keys.put_nowait, b"\x03")
    try:
        while True:
            work: asyncio.Future[Any] = asyncio.ensure_future(make())
            waiter: asyncio.Future[Any] = loop.create_task(keys.get())
            try:
                done, _ = await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not waiter.done():
                    waiter.cancel()
                if not work.done():
                    work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
            if work in done and not work.cancelled():
                work.result()
                return "done"
            choice = await ctrl_c_dialog(deps, keys, pending=pending)
            if choice == "continue":
                continue
            if choice == "kill":
                async with deps.client() as client:
                    await client.jobs.kill(job_id)
                deps.io.err(f"Killed {ref}")
                return choice
            if pending:
                deps.io.err(
                    f"Left {ref} pending: it is not killed, and starts when the server can run it."
                )
                deps.io.err(f"  see it: neuro status {ref}    cancel it: neuro kill {ref}")
            else:
                deps.io.err(f"Detached from {ref}: it keeps running.")
                deps.io.err(f"  follow its output: neuro logs {ref}    stop it: neuro kill {ref}")
            return choice
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if deps.on_sigint is not None:
            loop.add_signal_handler(signal.SIGINT, deps.on_sigint)


async def _plain_with_dialog(
    deps: Deps, stream: StdStream, job_id: str, ref: str, outcome: Outcome
) -> None:
    """Non-TTY attach: stream output; Ctrl-C opens the kill/detach/continue dialog."""
    choice = await interruptible(
        deps, job_id, lambda: pump_plain(stream, outcome, forward_stdin=False), ref=ref
    )
    if choice in ("interrupt", "kill"):
        raise Interrupted  # Ctrl-C ended it: 130, and a shell loop around it stops
    outcome.detached = choice == "detach"
