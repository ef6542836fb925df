"""What the server reads of a job on its node directly: its port (at the node's address; where
the node is this machine, the job's own listener found as the process runtime finds it, so a
port that only another job or a host service listens on is refused), and its processes' CPU
and memory use (the supervisor's process tree)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from .. import telemetry
from ..base import PortReader, PortWriter, RuntimeError_, Telemetry
from ..jobdir import SUPERVISOR, read_json
from ..process.ports import job_listener
from .capacity import is_local


async def connect(d: Path, job_id: str, address: str, port: int) -> tuple[PortReader, PortWriter]:
    """A TCP connection to ``port`` of the job in ``d``, on its node at ``address``."""
    host: str | None = address
    if is_local(address):
        sup = read_json(str(d / SUPERVISOR)) or {}
        try:
            sup_pid: int | None = int(sup["pid"])
        except (KeyError, TypeError, ValueError):
            sup_pid = None
        host = await asyncio.to_thread(job_listener, port, None, sup_pid)
    if host is None:
        raise RuntimeError_(
            f"nothing listens on port {port} in job {job_id} (no process of the job listens there)",
            reason="PortNotListening",
        )
    try:
        return await asyncio.open_connection(host, port)
    except OSError as e:
        raise RuntimeError_(
            f"nothing listens on port {port} in job {job_id} at {host} ({e})",
            reason="PortNotListening",
        ) from None


def _usage(pid: int) -> tuple[int, int]:
    return telemetry.tree_usage(telemetry.tree_pids(pid))


async def sample(d: Path, interval: float = 0.25) -> Telemetry | None:
    """CPU cores and memory the job's processes use, measured over ``interval``."""
    sup = read_json(str(d / SUPERVISOR)) or {}
    try:
        pid = int(sup["pid"])
        first = await asyncio.to_thread(_usage, pid)
        t0 = time.monotonic()
        await asyncio.sleep(interval)
        cpu_ns, memory = await asyncio.to_thread(_usage, pid)
    except (KeyError, TypeError, ValueError, OSError):
        return None
    except Exception:  # noqa: BLE001 - psutil.NoSuchProcess: it ended meanwhile
        return None
    elapsed = time.monotonic() - t0
    cpu = max(0.0, (cpu_ns - first[0]) / 1e9 / elapsed) if elapsed > 0 else 0.0
    return Telemetry(timestamp=time.time(), cpu=cpu, memory=memory)
