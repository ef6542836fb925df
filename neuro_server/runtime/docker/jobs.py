"""The docker runtime's state, which its parts share (follow.py, start.py, runtime.py build on
it): where its jobs' directories are, the engine (engine.py), the job's pumps (pump.py), the
starts under way and what they are doing, and the job's names and labels."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from .. import telemetry
from ..base import Capacity, ProgressListener
from ..jobdir import SPEC, job_dir, read_json
from . import api, volumes
from .doors import Doors
from .engine import Engine
from .network import Networks
from .pump import Pump

log = logging.getLogger(__name__)

DEFAULT_PIDS_LIMIT = 4096
_LABEL_PREFIX = re.compile(r"[a-z0-9][a-z0-9.-]*")


class DockerJobs:
    def __init__(
        self,
        url: str,
        *,
        root: Path,
        label_prefix: str = "neuro",
        instance: str | None = None,
        cgroup_parent: str | None = None,
        network: str | None = None,
        init: bool = True,
        start_timeout: float = 60.0,
        poll_interval: float = 0.05,
        stats_interval: float = 0.25,
        nvml: Any = None,
        on_progress: ProgressListener | None = None,
        port_connect: str = "auto",
        pids_limit: int = DEFAULT_PIDS_LIMIT,
        capacity: Capacity | None = None,
    ) -> None:
        """``url``: the engine (``unix:///path`` or ``tcp://host:port``).  ``root``: the job
        directories (their output, exit records).  ``instance``: this server's label value
        (default: a hash of ``root``).  ``cgroup_parent``: HostConfig.CgroupParent (the
        engine's default when None).  ``network``: where containers join (network.py:
        "per-user", "shared", a network's name, or None for the engine's default).  ``init``:
        run an init process as PID 1 (docker-init, Podman's catatonit) that passes signals
        on, so that a job's SIGTERM works as on a host.  ``start_timeout``: how long a start
        that left no trace (a server killed while starting) counts as still starting.
        ``pids_limit``: HostConfig.PidsLimit, the most processes and threads a container may
        have (0: the engine's default).  ``capacity``: what jobs may use (the server config's
        [resources]; None: all of this machine, the engine's host where it is local)."""
        if not _LABEL_PREFIX.fullmatch(label_prefix):
            raise ValueError(f"bad label prefix {label_prefix!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # a server killed while it started a job left that job's volumes staged
        if os.geteuid() == 0:
            volumes.unpin_stale(self.root)
        self.pids_limit = pids_limit
        self.label_prefix = label_prefix
        self.instance = (
            instance or hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        )
        self.engine = Engine(url, label_prefix=label_prefix, instance=self.instance)
        self.endpoint, self.url = self.engine.endpoint, url
        self.cgroup_parent = cgroup_parent
        self.network = network
        self.doors = Doors()  # pass_config's way to a server on loopback (doors.py)
        self.networks = Networks(
            self.endpoint,
            network,
            label_prefix,
            self.instance,
            {
                self.engine.label("instance"): self.instance,
                self.engine.label("data-dir"): str(self.root),
            },
        )
        self.init = init
        if port_connect not in ("auto", "address", "exec"):
            raise ValueError(f"port_connect must be auto, address or exec, not {port_connect!r}")
        self.port_connect = port_connect
        self.start_timeout = start_timeout
        self.poll_interval = poll_interval
        self.stats_interval = stats_interval
        self.on_progress = on_progress
        self._capacity = capacity
        self.gpus = telemetry.Nvml(nvml)
        self._pumps: dict[str, Pump] = {}
        self._pump_locks: dict[str, asyncio.Lock] = {}
        self._starting: set[str] = set()
        self._phase: dict[str, tuple[str, str]] = {}
        self._kicked: dict[str, float] = {}
        self._cpu_samples: dict[str, tuple[Any, float, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tty_sizes: dict[str, tuple[int, int]] = {}  # job -> the size we last gave its TTY
        self._closed = False

    # -- names -------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return job_dir(self.root, job_id)

    def container_name(self, job_id: str) -> str:
        return f"{self.label_prefix}-{self.instance}-{job_id}"

    def starting(self, job_id: str) -> bool:
        return job_id in self._starting

    def phase(self, job_id: str) -> tuple[str, str] | None:
        """What a start under way does now: ("Pulling", "Pulling image ...: ...") or
        ("ContainerCreating", ...); None when no start is under way."""
        return self._phase.get(job_id)

    def set_progress_listener(self, listener: ProgressListener | None) -> None:
        self.on_progress = listener

    def capacity(self) -> Capacity:
        if self._capacity is None:
            self._capacity = telemetry.machine_capacity()
        return self._capacity

    def _set_phase(self, job_id: str, reason: str, description: str) -> None:
        if self._phase.get(job_id) == (reason, description):
            return
        self._phase[job_id] = (reason, description)
        if self.on_progress is not None:
            try:
                self.on_progress(job_id, reason, description)
            except Exception:
                log.exception("on_progress for %s", job_id)

    def _container_id(self, job_id: str) -> str | None:
        spec = read_json(str(self.job_dir(job_id) / SPEC)) or {}
        cid = spec.get("container_id")
        return str(cid) if cid else None

    def _new_pump(
        self, job_id: str, d: Path, cid: str, *, tty: bool, attach: api.Hijack | None = None
    ) -> Pump:
        return Pump(
            self.engine,
            job_id,
            str(d),
            cid,
            tty=tty,
            attach=attach,
            starting=self.starting,
            start_timeout=self.start_timeout,
        )
