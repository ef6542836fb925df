"""Talking to running jobs, side by side in one run against one embedded local server:
port-forward throughput vs a direct loopback connection, keystroke round trip through attach
(and exec) vs a local pty, and what `top` streams cost the server.

    python3 bench/interactive.py [--mib 256] [--reps 9] [--keys 200] [--window 20]

Prints a table and writes bench/results/interactive.json.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import pty
import shutil
import signal
import site
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PY, call, machine, neuro_command, stats

RESULTS = Path(__file__).resolve().parent / "results" / "interactive.json"
HEADER = 16  # each connection starts with b"down N" or b"up N", padded to this many bytes
# the job of part 1: per connection, send N MiB ("down") or take N MiB and answer b"k" ("up")
SERVE = f"""
import socketserver, sys
MIB = bytes(1 << 20)
class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s, head = self.request, b""
        while len(head) < {HEADER}:
            if not (got := s.recv({HEADER} - len(head))):
                return  # a probe
            head += got
        op, n = head.split()
        if op == b"down":
            for _ in range(int(n)):
                s.sendall(MIB)
            return
        left, buf = int(n) << 20, bytearray(1 << 20)
        while left > 0 and (k := s.recv_into(buf)):
            left -= k
        s.sendall(b"k")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
# the job of part 2: a raw tty, so each byte reaches cat at once and only cat echoes it
CAT = "stty raw -echo && printf R && exec cat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    return False


def transfer(port: int, op: str, mib: int) -> float:
    """MiB/s of one connection: N MiB from the job ("down") or to it ("up", until its ack)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        t0 = time.perf_counter()
        s.sendall(f"{op} {mib}".encode().ljust(HEADER))
        if op == "down":
            got, buf = 0, bytearray(1 << 20)
            while k := s.recv_into(buf):
                got += k
        else:
            chunk = bytes(1 << 20)
            for _ in range(mib):
                s.sendall(chunk)
            got = (mib << 20) if s.recv(1) == b"k" else 0
        elapsed = time.perf_counter() - t0
    if got != mib << 20:
        raise RuntimeError(f"{op} through port {port}: {got} bytes, not {mib} MiB")
    return mib / elapsed


def throughput(
    job_port: int, fwd_port: int, mib: int, reps: int, procs: dict[str, psutil.Process]
) -> dict:
    """A warm-up, then `reps` rounds of direct and forwarded, down and up, interleaved; and the
    CPU time that `procs` (the server, port-forward) spend per MiB on each way."""
    ways = {
        f"{op} {via}": (port, op)
        for op in ("down", "up")
        for via, port in (("direct", job_port), ("forwarded", fwd_port))
    }
    samples: dict[str, list[float]] = {w: [] for w in ways}
    cpu = {w: dict.fromkeys(procs, 0.0) for w in ways}
    for rnd in range(-1, reps):
        for way, (port, op) in ways.items():
            before = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
            rate = transfer(port, op, mib if rnd >= 0 else 16)
            if rnd >= 0:
                samples[way].append(rate)
                for n, p in procs.items():
                    cpu[way][n] += sum(p.cpu_times()[:2]) - before[n]
    return {
        w: {
            "median": statistics.median(s),
            "min": min(s),
            "max": max(s),
            "samples_mib_s": [round(x, 1) for x in s],
            "cpu_ms_per_mib": {n: 1000 * c / (mib * reps) for n, c in cpu[w].items()},
        }
        for w, s in samples.items()
    }


async def round_trips(write, read, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Wait for the b"R" the job prints once its tty is raw; then, n times, send one byte and
    time until its echo is back (after 5 bytes of warm-up)."""

    async def read_until(want: bytes) -> None:
        buf = b""
        while want not in buf:
            buf += await read()

    await read_until(b"R")
    samples = []
    for i in range(n + 5):
        key = bytes([97 + i % 26])
        t0 = time.perf_counter()
        await write(key)
        await read_until(key)
        if i >= 5:
            samples.append(time.perf_counter() - t0)
    return samples


