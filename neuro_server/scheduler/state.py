"""What the scheduler's parts share: the store, the runtime, what is under way (starts,
suspensions, watched runs), and the notification of a job's changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from ..config import ServerConfig
from ..diskfull import Reserve
from ..jobusers import JobUsers
from ..model import JobRecord, JobStatus
from ..runtime.base import Runtime
from ..store import Store

log = logging.getLogger("neuro_server.scheduler")


class SchedulerState:
    def __init__(self, config: ServerConfig, store: Store, runtime: Runtime) -> None:
        self.config = config
        self.store = store
        self.runtime = runtime
        self._wake = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._starting: set[str] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart_at: dict[str, float] = {}  # job id -> loop time of its next start
        self._run_started: dict[str, datetime] = {}  # job id -> when its current run started
        self._running_since: dict[str, float] = {}  # loop time of its last start or resume
        self._suspending: set[str] = set()  # suspensions and resumptions in flight
        self._resuming: set[str] = set()
        self.reserve = Reserve(config.data_dir / "reserve")  # room for job states on a full disk
        # for pass_config: the API URL jobs reach the server at, and a token issuer (set by
        # whoever serves the app)
        self.api_url: str | None = None
        self.issue_token: Callable[[str], str] | None = None
        self.users: JobUsers | None = None  # who jobs run as (set with the token issuer)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- change notification (log streams wait on it) -------------------------------------
    def _notify(self, job_id: str) -> None:
        ev = self._changed.pop(job_id, None)
        if ev is not None:
            ev.set()

    async def wait_change(self, job_id: str, timeout: float) -> None:
        ev = self._changed.setdefault(job_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    def _set(
        self, job_id: str, status: JobStatus, reason: str = "", description: str = "", **kw: Any
    ) -> JobRecord:
        job = self.store.set_status(job_id, status, reason, description, **kw)
        self._notify(job_id)
        return job
