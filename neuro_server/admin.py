"""What the ``neuro-server`` user and token commands do, apart from click (cli.py).

They run in a process of their own, next to a running server or without one, and act on the
store; the server sees their changes at its next request (auth.py asks the store every time).
``remove-user`` also stops the user's active jobs itself, through the runtime that runs them
(a job's supervisor or the container engine answers any process of the server's user), so that
it works the same whether a server runs or not; a running server then records them cancelled,
and one started later does so when it reconciles.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ServerConfig
from .store import JobRecord, JobStatus, Store, TokenRecord, now

if TYPE_CHECKING:
    from .runtime.base import Runtime

REMOVED = "UserRemoved"  # the kill reason of the jobs of a removed user

_DURATION_RE = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_JTI_RE = re.compile(r"[0-9a-f]{32}")


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``1w2d``, ``1d2h3m4s`` -> seconds (more than 0), or ValueError."""
    m = _DURATION_RE.fullmatch(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise ValueError(f"invalid duration {text!r}: use a form like 30d, 12h, 1w or 1d2h3m4s")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    total = float((((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds)
    if total <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be longer than 0 seconds")
    return total


def looks_like_jwt(text: str) -> bool:
    return text.count(".") == 2


def valid_jti(text: str) -> bool:
    return _JTI_RE.fullmatch(text) is not None


def _when(dt: datetime | None) -> str:
    return "never" if dt is None else dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def token_state(tok: TokenRecord, at: datetime | None = None) -> str:
    if tok.revoked:
        return f"revoked {_when(tok.revoked_at)}" if tok.revoked_at else "revoked"
    return "expired" if tok.expired(at) else "active"


def token_table(tokens: Sequence[TokenRecord]) -> list[str]:
    """Lines of a table of tokens, with a header: what ``neuro-server tokens`` prints."""
    t = now()
    rows = [("JTI", "CREATED", "EXPIRES", "STATE", "NOTE")] + [
        (tok.jti, _when(tok.created_at), _when(tok.expires_at), token_state(tok, t), tok.note)
        for tok in tokens
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ]


def server_running(data_dir: Path) -> bool:
    """Does a server hold the data dir's lock (``serve`` holds it exclusively while it runs)?"""
    try:
        fd = os.open(data_dir / "server.lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


async def stop_jobs(config: ServerConfig, store: Store, jobs: Sequence[JobRecord]) -> None:
    """Cancel ``jobs`` (of a removed user): pending ones in the store, running and suspended
    ones through their runtime, waiting (bounded by the kill grace) until they have stopped."""
    from .runtime import registry
    from .runtime.base import State

    # the process runtime's jobs outlive a server that ran them; the configured runtime's too
    process = registry.create(config, "process")
    other: Runtime | None = None
    looked = False  # for the configured runtime (probing an engine takes a while)
    try:
        for job in jobs:
            store.set_kill_reason(job.id, REMOVED)
            if job.status == JobStatus.PENDING or job.restarting:  # (nothing runs)
                # a start under way in a running server sees the kill reason and stops it
                store.set_status(
                    job.id, JobStatus.CANCELLED, REMOVED, "The job's owner was removed"
                )
        running: list[tuple[Runtime, JobRecord]] = []
        for job in jobs:
            runtime: Runtime = process
            if (await process.inspect(job.id)).state is not State.RUNNING:
                if not looked:
                    other, looked = await _configured(config), True
                if other is None or (await other.inspect(job.id)).state is not State.RUNNING:
                    continue
                runtime = other
            running.append((runtime, job))
        await asyncio.gather(*(_stop(config, rt, job) for rt, job in running))
    finally:
        if other is not None:
            await other.close()


async def _configured(config: ServerConfig) -> Runtime | None:
    """The runtime a server of this data dir uses, when it is not the process runtime."""
    from .runtime.select import runtime_for

    if config.runtime == "process":
        return None
    runtime, choice = await runtime_for(config)
    if choice.name == "process":
        await runtime.close()
        return None
    return runtime


async def _stop(config: ServerConfig, runtime: Runtime, job: JobRecord) -> None:
    from .runtime.base import State

    grace = config.kill_grace_seconds
    if job.status == "suspended":  # frozen processes cannot handle SIGTERM: thaw them
        await runtime.resume(job.id)
    await runtime.stop(job.id, grace=grace)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace + 5
    while (await runtime.inspect(job.id)).state is State.RUNNING and loop.time() < deadline:  # noqa: ASYNC110 - the runtime has no event to wait on
        await asyncio.sleep(0.05)
