"""A docker job's output: one *pump* per running job, in the server process, is the only writer
of the job's ``output.log``/``output.idx`` (the process runtime's format, logfile.py) and the
only source of what attached clients see, so a client that attaches with ``logs`` gets the log
so far and then the live output with no gap and no duplicate (it reads the log by record).
The bytes come from:

* *attach mode* (a job started by this server process): the pump attaches to the container
  before it starts, so the attach stream carries every byte the job prints, at once.
* *log mode* (a job found after a server restart): the engine's log (``GET /logs?follow``)
  past the bytes the log has.  The pump records how many of the container's bytes are in
  output.log (``follow.json``, saved every half second and at the end); a pump that
  resumes first cuts output.log back to that point (bytes past it were written but not recorded)
  and then appends from there, so what readers see is the same bytes at the same offsets.
  Non-TTY lines keep the engine's time (to the second on Podman); TTY output (a raw stream in
  which the engine's time stamps cannot be told from the output) gets the time it was read.
  Podman polls its log file every 250 ms, so live output in log mode lags by up to that much
  (no re-attach: Podman forgets the exit code of a container that exits as one attaches to
  it).  Resuming costs reading the engine's log from the last *sync point*: a pause in the
  output (or a second boundary in the engine's time stamps) where the engine's log entries
  from a time T on are exactly our bytes past a known count; the bytes there are compared with
  output.log before anything is added, and without a sync point that matches the whole log is
  read again (Podman: ~1 s per MB).
After the container ends the pump checks the engine's log from the last sync point for anything
the stream missed (not past 4 MiB: Podman's attach stream was complete in every trial, and
re-reading is slow), writes ``exit.json`` and ends; ``Runtime.wait`` returns then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..base import ExitInfo, RuntimeError_
from ..jobdir import EXIT, exit_record, iso_now, read_json, write_json
from ..logfile import LOG_NAME, LogWriter, truncate
from . import api
from .container import InitError, init_could_not_exec
from .engine import Engine, phase_of
from .oom import SIGKILLED, oom_evidence
from .tty_input import TtyInput

log = logging.getLogger(__name__)

FOLLOW = "follow.json"  # {container_id, consumed, log_offset, log_records}
LOST = "lost.json"
SAVE_EVERY = 0.5  # seconds between follow.json saves while output flows
RETRY_MAX = 5.0
SETTLE = 3.0  # after the attach stream ended: how long to wait for the engine to say "exited"
WATCH_EVERY = 1.0  # log mode: how often the pump looks whether the container ended
EXIT_GRACE = 1.0  # ... and how long the log follower then has to end by itself
SYNC_GAP = 0.25  # a pause in live output this long makes a sync point
CATCH_UP_MAX = 4 << 20  # after an attach stream: re-read at most this much of the engine's log


class Pump:
    def __init__(
        self,
        engine: Engine,
        job_id: str,
        job_dir: str,
        container_id: str,
        *,
        tty: bool,
        attach: api.Hijack | None = None,
        starting: Callable[[str], bool] = lambda job_id: False,
        start_timeout: float = 60.0,
    ) -> None:
        """``attach``: a stream opened before the container started (attach mode); without
        one the pump resumes from follow.json (log mode).  ``starting(job_id)``: whether a
        start of the job is under way (a container it created and has not started yet is
        not one that never started); ``start_timeout``: how long a start may take."""
        self.engine = engine
        self._start_under_way = starting
        self.start_timeout = start_timeout
        self.job_id = job_id
        self.dir = job_dir
        self.cid = container_id
        self.tty = tty
        self._attach = attach
        self._input = TtyInput(engine, container_id, attach if tty else None)
        state = read_json(os.path.join(job_dir, FOLLOW))
        resumed = attach is None and state is not None and state.get("container_id") == container_id
        if resumed:
            assert state is not None
            truncate(job_dir, int(state["log_offset"]), int(state["log_records"]))
            self.consumed = int(state["consumed"])
        else:
            self.consumed = 0
        self.writer = LogWriter(job_dir)
        self._init_error = InitError(first=not self.consumed)
        self.base = (self.writer.offset, self.writer.records)  # where this pump began
        # where this container's output begins in output.log
        self.start = (
            (int(state.get("start_offset", 0)), int(state.get("start_records", 0)))
            if resumed and state is not None
            else self.base
        )
        # a sync point: (unix time T, bytes consumed, output.log offset) such that the engine's
        # log entries from T on are exactly the container's output past those bytes
        sync = (state or {}).get("sync") if resumed else None
        self._sync: tuple[float, int, int] | None = (
            (float(sync[0]), int(sync[1]), int(sync[2])) if sync else None
        )
        if attach is not None:  # the container has not started yet: all of it is after now
            self._sync = (time.time(), 0, self.writer.offset)
        self._live = attach is not None  # bytes arrive as they are printed (for sync points)
        self._log_r = os.open(os.path.join(job_dir, LOG_NAME), os.O_RDONLY | os.O_CLOEXEC)
        self.last_when = 0.0
        self._last_wall = 0.0
        self._saved_at = 0.0
        self._save()
        self._tick = asyncio.Event()
        self.exit: ExitInfo | None = None
        self.lost = False
        self.finished = False  # no more output will come (exited and drained, or lost)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._killer: asyncio.Task[None] | None = None
        self._ran_attached = False  # the attach stream ran from the start to the end
        self.task = asyncio.create_task(self._run(), name=f"docker pump {job_id}")

    # -- state -------------------------------------------------------------------------------

    @property
    def records(self) -> int:
        return self.writer.records

    def _save(self) -> None:
        write_json(
            os.path.join(self.dir, FOLLOW),
            {
                "container_id": self.cid,
                "consumed": self.consumed,
                "start_offset": self.start[0],
                "start_records": self.start[1],
                "log_offset": self.writer.offset,
                "log_records": self.writer.records,
                "sync": list(self._sync) if self._sync else None,
            },
        )
        self._saved_at = time.monotonic()

    def _notify(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def changed(self) -> None:
        await self._tick.wait()

    def append(self, data: bytes, stream: int, when: float | None = None) -> None:
        """The container printed ``data``: into the log (times only grow: readers search them)."""
        if not data:
            return
        when = time.time() if when is None else when
        if self._init_error.hold(data, stream, when):
            self.consumed += len(data)  # (consumed from the container, if not yet logged)
            return
        self._flush_held()  # more output: what was held was not the init's error
        self._write(data, stream, when)
        self.consumed += len(data)

    def _flush_held(self) -> None:
        held = self._init_error.release()
        size = sum(len(data) for data, _, _ in held)
        self.consumed -= size  # (its bytes were counted as consumed when held)
        for chunk in held:
            self._write(*chunk)
        self.consumed += size

    def _write(self, data: bytes, stream: int, when: float) -> None:
        now = time.time()
        if self._live and self._last_wall and now - self._last_wall >= SYNC_GAP:
            # a pause in live output: the engine stamped what came before it before the
            # middle of the pause, and what comes now after it
            self._sync = ((self._last_wall + now) / 2, self.consumed, self.writer.offset)
        self._last_wall = now
        when = max(min(when, now), self.last_when)
        self.writer.write(data, stream, when)
        self.last_when = when
        if time.monotonic() - self._saved_at > SAVE_EVERY:
            self._save()
        self._notify()

    # -- the source loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.1
        try:
            if self._attach is not None:
                await self._from_stream(self._attach)
                await self._end_attach()
                self._ran_attached = True
                await self._settle()
            while not self.finished:
                try:
                    info = await self.engine.container_info(self.cid)
                    if info is None:
                        self._finish_lost("its container is gone")
                        return
                    phase = phase_of(info)
                    if phase == "running":
                        await self._follow_running()
                    elif phase == "exited":
                        await self._catch_up()
                        await self._finish_exited(info)
                        return
                    elif self._never_started(info):
                        self._finish_lost("its container never started")
                        return
                    # else: a start under way: look again
                    delay = 0.1
                except (api.EngineError, OSError, RuntimeError_) as e:
                    log.warning("job %s: output: %s (retrying)", self.job_id, e)
                    delay = min(delay * 2, RETRY_MAX)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: the job goes on; wait() and logs() must not hang
            log.exception("job %s: output pump failed", self.job_id)
            self._finish_lost("the server lost track of its output")
        finally:
            self._save()
            if self._attach is not None:
                await self._attach.close()
            await self._input.close()
            if self._killer is not None:
                self._killer.cancel()
            if not self.done.done():
                self.done.cancel()
            self._notify()

    def _never_started(self, info: dict[str, Any]) -> bool:
        """Created and never started, and no start under way (a server killed while it
        started it): nothing will come."""
        if self._start_under_way(self.job_id) or phase_of(info) != "created":
            return False
        created = api.parse_time(str(info.get("Created") or "")) or time.time()
        return time.time() - created > self.start_timeout

    async def _end_attach(self) -> None:
        stream, self._attach = self._attach, None
        if stream is not None:
            self._input.forget(stream)
            await stream.close()

    async def _from_stream(self, stream: api.Hijack) -> None:
        self._live = True
        try:
            while (item := await stream.read()) is not None:
                self.append(item[1], item[0])
        finally:
            self._live = False

    async def _follow_running(self) -> None:
        """Log mode: follow the engine's log while the container runs.

        The follower should end when the container does, but Podman's does not always (a
        follow that began as the container exited waits for ever): a watcher looks at the
        container every second, and once it exited the follower gets a moment to end and is
        dropped; _run then reads what is left.  (No switch back to an attach stream: Podman
        re-initializes a container that exits as one attaches to it, and forgets its exit.)"""
        follower = asyncio.create_task(self._resume_log(follow=True))
        watcher = asyncio.create_task(self._until_exited())
        try:
            await asyncio.wait({follower, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not follower.done():
                await asyncio.wait({follower}, timeout=EXIT_GRACE)
            if follower.done():
                follower.result()  # its errors go to _run
        finally:
            for task in (watcher, follower):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _settle(self) -> None:
        """The attach stream ended: the container exits; the engine may say so a moment
        later (Podman: after its cleanup), which is better waited for than followed."""
        deadline = time.monotonic() + SETTLE
        while time.monotonic() < deadline:
            with contextlib.suppress(api.EngineError, OSError):
                info = await self.engine.container_info(self.cid)
                if info is None or phase_of(info) != "running":
                    return
            await asyncio.sleep(0.05)

    async def _until_exited(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                info = await self.engine.container_info(self.cid)
            except (api.EngineError, OSError):
                continue
            if info is None or phase_of(info) == "exited":
                return

    async def _catch_up(self) -> None:
        """The container ended: what the engine's log has that we have not.  After an attach
        stream that ran to its end that is nothing, and reading the engine's log again costs
        (Podman: ~1 s per MB): checked from the last sync point when that is cheap."""
        if self._ran_attached and (
            self._sync is None or self.consumed - self._sync[1] > CATCH_UP_MAX
        ):
            return
        await self._resume_log(follow=False)

    async def _resume_log(self, *, follow: bool) -> None:
        """Append what the engine's log has past ``consumed``: from the last sync point when
        the engine's log from there matches output.log, else from the start, skipping."""
        if self._sync is not None:
            t, consumed, offset = self._sync
            try:
                await self._from_log(
                    follow=follow, since=t, skip=self.consumed - consumed, verify_at=offset
                )
                return
            except _Misaligned:
                log.info(
                    "job %s: output: the sync point does not match: reading it all", self.job_id
                )
                self._sync = None
        await self._from_log(follow=follow, since=None, skip=self.consumed, verify_at=None)

    async def _from_log(
        self, *, follow: bool, since: float | None, skip: int, verify_at: int | None
    ) -> None:
        """Append the engine's log (from ``since``) past its first ``skip`` bytes, which must
        be output.log's bytes at ``verify_at`` (else _Misaligned, before anything is added)."""
        resp = await api.request(
            self.engine.endpoint,
            "GET",
            api.path(
                "/containers/{}/logs",
                self.cid,
                stdout=1,
                stderr=1,
                follow=int(follow),
                timestamps=0 if self.tty else 1,
                since=None if since is None else f"{since:.9f}",
            ),
        )
        try:
            demux = api.Demux(resp.read, self.tty)
            seen = 0
            prev_hi: float | None = None
            while (item := await demux.next()) is not None:
                stream, payload = item
                when = lo = hi = None
                if not self.tty:
                    stamp, _, payload = payload.partition(b" ")
                    parsed = api.parse_stamp(stamp)
                    if parsed is not None:  # the time it was printed lies in [lo, hi)
                        lo, hi = parsed[0], parsed[0] + parsed[1]
                        when = hi
                if seen < skip:
                    n = min(len(payload), skip - seen)
                    if (
                        verify_at is not None
                        and os.pread(self._log_r, n, verify_at + seen) != payload[:n]
                    ):
                        raise _Misaligned
                    seen += n
                    payload = payload[n:]
                    if not payload:
                        prev_hi = hi
                        continue
                if lo is not None and prev_hi is not None and prev_hi <= lo:
                    self._sync = (lo, self.consumed, self.writer.offset)  # between two entries
                prev_hi = hi
                self.append(payload, stream, when)
            if seen < skip and verify_at is not None:
                raise _Misaligned  # the engine has less from there than we do
        finally:
            await resp.aclose()

    # -- the end -----------------------------------------------------------------------------

    async def _finish_exited(self, info: dict[str, Any]) -> None:
        state = info.get("State", {})
        code = int(state.get("ExitCode") or 0)
        oom = bool(state.get("OOMKilled")) or (
            code == 137 and await asyncio.to_thread(oom_evidence, Path(self.dir), self.cid)
        )
        finished = api.parse_time(state.get("FinishedAt")) or time.time()
        started = api.parse_time(state.get("StartedAt"))
        error = ""
        config = info.get("Config") or {}
        command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        cannot = init_could_not_exec(
            self._init_error.text, code, str(command[0]) if command else ""
        )
        if cannot is not None:
            code, error = cannot
            self._init_error.release()  # ours replaces the init's line
        self._flush_held()
        ex = ExitInfo(
            exit_code=code,
            finished_at=datetime.fromtimestamp(finished, UTC),
            oom_killed=oom,
            error=error,
        )
        self.finish(ex, started, message=error)

    def finish(self, ex: ExitInfo, started_at: float | None, *, message: str = "") -> None:
        """Record the exit (after all output); ``message``: a line for the log first."""
        if self.finished:
            return
        if message:
            self.append(f"neuro: {message}\n".encode(), 2)
        self._save()
        record = exit_record(
            ex.exit_code,
            finished_at=ex.finished_at.isoformat(),
            started_at=iso_now(started_at) if started_at else None,
            oom_killed=ex.oom_killed,
            error=ex.error,
        )
        write_json(os.path.join(self.dir, EXIT), {**record, "container_id": self.cid})
        self.exit = ex
        self._end()

    def _finish_lost(self, why: str) -> None:
        if self.finished:
            return
        write_json(os.path.join(self.dir, LOST), {"container_id": self.cid, "why": why})
        self.lost = True
        self._end()

    def _end(self) -> None:
        self.finished = True
        self.writer.close()
        self._close_reader()
        if not self.done.done():
            self.done.set_result(None)
        self._notify()

    async def close(self) -> None:
        """Stop following (the server shuts down; the job goes on)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if not self.finished:
            with contextlib.suppress(OSError):
                self.writer.close()
        self._close_reader()

    def _close_reader(self) -> None:
        if self._log_r >= 0:
            os.close(self._log_r)
            self._log_r = -1

    # -- stop --------------------------------------------------------------------------------

    def kill_at(self, deadline: float) -> None:
        """SIGKILL the container at ``deadline`` (unix time) unless it ended by then."""
        if self._killer is not None or self.finished:
            return

        async def kill_later() -> None:
            await asyncio.sleep(max(0.0, deadline - time.time()))
            if not self.finished:
                # an exit 137 from now on is ours, not the memory limit's
                write_json(os.path.join(self.dir, SIGKILLED), {"at": iso_now()})
                with contextlib.suppress(api.EngineError, RuntimeError_, OSError):
                    await self.engine.kill_container(self.cid, "SIGKILL")

        self._killer = asyncio.create_task(kill_later(), name=f"docker stop {self.job_id}")

    # -- stdin of a TTY job ------------------------------------------------------------------

    async def write_stdin(self, data: bytes) -> None:
        if self.tty and not self.finished and data:
            await self._input.write(data)


class _Misaligned(Exception):
    """The engine's log from a sync point does not continue output.log."""
