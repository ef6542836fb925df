"""Helpers for the benchmarks: timing subprocesses (piped or on a pty), stats, -X importtime."""

from __future__ import annotations

import fcntl
import os
import pty
import statistics
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Sequence


def time_piped(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds to run argv to completion, output to /dev/null (the piped, non-tty path)."""
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def run_tty(argv: Sequence[str], env: dict[str, str], stderr: int | object = subprocess.DEVNULL,
            cols: int = 120, rows: int = 40) -> float:
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
    return {"median": statistics.median(ms), "p10": deciles[0], "p90": deciles[-1],
            "min": ms[0], "max": ms[-1], "n": len(ms)}


def importtime(argv: Sequence[str], env: dict[str, str], tty: bool = False) -> list[tuple[int, int, int, str]]:
    """Run argv (a python command line) with -X importtime; (depth, self_us, cumulative_us, module)."""
    env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    with tempfile.TemporaryFile("w+") as err:
        if tty:
            run_tty(argv, env, stderr=err)
        else:
            subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=err, check=True)
        err.seek(0)
        text = err.read()
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|", 2)
        name = name[1:]  # one space after the bar, then two per nesting level
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, int(self_us), int(cum_us), name.strip()))
    return rows


def import_summary(runs: list[list[tuple[int, int, int, str]]], baseline_total_ms: float,
                   wanted: Sequence[str], min_ms: float = 2.0) -> dict[str, object]:
    """Medians over runs, per top-level package: inclusive ms (its own import line, so nested
    packages count too) and exclusive ms (self time of all its modules); and the import total
    (top-level lines) beyond what the interpreter imports at startup."""
    per_run = []
    for rows in runs:
        inc: dict[str, float] = {}
        exc: dict[str, float] = {}
        for _, self_us, cum_us, name in rows:
            top = name.split(".")[0]
            exc[top] = exc.get(top, 0.0) + self_us / 1000
            if name == top and top not in inc:
                inc[top] = cum_us / 1000
        total = sum(cum for depth, _, cum, _ in rows if depth == 0) / 1000
        per_run.append((total, inc, exc))
    med = statistics.median
    exclusive = {p: med(r[2].get(p, 0.0) for r in per_run) for p in per_run[0][2]}
    inclusive = {p: med(r[1].get(p, r[2].get(p, 0.0)) for r in per_run) for p in exclusive}
    shown = sorted((p for p in exclusive if p in wanted or exclusive[p] >= min_ms),
                   key=lambda p: -inclusive[p])
    total = med(r[0] for r in per_run)
    return {
        "total_ms": total,
        "beyond_startup_ms": total - baseline_total_ms,
        "packages": {p: {"inclusive_ms": inclusive[p], "exclusive_ms": exclusive[p]}
                     for p in shown},
    }

