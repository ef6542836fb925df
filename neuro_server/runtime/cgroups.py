"""Per-job cgroups for the process runtime: cgroup v1 (one directory per controller) or v2.

Standard library only: the per-job supervisor imports this module, and it must start fast.

    cg, mem_by, cpu_by = setup("neuro", "job-1", memory=1 << 30, cpu=0.5, pids=4096)
    # cg.pids_limit: 4096 where pids.max could be written, else 0
    # in the job's child, before exec:  cg.join(os.getpid())
    # when the job is done:             cg.kill(); cg.oom_killed(137); cg.remove()
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time

ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")
V2_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000  # the kernel refuses less
DEFAULT_PIDS = 4096  # processes and threads of one job: a fork loop stops there, not the host


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _is_v1(root: str) -> bool:
    return any(os.path.isfile(os.path.join(root, c, "cgroup.procs")) for c in ("memory", "cpu"))


def probe(root: str = ROOT) -> tuple[str | None, tuple[str, ...]]:
    """Which cgroup version could limit what here, without creating anything.

    Returns e.g. ``("v1", ("memory", "cpu"))`` or ``(None, ())`` when no cgroup is writable.
    """
    if _is_v1(root):
        found = tuple(
            c
            for c, probe_file in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us"))
            if os.path.isfile(os.path.join(root, c, probe_file))
            and os.access(os.path.join(root, c), os.W_OK)
        )
        return ("v1", found) if found else (None, ())
    try:
        available = _read(os.path.join(root, "cgroup.controllers")).split()
    except OSError:
        return None, ()
    found = tuple(c for c in ("memory", "cpu") if c in available)
    if found and os.access(root, os.W_OK):
        return "v2", found
    return None, ()


def pids_writable(root: str = ROOT) -> str | None:
    """How a job's number of processes can be limited here ("cgroup v1"/"cgroup v2"), or
    None."""
    if _is_v1(root):
        d = os.path.join(root, "pids")
        ok = os.path.isfile(os.path.join(d, "cgroup.procs")) and os.access(d, os.W_OK)
        return "cgroup v1" if ok else None
    try:
        available = _read(os.path.join(root, "cgroup.controllers")).split()
    except OSError:
        return None
    return "cgroup v2" if "pids" in available and os.access(root, os.W_OK) else None


def fmt_bytes(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= 1 << 20:
        mib = n / (1 << 20)
        return f"{mib:.0f} MiB" if mib == int(mib) else f"{mib:.1f} MiB"
    return f"{n} bytes"


def describe(
    mem_by: str | None,
    cpu_by: str | None,
    memory: int | None = None,
    cpu: float | None = None,
    *,
    pids: int | None = None,
    pids_by: str | None = None,
) -> str:
    """Plain words for what is enforced and how.

    With amounts (a job): "memory 1.0 GiB, cpu 0.5 and pids 4096 enforced by cgroup v1";
    without (the machine): "memory enforced by rlimit (RLIMIT_DATA); cpu not enforced (...)".
    A zero amount means "not requested" and is left out; ``pids`` None: not mentioned (a
    runtime that does not limit them), 0: the machine's words (no amount).
    """
    items: list[tuple[str, str | None]] = []
    if memory is None or memory > 0:
        items.append(("memory" + (f" {fmt_bytes(memory)}" if memory else ""), mem_by))
    if cpu is None or cpu > 0:
        items.append(("cpu" + (f" {cpu:g}" if cpu else ""), cpu_by))
    if pids is not None:
        items.append(("pids" + (f" {pids}" if pids else ""), pids_by))
    groups: dict[str | None, list[str]] = {}
    for label, by in items:
        groups.setdefault(by, []).append(label)
    parts = [_and(labels) + f" enforced by {by}" for by, labels in groups.items() if by]
    if None in groups:
        parts.append(_and(groups[None]) + " not enforced (no writable cgroup)")
    return "; ".join(parts) or "no limits requested"


def _and(labels: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else labels[0]


class JobCgroup:
    """The cgroup directories of one job: ``{controller: dir}`` (v1) or ``{"unified": dir}`` (v2)."""

    def __init__(self, version: str, dirs: dict[str, str]) -> None:
        self.version = version
        self.dirs = dirs
        self.pids_limit = 0  # pids.max as set up (0: not limited)

    @classmethod
    def find(cls, parent: str, name: str, root: str = ROOT) -> JobCgroup | None:
        """The job's cgroup directories that exist now (to clean up after a lost supervisor)."""
        if _is_v1(root):
            dirs = {c: os.path.join(root, c, parent, name) for c in V1_CONTROLLERS}
            version = "v1"
        else:
            dirs = {"unified": os.path.join(root, parent, name)}
            version = "v2"
        dirs = {c: d for c, d in dirs.items() if os.path.isdir(d)}
        return cls(version, dirs) if dirs else None

    def join(self, pid: int) -> None:
        for d in self.dirs.values():
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def pids(self) -> set[int]:
        pids: set[int] = set()
        for d in self.dirs.values():
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split())
        return pids

    def signal(self, signum: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """SIGKILL everything in the cgroup; frozen first so that nothing forks meanwhile."""
        unified = self.dirs.get("unified")
        if unified and os.path.exists(os.path.join(unified, "cgroup.kill")):
            try:
                _write(os.path.join(unified, "cgroup.kill"), "1")
                return
            except OSError:
                pass
        frozen = self._freeze(True)
        try:
            self.signal(signal.SIGKILL)
        finally:
            if frozen:
                self._freeze(False)

    def _freeze(self, on: bool, timeout: float = 0.5) -> bool:
        if "freezer" in self.dirs:
            path = state = os.path.join(self.dirs["freezer"], "freezer.state")
            value = expect = "FROZEN" if on else "THAWED"
        elif "unified" in self.dirs:
            path = os.path.join(self.dirs["unified"], "cgroup.freeze")
            state = os.path.join(self.dirs["unified"], "cgroup.events")
            value = "1" if on else "0"
            expect = f"frozen {value}"
        else:
            return False
        try:
            _write(path, value)
            deadline = time.monotonic() + timeout
            while expect not in _read(state) and time.monotonic() < deadline:
                time.sleep(0.002)
            return True
        except OSError:
            return False

    def oom_killed(self, exit_code: int) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""
        if "memory" in self.dirs:
            d = self.dirs["memory"]
            try:
                for line in _read(os.path.join(d, "memory.oom_control")).splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value) > 0
                # older kernels have no oom_kill count: a hit limit and a SIGKILL say as much
                return exit_code == 137 and int(_read(os.path.join(d, "memory.failcnt"))) > 0
            except (OSError, ValueError):
                return False
        if "unified" in self.dirs:
            try:
                events = _read(os.path.join(self.dirs["unified"], "memory.events"))
            except OSError:
                return False
            for line in events.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        return False

    def remove(self, timeout: float = 2.0) -> list[str]:
        """rmdir the job's directories (retrying while the last tasks go); returns those left."""
        left = []
        deadline = time.monotonic() + timeout
        for d in self.dirs.values():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                        left.append(d)
                        break
                    time.sleep(0.01)
        return left


