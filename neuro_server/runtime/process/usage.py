"""What a process job uses now, read from its cgroup where it has one (its processes listed
there: no walk over the host's process table), else from its supervisor's process tree."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import cgroups, telemetry
from ..jobdir import SPEC, read_json
from .procfs import supervisor_alive


def job_cgroup(d: Path, job_id: str, parent: str, root: str) -> cgroups.JobCgroup | None:
    """The job's cgroup, where it has one (under the parent its spec names, else ``parent``)."""
    spec = read_json(str(d / SPEC)) or {}
    return cgroups.JobCgroup.find(
        spec.get("cgroup_parent") or parent, job_id, spec.get("cgroup_root") or root
    )


def sample(
    d: Path, job_id: str, sup: dict[str, Any], parent: str, root: str
) -> tuple[float, int, int, set[int]] | None:
    """(monotonic time, CPU ns, memory bytes, the job's pids) now; None when it is gone."""
    if not supervisor_alive(sup):
        return None
    cg = job_cgroup(d, job_id, parent, root)
    cpu_ns = memory = None
    pids: set[int] = set()
    if cg is not None:
        pids = cg.pids()
        if pids:
            cpu_ns, memory = telemetry.cgroup_usage(cg)
    if not pids:
        pids = telemetry.tree_pids(int(sup["pid"]))
    if cpu_ns is None or memory is None:
        tree_cpu, tree_memory = telemetry.tree_usage(pids)
        cpu_ns = tree_cpu if cpu_ns is None else cpu_ns
        memory = tree_memory if memory is None else memory
    return time.monotonic(), cpu_ns, memory, pids
