"""Resource arithmetic of the plan: what is free of the runtime's capacity, and what fits."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable

from ..config import Preset
from ..model import JobRecord, JobStatus, Resources
from ..runtime.base import Capacity

GiB = 1 << 30
HOLDS = 1e18  # "plenty": a resource a suspended job keeps while frozen


def fmt_mem(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / (1 << 20):.0f} MiB"


@dataclasses.dataclass
class Free:
    """What is free now (a plan's working copy: it changes as the plan gives it away)."""

    cpu: float
    memory: float
    nvidia_gpu: float

    def copy(self) -> Free:
        return dataclasses.replace(self)

    def frozen_job(self) -> Free:
        """What a suspended job needs to go on: only CPU (it kept its memory and GPUs)."""
        return Free(self.cpu, HOLDS, HOLDS)

    def take(self, res: Resources) -> None:
        self.cpu -= res.cpu
        self.memory -= res.memory
        self.nvidia_gpu -= res.nvidia_gpu


def free_of(
    capacity: Capacity,
    holding: Iterable[JobRecord],
    starting: Iterable[JobRecord],
    suspending: Collection[str],
    resuming: Collection[str],
) -> Free:
    """``capacity`` less what jobs use: running and suspended ones (``holding``) and those
    being started.  A frozen job keeps its memory and GPUs; its CPU is free (also while it
    is being suspended, not while it is being resumed)."""
    free = Free(capacity.cpu, float(capacity.memory), float(capacity.nvidia_gpu))
    for job in holding:
        res = job.spec.resources
        frozen = (
            job.status == JobStatus.SUSPENDED and job.id not in resuming
        ) or job.id in suspending
        if not frozen:
            free.cpu -= res.cpu
        free.memory -= res.memory
        free.nvidia_gpu -= res.nvidia_gpu
    for job in starting:
        if job.status == JobStatus.PENDING:
            free.take(job.spec.resources)
    return free


def fits(res: Resources, free: Free, total: Capacity) -> tuple[int, str]:
    """How many such jobs fit in ``free``, and what limits it."""
    counts: list[tuple[float, str]] = []
    eps = 1e-9
    counts.append(
        (
            math.floor(free.cpu / res.cpu + eps),
            f"cpu {res.cpu:g} (free {max(free.cpu, 0):g} of {total.cpu:g})",
        )
    )
    counts.append(
        (
            math.floor(free.memory / res.memory + eps),
            (
                f"memory {fmt_mem(res.memory)} (free {fmt_mem(max(free.memory, 0))} of "
                f"{fmt_mem(total.memory)})"
            ),
        )
    )
    gpu = res.nvidia_gpu
    if gpu:
        if total.nvidia_gpu == 0:
            counts.append((0, f"{gpu} NVIDIA GPU (this machine has none)"))
        else:
            counts.append(
                (
                    math.floor(free.nvidia_gpu / gpu + eps),
                    (f"{gpu} NVIDIA GPU (free {max(free.nvidia_gpu, 0):g} of {total.nvidia_gpu})"),
                )
            )
    n, what = min(counts, key=lambda c: c[0])
    return max(0, int(n)), what


def preset_resources(p: Preset) -> Resources:
    return Resources(cpu=p.cpu, memory=p.memory, nvidia_gpu=p.nvidia_gpu)


def preset_counts(presets: Iterable[Preset], free: Free, total: Capacity) -> dict[str, int]:
    """How many jobs of each preset fit in ``free`` now (GET /jobs/capacity)."""
    return {p.name: fits(preset_resources(p), free, total)[0] for p in presets}