def local_pty(n: int) -> list[float]:
    """The same round trip on a local pty, with `cat` as its child: the floor."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        ["sh", "-c", CAT], stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)

    async def write(b: bytes) -> None:
        os.write(master, b)

    async def read() -> bytes:
        return os.read(master, 1024)  # blocking: the loop has nothing else to do

    try:
        return asyncio.run(round_trips(write, read, n))
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


async def sdk_round_trips(cfg: Path, job: str, n: int) -> dict[str, list[float]]:
    """Attached to the TTY job (its output so far replayed, for the b"R"), then exec'd beside
    it on a TTY of its own."""
    import neuro_sdk

    client = await neuro_sdk.Factory(cfg).get()
    out = {}
    try:
        for name, session in (
            ("attach", client.jobs.attach(job, stdin=True, stdout=True, tty=True, logs=True)),
            ("exec", client.jobs.exec(job, ["sh", "-c", CAT], tty=True, stdin=True)),
        ):
            async with session as stream:

                async def read(stream=stream, name=name) -> bytes:  # type: ignore[no-untyped-def]
                    if (msg := await stream.read_out()) is None:
                        raise RuntimeError(f"{name}: the stream ended")
                    return msg.data

                out[name] = await round_trips(stream.write_in, read, n)
    finally:
        await client.close()
    return out


async def top_load(cfg: Path, server_pid: int, jobs: list[str], window: float) -> dict:
    """Server CPU over `window` s with 0, 1 and 10 `top` streams open (one per sleep job)."""
    import neuro_sdk

    server = psutil.Process(server_pid)
    client = await neuro_sdk.Factory(cfg).get()
    count = [0]

    async def consume(job: str) -> None:
        async with client.jobs.top(job) as samples:
            async for _ in samples:
                count[0] += 1

    out = {}
    try:
        for n in (0, 1, 10):
            tasks = [asyncio.create_task(consume(j)) for j in jobs[:n]]
            await asyncio.sleep(2)  # connected, first samples in (the first measures 0.25 s)
            c0, t0, w0 = count[0], sum(server.cpu_times()[:2]), time.perf_counter()
            await asyncio.sleep(window)
            c1, t1, w1 = count[0], sum(server.cpu_times()[:2]), time.perf_counter()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            out[f"{n} streams"] = {
                "server_cpu_pct": 100 * (t1 - t0) / (w1 - w0),
                "samples": c1 - c0,
                "window_s": w1 - w0,
            }
    finally:
        await client.close()
    idle = out["0 streams"]["server_cpu_pct"]
    for v in out.values():
        if v["samples"]:  # server CPU per sample beyond idle
            v["cpu_ms_per_sample"] = (
                (v["server_cpu_pct"] - idle) * 10 * v["window_s"] / v["samples"]
            )
    return out


async def stats_cost(jobs_dir: Path, job: str, calls: int) -> dict:
    """ProcessRuntime.stats() of a sleep job, in this process: wall ms per call, and the CPU of
    all calls (threads included) per call."""
    from neuro_server.runtime.process import ProcessRuntime

    rt = ProcessRuntime(jobs_dir)
    if await rt.stats(job) is None:  # the first call measures over stats_interval
        raise RuntimeError(f"no stats for {job}")
    walls, cpu0 = [], time.process_time()
    for _ in range(calls):
        t0 = time.perf_counter()
        await rt.stats(job)
        walls.append(time.perf_counter() - t0)
    return {**stats(walls), "cpu_ms_per_call": (time.process_time() - cpu0) * 1000 / calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256, help="MiB per connection [256]")
    ap.add_argument("--reps", type=int, default=9, help="connections per way [9]")
    ap.add_argument("--keys", type=int, default=200, help="keystrokes per path [200]")
    ap.add_argument("--window", type=float, default=20, help="seconds per top load [20]")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the cleanup below runs

    neuro = neuro_command()
    tmp = Path(tempfile.mkdtemp(prefix="neuro-bench-"))
    home, cfg, log = tmp / "home", tmp / "neuro", tmp / "port-forward.log"
    home.mkdir()
    (cfg / "server").mkdir(parents=True, mode=0o700)
    (cfg / "server" / "server.toml").write_text(
        '[server]\nruntime = "process"\n[resources]\ncpu = 64\nmemory = "256GiB"\n'
    )
    (tmp / "serve.py").write_text(SERVE)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "NEURO_CONFIG": str(cfg),
        "PYTHONUSERBASE": site.getuserbase(),
    }
    jobs: list[str] = []
    forward: subprocess.Popen[bytes] | None = None

    def run(*argv: str) -> str:
        jobs.append(call([*neuro, "run", "-q", "--detach", *argv], env).strip())
        return jobs[-1]

    try:
        call([*neuro, "server", "start"], env)
        info = json.loads((cfg / "server" / "server.json").read_text())
        job_port, fwd_port = free_port(), free_port()
        server_job = run("ubuntu", "--", PY, str(tmp / "serve.py"), str(job_port))
        cat_job = run("-t", "ubuntu", "--", "sh", "-c", CAT)
        sleepers = [run("ubuntu", "--", "sleep", "3600") for _ in range(10)]
        wait_for(lambda: listening(job_port), f"the job {server_job} to listen on {job_port}")
        with open(log, "wb") as f:
            forward = subprocess.Popen(
                [*neuro, "port-forward", server_job, f"{fwd_port}:{job_port}"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=f,
            )
        wait_for(
            lambda: b"Press Ctrl-C" in log.read_bytes() or forward.poll() is not None,
            "neuro port-forward",
        )
        if forward.poll() is not None:
            raise RuntimeError(f"neuro port-forward: {log.read_text()}")
        print(
            f"server {info['url']} (pid {info['pid']}); {len(jobs)} jobs; {os.cpu_count()} CPUs",
            flush=True,
        )
        procs = {
            "server": psutil.Process(int(info["pid"])),
            "port-forward": psutil.Process(forward.pid),
        }
        rates = throughput(job_port, fwd_port, args.mib, args.reps, procs)
        keys = {
            "local pty": local_pty(args.keys),
            **asyncio.run(sdk_round_trips(cfg, cat_job, args.keys)),
        }
        top = asyncio.run(top_load(cfg, int(info["pid"]), sleepers, args.window))
        stats_call = asyncio.run(stats_cost(cfg / "server" / "jobs", sleepers[0], 200))
    finally:
        cleanup(neuro, env, jobs, forward, tmp)

    keys_ms = {
        k: {**stats(v), "samples_ms": [round(x * 1000, 3) for x in v]} for k, v in keys.items()
    }
    figures = analyse(rates, keys_ms, top)
    report(args, rates, keys_ms, top, stats_call, figures)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": machine(),
                "args": vars(args),
                "neuro_command": neuro,
                "throughput_mib_s": rates,
                "keystroke_ms": keys_ms,
                "top": top,
                "runtime_stats_ms": stats_call,
                "figures": figures,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")


def analyse(rates: dict, keys: dict, top: dict) -> dict:
    """The headline figures, against their targets."""

    def ratio(op: str) -> float:
        return rates[f"{op} forwarded"]["median"] / rates[f"{op} direct"]["median"]

    def added(path: str) -> float:
        return keys[path]["median"] - keys["local pty"]["median"]

    top_cpu = {n: t["server_cpu_pct"] for n, t in top.items()}
    figures = {
        name: {"value": value, "target": target}
        for name, value, target in (
            ("forwarded / direct, down", ratio("down"), ">= 0.30"),
            ("forwarded / direct, up", ratio("up"), None),
            ("attach - local pty, median ms", added("attach"), "< 5"),
            ("exec - local pty, median ms", added("exec"), None),
            (
                "server CPU, 10 top streams - none, % of a core",
                top_cpu["10 streams"] - top_cpu["0 streams"],
                None,
            ),
        )
    }
    for f in (f for f in figures.values() if f["target"]):
        op, limit = f["target"].split()
        f["met"] = f["value"] >= float(limit) if op == ">=" else f["value"] < float(limit)
    return figures


def cleanup(
    neuro: list[str],
    env: dict[str, str],
    jobs: list[str],
    forward: subprocess.Popen[bytes] | None,
    tmp: Path,
) -> None:
    """Stop port-forward, kill the jobs, stop the server, remove the temp dir: whatever happened."""
    if forward is not None and forward.poll() is None:
        forward.send_signal(signal.SIGINT)
        try:
            forward.wait(10)
        except subprocess.TimeoutExpired:
            forward.kill()
            forward.wait()
    for argv in ([[*neuro, "kill", *jobs]] if jobs else []) + [[*neuro, "server", "stop"]]:
        try:
            call(argv, env)
        except Exception as e:  # noqa: BLE001 - go on cleaning up
            print(f"cleanup: {e}", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)


def report(
    args: argparse.Namespace, rates: dict, keys: dict, top: dict, stats_call: dict, figures: dict
) -> None:
    print(
        f"\n{f'throughput, {args.mib} MiB a connection':<36}{'median':>9}{'min':>9}{'max':>9}"
        f"   (MiB/s, {args.reps} runs); CPU ms per MiB: server, port-forward"
    )
    for way, r in rates.items():
        cpu = ", ".join(f"{ms:.2f}" for ms in r["cpu_ms_per_mib"].values())
        print(f"{way:<36}{r['median']:9.1f}{r['min']:9.1f}{r['max']:9.1f}   {cpu}")
    print(
        f"\n{'keystroke round trip':<36}{'median':>9}{'p10':>9}{'p90':>9}{'max':>9}"
        f"   (ms, {args.keys} keys)"
    )
    for path, k in keys.items():
        print(f"{path:<36}{k['median']:9.3f}{k['p10']:9.3f}{k['p90']:9.3f}{k['max']:9.3f}")
    print(
        f"\n{'server CPU with top streams':<36}{'% core':>9}{'samples':>9}{'ms/sample':>10}"
        f"   ({args.window:g} s each)"
    )
    for n, t in top.items():
        per = f"{t['cpu_ms_per_sample']:10.2f}" if "cpu_ms_per_sample" in t else ""
        print(f"{n:<36}{t['server_cpu_pct']:9.2f}{t['samples']:9d}{per}")
    print(
        f"runtime.stats() in process: {stats_call['median']:.2f} ms wall (median), "
        f"{stats_call['cpu_ms_per_call']:.2f} ms CPU per call"
    )
    print(f"\n{'figure':<52}{'value':>9}  target")
    for name, f in figures.items():
        verdict = {True: "met", False: "MISSED"}.get(f.get("met"), "")
        print(f"{name:<52}{f['value']:9.2f}  {f['target'] or ''} {verdict}")


if __name__ == "__main__":
    main()
