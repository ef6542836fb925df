"""Helpers for the benchmarks: the commands compared, timing subprocesses (piped or on a pty),
stats, -X importtime parsing."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import termios
import time
from collections.abc import Sequence
from pathlib import Path

PY = sys.executable
APOLO_VERSION = "26.9.0"
APOLO_FLAGS = ["--disable-pypi-version-check", "--skip-stats"]  # always, on every apolo call


def neuro_command() -> list[str]:
    """The `neuro` console script of this interpreter's install (not a pyenv/asdf shim, which
    adds its own start-up), else the first on PATH, else `python -m neuro_cli`."""
    script = Path(sysconfig.get_path("scripts")) / "neuro"
    found = str(script) if script.exists() else shutil.which("neuro")
    return [found] if found else [PY, "-m", "neuro_cli"]


def apolo_command() -> list[str]:
    """The official client from its own venv ($NEURO_APOLO_VENV or the one the tests use),
    created on first use."""
    venv = Path(os.environ.get("NEURO_APOLO_VENV") or Path.home() / ".cache/neuro-tests/apolo-venv")
    exe = venv / "bin" / "apolo"
    if not exe.exists():
        print(f"creating {venv} with apolo-cli=={APOLO_VERSION} ...", flush=True)
        subprocess.run([PY, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"apolo-cli=={APOLO_VERSION}"], check=True
        )
    return [str(exe), *APOLO_FLAGS]


def time_piped(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds to run argv to completion, output to /dev/null (the piped, non-tty path)."""
    t0 = time.perf_counter()
    subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - t0


def run_tty(
    argv: Sequence[str],
    env: dict[str, str],
    stderr: int | object = subprocess.DEVNULL,
    cols: int = 120,
    rows: int = 40,
) -> float:
    """Seconds to run argv with stdin/stdout on a fresh pty (cols x rows), draining its output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=stderr)
    finally:
        os.close(slave)
    try:
        while True:
            try:
                if not os.read(master, 65536):
                    break
            except OSError:  # EIO: every writer of the pty is gone
                break
        code = proc.wait()
    finally:
        os.close(master)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise subprocess.CalledProcessError(code, list(argv))
    return elapsed


def stats(samples: Sequence[float]) -> dict[str, float]:
    """Median, p10, p90, min and max, in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    deciles = statistics.quantiles(ms, n=10, method="inclusive") if len(ms) > 1 else ms * 9
    return {
        "median": statistics.median(ms),
        "p10": deciles[0],
        "p90": deciles[-1],
        "min": ms[0],
        "max": ms[-1],
        "n": len(ms),
    }


def call(argv: Sequence[str], env: dict[str, str]) -> str:
    """Run argv, return its stdout; raise with its stderr if it fails."""
    r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def machine() -> dict[str, object]:
    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


Row = tuple[int, int, int, str]  # -X importtime: depth, self us, cumulative us, module


def importtime(argv: Sequence[str], env: dict[str, str], tty: bool = False) -> list[Row]:
    """Run argv, a `python -X importtime ...` command line, piped or on a pty; parse its stderr
    into (depth, self_us, cumulative_us, module) rows."""
    with tempfile.TemporaryFile("w+") as err:
        if tty:
            run_tty(argv, env, stderr=err)
        else:
            subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                check=True,
            )
        err.seek(0)
        text = err.read()
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cum_us, name = line[len("import time:") :].split("|", 2)
        name = name[1:]  # one space after the bar, then two per nesting level
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, int(self_us), int(cum_us), name.strip()))
    return rows


def _package_times(rows: list[Row]) -> tuple[dict, dict, dict, float]:
    """inclusive ms per top-level package (cumulative time of its import lines that have no
    ancestor in the package, so it counts whatever the package pulled in), exclusive ms (self
    time of its own modules), self ms per module, and the total (the top-level lines)."""
    inc: dict[str, float] = {}
    exc: dict[str, float] = {}
    ancestors: list[str] = []  # importtime prints children first: walk backwards
    for depth, self_us, cum_us, name in reversed(rows):
        del ancestors[depth:]
        top = name.split(".")[0]
        exc[top] = exc.get(top, 0.0) + self_us / 1000
        if all(a.split(".")[0] != top for a in ancestors):
            inc[top] = inc.get(top, 0.0) + cum_us / 1000
        ancestors.append(name)
    modules = {name: self_us / 1000 for _, self_us, _, name in rows}
    return inc, exc, modules, sum(cum for d, _, cum, _ in rows if d == 0) / 1000


def import_summary(
    runs: list[list[Row]],
    baseline_total_ms: float,
    wanted: Sequence[str],
    min_ms: float = 1.5,
    top: int = 6,
) -> dict[str, object]:
    """Medians over runs: per package (see _package_times), the slowest modules by self time,
    the import total and what it adds to the interpreter's own startup imports."""
    per_run = [_package_times(rows) for rows in runs]
    med = statistics.median

    def median_of(i: int, key: str) -> float:
        return med(r[i].get(key, 0.0) for r in per_run)

    exclusive = {p: median_of(1, p) for p in per_run[0][1]}
    shown = sorted(
        (p for p in exclusive if p in wanted or exclusive[p] >= min_ms),
        key=lambda p: -median_of(0, p),
    )
    modules = sorted(((median_of(2, m), m) for m in per_run[0][2]), reverse=True)[:top]
    total = med(r[3] for r in per_run)
    return {
        "total_ms": total,
        "beyond_startup_ms": total - baseline_total_ms,
        "packages": {
            p: {"inclusive_ms": median_of(0, p), "exclusive_ms": exclusive[p]} for p in shown
        },
        "slowest_modules_self_ms": {m: ms for ms, m in modules},
    }