def setup(
    parent: str, name: str, memory: int, cpu: float, root: str = ROOT, *, pids: int = 0
) -> tuple[JobCgroup | None, str | None, str | None]:
    """Create the job's cgroup where writable and set its limits.

    Returns ``(cgroup or None, how memory is enforced or None, how cpu is enforced or None)``,
    e.g. ``(cg, "cgroup v1", "cgroup v1")``; ``pids`` > 0 limits its processes and threads
    (``cg.pids_limit`` says whether it could).  A leftover cgroup of the same name (a lost
    earlier run) is emptied first.
    """
    if _is_v1(root):
        cg, mem_by, cpu_by = _setup_v1(parent, name, memory, cpu, root)
    else:
        cg, mem_by, cpu_by = _setup_v2(parent, name, memory, cpu, root)
    if cg is not None and pids > 0:
        d = cg.dirs.get("pids") or cg.dirs.get("unified")
        try:
            if d is None:
                raise OSError("no pids controller")
            _write(os.path.join(d, "pids.max"), str(pids))
            cg.pids_limit = pids
        except OSError:
            pass
    return cg, mem_by, cpu_by


def _setup_v1(
    parent: str, name: str, memory: int, cpu: float, root: str
) -> tuple[JobCgroup | None, str | None, str | None]:
    dirs = {}
    for c in V1_CONTROLLERS:
        if not os.path.isfile(os.path.join(root, c, "cgroup.procs")):
            continue
        d = os.path.join(root, c, parent, name)
        try:
            os.makedirs(d, exist_ok=True)
        except OSError:
            continue
        dirs[c] = d
    if not dirs:
        return None, None, None
    cg = JobCgroup("v1", dirs)
    if cg.pids():
        cg.kill()
    mem_by = cpu_by = None
    if memory > 0 and "memory" in dirs:
        try:
            _write(os.path.join(dirs["memory"], "memory.limit_in_bytes"), str(memory))
            mem_by = "cgroup v1"
        except OSError:
            pass
        memsw = os.path.join(dirs["memory"], "memory.memsw.limit_in_bytes")
        if mem_by and os.path.exists(memsw):
            # no swapping around the limit (as docker does with --memory-swap = --memory)
            with contextlib.suppress(OSError):
                _write(memsw, str(memory))
    if cpu > 0 and "cpu" in dirs:
        try:
            try:
                period = int(_read(os.path.join(dirs["cpu"], "cpu.cfs_period_us"))) or CPU_PERIOD_US
            except (OSError, ValueError):
                period = CPU_PERIOD_US
            quota = max(MIN_CPU_QUOTA_US, round(cpu * period))
            _write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), str(quota))
            cpu_by = "cgroup v1"
        except OSError:
            pass
    return cg, mem_by, cpu_by


