"""Refresh the completion cache from the server: ``python -m neuro_cli.completion.refresh``.

Started detached by a TAB that found the cache stale, so it may import the SDK and wait for
the network.  It never starts the local server: with no login and no local server running,
there is nothing to ask."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from .cache import cache_dir, cache_file

TIMEOUT = 10.0
MAX_JOBS = 1000


async def fetch() -> dict[str, Any]:
    from neuro_sdk import Factory, JobStatus

    from ..embedded import config_dir
    from ..formatters.common import size

    async with await Factory(config_dir()).get() as client:
        cfg = await client.get_server_config()
        cluster = cfg.clusters.get(client.cluster_name or "")
        presets = [
            {
                "name": p.name,
                "help": f"{p.cpu:g} CPU, {size(p.memory)}"
                + (f", {p.nvidia_gpu} GPU" if p.nvidia_gpu else ""),
            }
            for p in (cluster.presets.values() if cluster else ())
        ]
        jobs = []
        async for job in client.jobs.list(
            statuses=JobStatus.active_items(), limit=MAX_JOBS, reverse=True
        ):
            jobs.append({"id": job.id, "name": job.name, "status": job.status.value})
    return {"version": 1, "time": time.time(), "jobs": jobs, "presets": presets}


@contextlib.contextmanager
def _locked(wait: bool) -> Iterator[bool]:
    fd = os.open(cache_dir() / "completion.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False  # another refresh is running
            return
        yield True
    finally:
        os.close(fd)


def write(data: dict[str, Any]) -> None:
    tmp = cache_file().with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, cache_file())


def refresh(*, wait: bool = False, timeout: float = TIMEOUT) -> bool:
    """Fetch and write the cache; False when there was no server to ask or it failed."""
    from ..embedded import config_dir, read_info

    # logged in means config.json exists (neuro_sdk.Factory.is_logged_in), else a local server
    # runs: checked before any request, so a refresh with nothing to ask ends at once
    if not (config_dir() / "config.json").exists() and read_info() is None:
        return False
    cache_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(wait) as got:
        if not got:
            return False
        try:
            data = asyncio.run(asyncio.wait_for(fetch(), timeout))
        except Exception:  # noqa: BLE001 - a slow or dead server: keep the old cache
            return False
        write(data)
    return True


if __name__ == "__main__":
    with contextlib.suppress(OSError):
        os.nice(10)  # the user is typing: their next TAB comes first
    sys.exit(0 if refresh() else 1)
