"""Attaching the local terminal to a running job (neuro attach, neuro run -t), with reconnects
that resume exactly where the output stopped, and the Ctrl-C dialog of non-TTY sessions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..deps import Deps
from ..errors import ExitCode
from .._terminal import Outcome, pump_plain, pump_tty
from ._jobs_common import (
    Progress,
    final_status,
    follow_output,
    is_connection_error,
    job_exit_code,
    result_line,
)

if TYPE_CHECKING:
    from neuro_sdk import StdStream


async def ctrl_c_dialog(deps: Deps, job_id: str) -> str:
    """Ask what Ctrl-C should do: 'kill', 'detach' or 'continue'.  Without a terminal to ask
    on, it detaches (never kills by surprise)."""
    if not deps.io.stdin_tty or not deps.io.stderr_tty:
        return "detach"
    import termios
    import tty as tty_mod

    deps.io.err("\nCtrl-C: [k]ill the job, [d]etach (the job goes on), or [c]ontinue? ")
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty_mod.setcbreak(fd)
        loop = asyncio.get_running_loop()
        while True:
            ch = (await loop.run_in_executor(None, os.read, fd, 1)).lower()
            if ch in (b"k", b"\x03"):
                return "kill"
            if ch in (b"d", b"\x04"):
                return "detach"
            if ch in (b"c", b"\r", b"\n", b"\x1b"):
                return "continue"
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


async def attach_loop(deps: Deps, job_id: str, *, tty: bool, stdin: bool, detach_keys: bytes,
                      from_start: bool, retry_for: float = 60.0) -> int:
    """Attach until the job ends (its exit code) or the user detaches (0).  A dropped
    connection is retried with backoff; the output resumes at the byte where it stopped."""
    loop = asyncio.get_running_loop()
    offset: int | None = 0 if from_start else None  # None: from now
    delay = 0.1
    give_up = loop.time() + retry_for
    while True:
        try:
            async with deps.client() as client:
                async with client.jobs.attach(
                    job_id, stdin=stdin, stdout=True, stderr=not tty, tty=tty,
                    offset="end" if offset is None else offset,
                ) as stream:
                    start = stream.offset if stream.offset is not None else (offset or 0)
                    outcome = Outcome()
                    try:
                        if tty:
                            await pump_tty(stream, outcome, detach_keys=detach_keys)
                        else:
                            await _plain_with_dialog(deps, stream, job_id, outcome)
                    finally:
                        offset = start + outcome.seen
                    delay = 0.1
                    give_up = loop.time() + retry_for
            if outcome.detached:
                if tty:
                    deps.io.err(f"\r\nDetached from {job_id}: it keeps running "
                                f"(neuro attach {job_id}).")
                return 0
            if outcome.killed:
                return int(ExitCode.INTERRUPTED)
            if outcome.exit_code is None:
                # the stream ended without the job's exit frame: the connection dropped
                async with deps.client() as client:
                    current = await client.jobs.status(job_id)
                if current.status.is_running:
                    raise ConnectionResetError("the attach stream ended")
                return await _rest_and_result(deps, job_id, offset, tty)
            return await _rest_and_result(deps, job_id, None, tty)
        except Exception as e:
            from neuro_sdk import ResourceNotFound

            if not isinstance(e, ResourceNotFound):
                if not is_connection_error(e) or loop.time() > give_up:
                    raise
                deps.io.err(("\r\n" if tty else "") + f"Connection lost; reconnecting in {delay:.1f}s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            # the job ended before (or while) we attached (its record may lag a moment behind:
            # _rest_and_result waits for it to be finished)
            return await _rest_and_result(deps, job_id, offset, tty)


async def _rest_and_result(deps: Deps, job_id: str, offset: int | None, tty: bool) -> int:
    """Print the job's output from byte ``offset`` on (None: nothing more), then its result;
    return the exit code for the command."""
    if offset is not None:
        await follow_output(deps, job_id, progress=Progress(seen=offset))
    job = await final_status(deps, job_id)
    if job.status.value != "succeeded":
        deps.io.err(("\r\n" if tty else "") + result_line(job))
    return job_exit_code(job)


async def interruptible(deps: Deps, job_id: str,
                        make: Callable[[], Awaitable[None]]) -> str:
    """Run ``make()``; on Ctrl-C ask what to do (kill, detach, continue: then ``make()`` runs
    again and must resume where it stopped).  Returns "done", "detach" or "kill"."""
    import signal

    loop = asyncio.get_running_loop()
    while True:
        work = loop.create_task(make())  # type: ignore[arg-type]
        interrupted = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        waiter = loop.create_task(interrupted.wait())
        try:
            done, _ = await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            if deps.on_sigint is not None:
                loop.add_signal_handler(signal.SIGINT, deps.on_sigint)
            if not waiter.done():
                waiter.cancel()
        if work in done:
            work.result()
            return "done"
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        choice = await ctrl_c_dialog(deps, job_id)
        if choice == "detach":
            deps.io.err(f"Detached from {job_id}: it keeps running.")
            deps.io.err(f"  follow its output: neuro logs {job_id}    stop it: neuro kill {job_id}")
            return choice
        if choice == "kill":
            async with deps.client() as client:
                await client.jobs.kill(job_id)
            deps.io.err(f"Killed {job_id}")
            return choice


async def _plain_with_dialog(deps: Deps, stream: "StdStream", job_id: str,
                             outcome: Outcome) -> None:
    """Non-TTY attach: stream output; Ctrl-C opens the kill/detach/continue dialog."""
    choice = await interruptible(
        deps, job_id, lambda: pump_plain(stream, outcome, forward_stdin=False))
    outcome.detached = choice == "detach"
    outcome.killed = choice == "kill"
