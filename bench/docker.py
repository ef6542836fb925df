"""The docker runtime, side by side with Podman in one run: `neuro run --detach` against
`podman run -d` (start-up latency), and `neuro logs` against `podman logs` on a 200 MiB log
(throughput, each on a finished job/container that wrote the same 200 MiB); the CLI's own fixed cost for context.

    python3 bench/docker.py [--runs N] [--log-runs N]

Needs Podman's Docker-compatible API (`bash .ci/podman-setup.sh`, which prints the socket) and
the image localhost/busybox:latest.  Prints a table and writes bench/results/docker.json.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PY, call, machine, neuro_command, stats, time_piped

RESULTS = Path(__file__).resolve().parent / "results" / "docker.json"
SOCK = os.environ.get("NEURO_PODMAN_SOCK", "/run/neuro-podman.sock")
IMAGE = "localhost/busybox:latest"
LOG_BYTES = 200 * 1024 * 1024
LOG_CMD = (
    "yes 0123456789012345678901234567890123456789012345678901234567890123456789"
    f" | head -c {LOG_BYTES}"
)
BENCH_LABEL = "neuro-bench=docker"  # on the containers this script starts with podman itself
TARGET_MS = 150.0


def timed_out(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds to run argv to completion, and its stdout (stripped)."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return elapsed, r.stdout.strip()


def run_latency(
    neuro: list[str], env: dict[str, str], runs: int, jobs: list[str], ctrs: list[str]
) -> dict:
    """Warm up once, then `runs` rounds of `neuro run --detach` and `podman run -d`, the first
    of the two alternating each round."""
    cmds = {
        "neuro run --detach": [*neuro, "run", "-q", "--detach", IMAGE, "--", "sleep", "300"],
        "podman run -d": ["podman", "run", "-d", "--label", BENCH_LABEL, IMAGE, "sleep", "300"],
    }
    names = list(cmds)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rnd in range(-1, runs):
        k = rnd % 2
        for name in names[k:] + names[:k]:
            t, out = timed_out(cmds[name], env)
            (jobs if name.startswith("neuro") else ctrs).append(out.split()[-1])
            if rnd >= 0:
                samples[name].append(t)
    return {
        n: {**stats(s), "samples_ms": [round(x * 1000, 2) for x in s]} for n, s in samples.items()
    }


def fixed_cost(neuro: list[str], env: dict[str, str], runs: int) -> dict:
    cmds = {
        "python -c pass": [PY, "-c", "pass"],
        "neuro --help": [*neuro, "--help"],
        "podman --version": ["podman", "--version"],
    }
    samples: dict[str, list[float]] = {n: [] for n in cmds}
    for rnd in range(-1, runs):
        for name, argv in cmds.items():
            t = time_piped(argv, env)
            if rnd >= 0:
                samples[name].append(t)
    return {n: stats(s) for n, s in samples.items()}


def logs_throughput(
    neuro: list[str], env: dict[str, str], runs: int, jobs: list[str], ctrs: list[str]
) -> dict:
    """A job writes LOG_BYTES; so does a container started with `podman run -d`, with the same
    image and command (the docker runtime removes a job's container once its output is complete,
    so `podman logs` cannot read the job's own container after it finished).  Once both have
    exited, `neuro logs JOB` and `podman logs CONTAINER`, alternately, `runs` times each, output
    to /dev/null."""
    job = call([*neuro, "run", "-q", "--detach", IMAGE, "--", "sh", "-c", LOG_CMD], env).strip()
    jobs.append(job)
    ctr = call(
        ["podman", "run", "-d", "--label", BENCH_LABEL, IMAGE, "sh", "-c", LOG_CMD], env
    ).strip()
    ctrs.append(ctr)
    seen = call(["podman", "ps", "-a", "--filter", f"label=neuro.job-id={job}", "-q"], env).split()
    call(["podman", "wait", ctr], env)
    deadline = time.monotonic() + 300
    while job not in call([*neuro, "ps", "-s", "succeeded", "-q"], env).split():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the log job {job} did not succeed in 300s")
        time.sleep(0.5)
    cmds = {"neuro logs": [*neuro, "logs", job], "podman logs": ["podman", "logs", ctr]}
    sizes = {}
    for name, argv in cmds.items():  # also the warm-up
        r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        sizes[name] = len(r.stdout) + len(r.stderr)
    samples: dict[str, list[float]] = {n: [] for n in cmds}
    for rnd in range(runs):
        order = list(cmds) if rnd % 2 == 0 else list(cmds)[::-1]
        for name in order:
            samples[name].append(time_piped(cmds[name], env))
    out: dict = {
        "job": job,
        "job_container_while_running": seen,
        "podman_container": ctr,
        "log_bytes": LOG_BYTES,
        "podman_log_driver": call(
            ["podman", "inspect", "-f", "{{.HostConfig.LogConfig.Type}}", ctr], env
        ).strip(),
    }
    for name, s in samples.items():
        st = stats(s)
        out[name] = {
            **st,
            "samples_ms": [round(x * 1000, 1) for x in s],
            "bytes_out": sizes[name],
            "mib_s_median": LOG_BYTES / 2**20 / (st["median"] / 1000),
            "mib_s_best": LOG_BYTES / 2**20 / (st["min"] / 1000),
        }
    return out


def cleanup(
    neuro: list[str], env: dict[str, str], jobs: list[str], ctrs: list[str], tmp: Path
) -> None:
    """Kill the jobs, remove their containers and ours, stop the server, delete the temp dir;
    every step runs whatever the others do."""

    def quiet(argv: list[str]) -> str:
        try:
            return subprocess.run(
                argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    for i in range(0, len(jobs), 20):
        quiet([*neuro, "kill", *jobs[i : i + 20]])
    for job in jobs:
        ctrs.extend(
            quiet(["podman", "ps", "-a", "--filter", f"label=neuro.job-id={job}", "-q"]).split()
        )
    ctrs.extend(quiet(["podman", "ps", "-a", "--filter", f"label={BENCH_LABEL}", "-q"]).split())
    if ctrs:
        quiet(["podman", "rm", "-f", "-t", "0", *sorted(set(ctrs))])
    # the jobs' networks (one per user) are labelled with the server's jobs directory
    nets = quiet(
        [
            "podman",
            "network",
            "ls",
            "-q",
            "--filter",
            f"label=neuro.data-dir={tmp / 'neuro' / 'server' / 'jobs'}",
        ]
    ).split()
    if nets:
        quiet(["podman", "network", "rm", "-f", *nets])
    quiet([*neuro, "server", "stop"])
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="timed starts per command [10]")
    ap.add_argument("--log-runs", type=int, default=3, help="timed log reads per command [3]")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the cleanup below runs

    neuro = neuro_command()
    tmp = Path(tempfile.mkdtemp(prefix="neuro-bench-docker-"))
    home, cfg = tmp / "home", tmp / "neuro"
    home.mkdir()
    (cfg / "server").mkdir(parents=True, mode=0o700)
    (cfg / "server" / "server.toml").write_text(
        f'[server]\nruntime = "docker"\ndocker_host = "unix://{SOCK}"\n'
        '[resources]\ncpu = 64\nmemory = "256GiB"\n'
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NEURO_CONFIG": str(cfg),
        "PYTHONUSERBASE": site.getuserbase(),
    }
    jobs: list[str] = []
    ctrs: list[str] = []
    try:
        call([*neuro, "server", "start"], env)
        print(
            f"docker runtime on unix://{SOCK}; {args.runs} starts each, {args.log_runs} log"
            f" reads each; neuro is {' '.join(neuro)}",
            flush=True,
        )
        fixed = fixed_cost(neuro, env, args.runs)
        start = run_latency(neuro, env, args.runs, jobs, ctrs)
        logs = logs_throughput(neuro, env, args.log_runs, jobs, ctrs)
    finally:
        cleanup(neuro, env, jobs, ctrs, tmp)

    overhead = start["neuro run --detach"]["median"] - start["podman run -d"]["median"]
    print(f"\n{'command':<22} {'median ms':>10} {'p10':>8} {'p90':>8}")
    for name, s in {**fixed, **start}.items():
        print(f"{name:<22} {s['median']:>10.1f} {s['p10']:>8.1f} {s['p90']:>8.1f}")
    print(
        f"\noverhead of neuro run --detach over podman run -d: {overhead:.1f} ms"
        f" (target < {TARGET_MS:.0f} ms: {'met' if overhead < TARGET_MS else 'NOT met'})"
    )
    print(
        f"\nlogs of a finished {LOG_BYTES // 2**20} MiB job / container, to /dev/null"
        f" (podman log driver {logs['podman_log_driver']}):"
    )
    for name in ("neuro logs", "podman logs"):
        s = logs[name]
        print(
            f"{name:<14} median {s['median']:8.0f} ms  {s['mib_s_median']:7.1f} MiB/s"
            f"  (best {s['mib_s_best']:.1f})  bytes {s['bytes_out']}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": machine(),
                "runs": args.runs,
                "log_runs": args.log_runs,
                "neuro_command": neuro,
                "docker_host": f"unix://{SOCK}",
                "image": IMAGE,
                "podman": call(["podman", "--version"], env).strip(),
                "fixed_cost_ms": fixed,
                "start_ms": start,
                "overhead_ms": {
                    "value": overhead,
                    "target": f"< {TARGET_MS:.0f}",
                    "met": overhead < TARGET_MS,
                },
                "logs": logs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