def _setup_v2(
    parent: str, name: str, memory: int, cpu: float, root: str
) -> tuple[JobCgroup | None, str | None, str | None]:
    try:
        available = _read(os.path.join(root, "cgroup.controllers")).split()
    except OSError:
        return None, None, None
    wanted = [c for c in V2_CONTROLLERS if c in available]
    if not {"memory", "cpu"} & set(wanted):
        return None, None, None
    pdir = os.path.join(root, parent)
    jdir = os.path.join(pdir, name)
    try:
        os.makedirs(pdir, exist_ok=True)
        for d in (root, pdir):
            for c in wanted:
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, "cgroup.subtree_control"), f"+{c}")
        os.makedirs(jdir, exist_ok=True)
    except OSError:
        return None, None, None
    cg = JobCgroup("v2", {"unified": jdir})
    if cg.pids():
        cg.kill()
    mem_by = cpu_by = None
    if memory > 0 and "memory" in wanted:
        try:
            _write(os.path.join(jdir, "memory.max"), str(memory))
            mem_by = "cgroup v2"
        except OSError:
            pass
        if mem_by and os.path.exists(os.path.join(jdir, "memory.swap.max")):
            with contextlib.suppress(OSError):
                _write(os.path.join(jdir, "memory.swap.max"), "0")
    if cpu > 0 and "cpu" in wanted:
        quota = max(MIN_CPU_QUOTA_US, round(cpu * CPU_PERIOD_US))
        try:
            _write(os.path.join(jdir, "cpu.max"), f"{quota} {CPU_PERIOD_US}")
            cpu_by = "cgroup v2"
        except OSError:
            pass
    return cg, mem_by, cpu_by


def remove_parent(parent: str, root: str = ROOT) -> None:
    """rmdir the parent cgroup of all jobs where it is empty (tests use one parent each)."""
    dirs = [os.path.join(root, c, parent) for c in V1_CONTROLLERS] + [os.path.join(root, parent)]
    for d in dirs:
        with contextlib.suppress(OSError):
            os.rmdir(d)
