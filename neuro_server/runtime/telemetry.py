"""What a process-runtime job uses: CPU and memory from its cgroup (v1: cpuacct.usage,
memory.usage_in_bytes less the page cache; v2: cpu.stat, memory.current less file pages), or,
without a cgroup, from psutil over its process tree; GPU use through NVML for the devices where
the job's processes run.

The NVML layer takes any module with pynvml's API, so tests can pass a fake:

    gpus = Nvml()                 # imports pynvml (package nvidia-ml-py) when first used
    gpus = Nvml(module=fake)      # a fake: nvmlInit, nvmlDeviceGetCount, ...
    gpus = Nvml(module=False)     # no GPU telemetry
    duty, memory = gpus.usage({1234, 1240})   # (None, None): no NVML, no driver, or no GPU used
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterable
from typing import Any

from .base import Capacity
from .cgroups import JobCgroup


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _stat_value(text: str, key: str) -> int | None:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def cgroup_usage(cg: JobCgroup) -> tuple[int | None, int | None]:
    """``(CPU time in ns, memory in bytes)`` of the cgroup; None where it cannot be read."""
    cpu_ns = memory = None
    if cg.version == "v1":
        acct = cg.dirs.get("cpuacct")
        if acct:
            with contextlib.suppress(OSError, ValueError):
                cpu_ns = int(_read(os.path.join(acct, "cpuacct.usage")))
        mem = cg.dirs.get("memory")
        if mem:
            try:
                usage = int(_read(os.path.join(mem, "memory.usage_in_bytes")))
                stat = _read(os.path.join(mem, "memory.stat"))
                cache = _stat_value(stat, "total_cache")
                if cache is None:
                    cache = _stat_value(stat, "cache") or 0
                memory = max(0, usage - cache)
            except (OSError, ValueError):
                pass
    else:
        d = cg.dirs.get("unified")
        if d:
            try:
                usec = _stat_value(_read(os.path.join(d, "cpu.stat")), "usage_usec")
                cpu_ns = None if usec is None else usec * 1000
            except OSError:
                pass
            try:
                current = int(_read(os.path.join(d, "memory.current")))
                file_pages = _stat_value(_read(os.path.join(d, "memory.stat")), "file") or 0
                memory = max(0, current - file_pages)
            except (OSError, ValueError):
                pass
    return cpu_ns, memory


def tree_pids(root_pid: int) -> set[int]:
    """The descendants of ``root_pid`` (not itself): the job, its children, exec'd processes."""
    import psutil  # type: ignore[import-untyped]  # (types-psutil: not a dependency)

    try:
        return {p.pid for p in psutil.Process(root_pid).children(recursive=True)}
    except psutil.Error:
        return set()


def tree_usage(pids: Iterable[int]) -> tuple[int, int]:
    """``(CPU time in ns, resident memory in bytes)`` summed over ``pids`` (CPU time includes
    that of their reaped children, so it does not drop when a child ends)."""
    import psutil

    cpu = 0.0
    rss = 0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                rss += p.memory_info().rss
        except psutil.Error:
            continue
    return int(cpu * 1e9), rss


class Nvml:
    """GPU duty cycle and memory of a set of pids, through NVML (thread-safe, lazy)."""

    def __init__(self, module: Any = None) -> None:
        self._module = module
        self._lib: Any = None
        self._tried = False
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    if self._module is False:
                        raise LookupError("NVML is turned off")
                    lib = self._module or importlib.import_module("pynvml")
                    lib.nvmlInit()
                    self._lib = lib
                except Exception:  # noqa: BLE001 - no module, no driver, no device: no GPUs
                    self._lib = None
            return self._lib

    def available(self) -> bool:
        return self._load() is not None

    def usage(self, pids: set[int]) -> tuple[int | None, int | None]:
        """``(duty cycle in percent, memory in bytes)`` over the devices where any of ``pids``
        runs: the mean utilization of those devices and the memory those processes use there
        (the device's used memory when NVML does not tell per process).  (None, None) when
        none of them uses a GPU or NVML is not there."""
        lib = self._load()
        if lib is None or not pids:
            return None, None
        try:
            count = int(lib.nvmlDeviceGetCount())
        except Exception:  # noqa: BLE001
            return None, None
        duties: list[int] = []
        memory = 0
        found = False
        for i in range(count):
            handle = procs = None
            # a device or a figure that NVML fails to give is left out
            with contextlib.suppress(Exception):
                handle = lib.nvmlDeviceGetHandleByIndex(i)
                procs = lib.nvmlDeviceGetComputeRunningProcesses(handle)
            mine = [p for p in procs or () if getattr(p, "pid", None) in pids]
            if not mine:
                continue
            found = True
            with contextlib.suppress(Exception):
                duties.append(int(lib.nvmlDeviceGetUtilizationRates(handle).gpu))
            used = [p.usedGpuMemory for p in mine if isinstance(p.usedGpuMemory, int)]
            if used:
                memory += sum(used)
            else:
                with contextlib.suppress(Exception):
                    memory += int(lib.nvmlDeviceGetMemoryInfo(handle).used)
        if not found:
            return None, None
        duty = round(sum(duties) / len(duties)) if duties else None
        return duty, memory


def machine_capacity(nvml: Nvml | None = None) -> Capacity:
    """All of this machine, as one node: its cores, its memory and the GPUs NVML sees."""
    import socket

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    gpus = 0
    lib = (nvml or Nvml())._load()
    if lib is not None:
        with contextlib.suppress(Exception):
            gpus = int(lib.nvmlDeviceGetCount())
    return Capacity.one_node(socket.gethostname(), float(os.cpu_count() or 1), memory, gpus)
