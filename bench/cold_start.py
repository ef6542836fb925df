"""Cold start of the `neuro` CLI, side by side in one run: bare interpreter, click, `neuro --help`,
and `neuro ps` against the embedded local server vs the official client's `apolo ps` against the
same server, the other one-shot commands (status, kill, top --no-stream, logs of a finished job,
config show, job tags) and what each imports; then where `neuro ps` time goes (startup, imports,
request, rendering).

    python3 bench/cold_start.py [--runs N]

Prints a table and writes bench/results/cold_start.json.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
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
from _util import (
    PY,
    apolo_command,
    call,
    import_summary,
    importtime,
    machine,
    neuro_command,
    run_tty,
    stats,
    time_piped,
)

RESULTS = Path(__file__).resolve().parent / "results" / "cold_start.json"
ONESHOT = ("status", "kill", "top --no-stream", "logs", "config show", "job tags")
PACKAGES = (
    "click",
    "neuro_cli",
    "neuro_sdk",
    "aiohttp",
    "yarl",
    "multidict",
    "rich",
    "asyncio",
    "socket",
    "ssl",
)
# the modules that `neuro ps` (piped) imports, imported and nothing else (its request goes
# through the SDK's light transport, without an event loop: no asyncio, aiohttp or ssl)
PS_IMPORTS = (
    "import neuro_cli.main, neuro_cli.commands.ps, neuro_cli.embedded,"
    " neuro_cli.formatters.columns, neuro_sdk, socket"
)
# what a one-shot command should not import (and what each one does import is reported)
HEAVY = ("asyncio", "aiohttp", "ssl", "rich")
MODULES_PROBE = (
    "import json, os, sys\n"
    "sys.argv[0] = 'neuro'\n"
    "out = os.dup(1); os.dup2(os.open(os.devnull, os.O_WRONLY), 1)\n"
    "from neuro_cli.main import main\n"
    "try:\n    main(sys.argv[1:], fast_exit=False)\nexcept SystemExit:\n    pass\n"
    "os.write(out, json.dumps(sorted({m.split('.')[0] for m in sys.modules})).encode())\n"
)
IMPORTS_ONLY = "python -c '<ps imports>'"
IMPORTS_EXIT = "python -c '<ps imports>; os._exit(0)'"  # skips the interpreter's teardown


def seed_jobs(neuro: list[str], env: dict[str, str], running: list[str]) -> str:
    """10 finished jobs, then 5 running ones, whose ids go into `running` as they start; returns
    the id of a finished one (that printed a line)."""

    def start(cmd: list[str], n: int) -> list[str]:
        procs = [
            subprocess.Popen(
                [*neuro, "run", "-q", "--detach", "ubuntu", "--", *cmd],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        ids = [p.communicate()[0].strip() for p in procs]
        running.extend(i for i in ids if cmd[0] == "sleep" and i)
        if any(p.returncode != 0 for p in procs):
            raise RuntimeError(f"seeding: `neuro run ... {' '.join(cmd)}` failed")
        return ids

    finished = start(["echo", "done"], 10)[0]
    start(["sleep", "3600"], 5)  # killed at the end; the hour is only a backstop
    deadline = time.monotonic() + 30
    while len(call([*neuro, "ps", "-s", "succeeded", "-q"], env).split()) < 10:
        if time.monotonic() > deadline:
            raise RuntimeError("the seeded `echo` jobs did not finish in 30s")
        time.sleep(0.1)
    return finished


def measure(commands: dict[str, tuple[list[str], bool]], env: dict[str, str], runs: int) -> dict:
    """Warm up once, then `runs` rounds, each command once per round (piped to /dev/null, or on
    a pty); the first command rotates each round so that noise and drift hit all alike."""
    names = list(commands)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rnd in range(-1, runs):
        k = rnd % len(names)
        for name in names[k:] + names[:k]:
            argv, tty = commands[name]
            t = run_tty(argv, env) if tty else time_piped(argv, env)
            if rnd >= 0:
                samples[name].append(t)
    return {
        n: {**stats(s), "samples_ms": [round(x * 1000, 2) for x in s]} for n, s in samples.items()
    }


def drive(coro):  # type: ignore[no-untyped-def]
    """Run a coroutine without an event loop, as `neuro`'s one-shot commands do."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise RuntimeError("it waited on an event loop")


def in_process(config_dir: Path, runs: int) -> dict:
    """The request (a fresh client + jobs.list + close, as one `neuro ps` makes: without an
    event loop; and, for comparison, on one with asyncio.run) and the rendering, timed in this
    process after the imports: medians of `runs` after a warm-up."""
    import neuro_sdk
    from neuro_cli.formatters.columns import (
        DEFAULT_FORMAT,
        header,
        line,
        parse_format,
        render_table,
    )

    columns = parse_format(DEFAULT_FORMAT)
    from neuro_cli.iostreams import IOStreams

    async def list_jobs(statuses: set) -> list:
        client = await neuro_sdk.Factory(config_dir).get()
        try:
            return [job async for job in client.jobs.list(statuses=statuses)]
        finally:
            await client.close()

    def timed(fn):  # type: ignore[no-untyped-def]
        out, ts = fn(), []
        for _ in range(runs):
            t0 = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t0)
        return out, stats(ts)

    def table(jobs: list) -> str:  # as on a 120-column colour terminal
        buf = io.StringIO()
        streams = IOStreams(io.StringIO(), buf, io.StringIO(), True, True, True, True, width=120)
        streams.console().print(render_table(jobs, columns, now))
        return buf.getvalue()

    def lines(jobs: list) -> str:
        return "\n".join([header(columns), *(line(j, columns, now) for j in jobs)])

    now = dt.datetime.now(dt.UTC)
    out: dict = {}
    for label, statuses in (("ps", neuro_sdk.JobStatus.active_items()), ("ps -a", set())):
        jobs, out[f"request {label}"] = timed(lambda s=statuses: drive(list_jobs(s)))
        out[f"request {label} (asyncio.run)"] = timed(lambda s=statuses: asyncio.run(list_jobs(s)))[
            1
        ]
        out[f"jobs {label}"] = len(jobs)
        if label == "ps":  # the first table in this process: rich's imports, set-up and caches
            t0 = time.perf_counter()
            table(jobs)
            first_ms = (time.perf_counter() - t0) * 1000
            out["render table, first call (1 sample)"] = {"median": first_ms}
        out[f"render table {label}"] = timed(lambda j=jobs: table(j))[1]
        out[f"render lines {label}"] = timed(lambda j=jobs: lines(j))[1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="timed runs per command [15]")
    ap.add_argument("--import-runs", type=int, default=5, help="-X importtime runs per mode [5]")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the cleanup below runs

    neuro, apolo = neuro_command(), apolo_command()
    tmp = Path(tempfile.mkdtemp(prefix="neuro-bench-"))
    home, cfg = tmp / "home", tmp / "neuro"
    home.mkdir()
    (cfg / "server").mkdir(parents=True, mode=0o700)
    # room for all the seeded jobs whatever the machine (they only sleep)
    (cfg / "server" / "server.toml").write_text(
        '[server]\nruntime = "process"\n[resources]\ncpu = 64\nmemory = "256GiB"\n'
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "NEURO_CONFIG": str(cfg),
        "PYTHONUSERBASE": site.getuserbase(),
    }  # user-site packages stay visible
    running: list[str] = []
    try:
        call([*neuro, "server", "start"], env)
        url = json.loads((cfg / "server" / "server.json").read_text())["url"]
        token = call([*neuro, "config", "show-token"], env).strip()
        call([*apolo, "config", "login-with-token", token, url], env)
        finished = seed_jobs(neuro, env, running)
        job = running[0]
        print(
            f"server {url}: {len(running)} running + 10 finished jobs; {args.runs} runs each;"
            f" neuro is {' '.join(neuro)}",
            flush=True,
        )
        # the other one-shot commands (`kill -s CONT`: the kill path, and the job goes on)
        oneshot = {
            "status": ["status", job],
            "kill": ["kill", "-s", "CONT", job],
            "top --no-stream": ["top", "--no-stream", job],
            "logs": ["logs", finished],
            "config show": ["config", "show"],
            "job tags": ["job", "tags"],
        }
        timings = measure(
            {
                "python -c pass": ([PY, "-c", "pass"], False),
                "python -c 'import click'": ([PY, "-c", "import click"], False),
                "neuro --help": ([*neuro, "--help"], False),
                "apolo --help": ([*apolo, "--help"], False),
                "neuro ps --help": ([*neuro, "ps", "--help"], False),
                "apolo ps --help": ([*apolo, "ps", "--help"], False),
                # what one TAB after `status ` runs: ours answers job ids from the local cache;
                # the official client's click completion imports the whole CLI and asks the server
                "neuro TAB (job ids)": ([*neuro, "__complete", "jobs"], False),
                "apolo TAB (job ids)": (
                    [
                        "env",
                        "_APOLO_COMPLETE=bash_complete",
                        "COMP_WORDS=apolo status ",
                        "COMP_CWORD=2",
                        *apolo,
                    ],
                    False,
                ),
                "neuro ps": ([*neuro, "ps"], False),
                "apolo ps": ([*apolo, "ps"], False),
                "neuro ps -a": ([*neuro, "ps", "-a"], False),
                "apolo ps -a": ([*apolo, "ps", "-a"], False),
                "neuro ps (tty)": ([*neuro, "ps"], True),
                "apolo ps (tty)": ([*apolo, "ps"], True),
                **{f"neuro {name}": ([*neuro, *argv], False) for name, argv in oneshot.items()},
                **{
                    f"apolo {name}": ([*apolo, *oneshot[name]], False)
                    for name in ("status", "logs", "config show")
                },
                IMPORTS_ONLY: ([PY, "-c", PS_IMPORTS], False),
                IMPORTS_EXIT: ([PY, "-c", PS_IMPORTS + "; import os; os._exit(0)"], False),
            },
            env,
            args.runs,
        )
        startup = import_summary(
            [
                importtime([PY, "-X", "importtime", "-c", "pass"], env)
                for _ in range(args.import_runs)
            ],
            0,
            (),
        )
        imports = {
            mode: import_summary(
                [
                    importtime([PY, "-X", "importtime", "-m", "neuro_cli", "ps"], env, tty=tty)
                    for _ in range(args.import_runs)
                ],
                startup["total_ms"],
                PACKAGES,
                min_ms=3.0,
            )
            for mode, tty in (("piped", False), ("tty", True))
        }
        loaded = {
            name: [m for m in json.loads(call([PY, "-c", MODULES_PROBE, *argv], env)) if m in HEAVY]
            for name, argv in {"ps": ["ps"], **oneshot}.items()
        }
        inproc = in_process(cfg, args.runs)
    finally:
        cleanup(neuro, env, running, tmp)

    ratios, breakdown = analyse(timings, imports, inproc)
    report(timings, ratios, breakdown, imports, inproc, loaded)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": machine(),
                "runs": args.runs,
                "neuro_command": neuro,
                "apolo_command": apolo,
                "ps_imports": PS_IMPORTS,
                "timings_ms": timings,
                "ratios": ratios,
                "breakdown": breakdown,
                "imports": imports,
                "in_process_ms": inproc,
                "heavy_modules_loaded": loaded,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")


def analyse(timings: dict, imports: dict, inproc: dict) -> tuple[dict, dict]:
    """The ratios of medians against their targets, and the breakdown of `neuro ps`."""
    med = {n: t["median"] for n, t in timings.items()}
    ratios = {
        f"{a} / {b}": {"value": med[a] / med[b], "target": target}
        for a, b, target in (
            ("neuro --help", "python -c 'import click'", "<= 1.5"),
            ("neuro ps --help", "python -c 'import click'", None),
            ("apolo --help", "neuro --help", None),
            ("apolo ps --help", "neuro ps --help", None),
            ("apolo TAB (job ids)", "neuro TAB (job ids)", None),
            ("neuro ps", "python -c pass", "<= 2.2"),
            ("neuro ps (tty)", "python -c pass", "<= 2.2"),
            ("neuro ps -a", "python -c pass", None),
            ("apolo ps", "neuro ps", ">= 7"),  # (the words for the same target)
            ("apolo ps -a", "neuro ps -a", ">= 7"),
            ("apolo ps (tty)", "neuro ps (tty)", ">= 7"),
            *((f"neuro {name}", "python -c pass", None) for name in ONESHOT),
            *(
                (f"apolo {name}", f"neuro {name}", None)
                for name in ("status", "logs", "config show")
            ),
        )
        if a in med and b in med
    }
    for r in (r for r in ratios.values() if r["target"]):
        op, limit = r["target"].split()
        r["met"] = r["value"] <= float(limit) if op == "<=" else r["value"] >= float(limit)
    breakdown = {}
    for mode, total, render in (
        ("piped", "neuro ps", "render lines ps"),
        ("tty", "neuro ps (tty)", "render table ps"),
    ):
        parts = {
            "interpreter start (python -c pass)": med["python -c pass"],
            # wall time of the imports alone; neuro ends with os._exit, so the
            # interpreter's teardown (IMPORTS_ONLY - IMPORTS_EXIT) is not paid
            "imports (wall time, without teardown)": med[IMPORTS_EXIT] - med["python -c pass"],
            "request (client + jobs.list + close)": inproc["request ps"]["median"],
            "rendering (warm)": inproc[render]["median"],
        }
        parts["rest: CLI logic, config (tty: rich's import, first render)"] = med[total] - sum(
            parts.values()
        )
        breakdown[mode] = {"total_ms": med[total], "parts_ms": parts}
    return ratios, breakdown


def cleanup(neuro: list[str], env: dict[str, str], running: list[str], tmp: Path) -> None:
    """Kill the seeded jobs, stop the server, remove the temp dir: each step whatever happened."""
    for argv in ([[*neuro, "kill", *running]] if running else []) + [[*neuro, "server", "stop"]]:
        try:
            call(argv, env)
        except Exception as e:  # noqa: BLE001 - go on cleaning up
            print(f"cleanup: {e}", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)


def report(
    timings: dict, ratios: dict, breakdown: dict, imports: dict, inproc: dict, loaded: dict
) -> None:
    base = timings["python -c pass"]["median"]
    print(f"\n{'command':<38}{'median':>8}{'p10':>8}{'p90':>8}{'x pass':>8}   (ms)")
    for name, t in timings.items():
        print(
            f"{name:<38}{t['median']:8.1f}{t['p10']:8.1f}{t['p90']:8.1f}{t['median'] / base:8.2f}"
        )
    print(f"\n{'ratio of medians':<44}{'value':>7}  target")
    for name, r in ratios.items():
        verdict = {True: "met", False: "MISSED"}.get(r.get("met"), "")
        print(f"{name:<44}{r['value']:7.2f}  {r['target'] or ''} {verdict}")
    for mode, b in breakdown.items():
        print(f"\nneuro ps ({mode}), {b['total_ms']:.1f} ms:")
        for part, ms in b["parts_ms"].items():
            print(f"  {part:<44}{ms:7.1f} ms {100 * ms / b['total_ms']:5.1f}%")
    for mode, imp in imports.items():
        print(
            f"\nimports of `neuro ps` ({mode}): {imp['total_ms']:.1f} ms under -X importtime, "
            f"{imp['beyond_startup_ms']:.1f} beyond startup; inclusive / exclusive ms:"
        )
        for pkg, v in imp["packages"].items():
            print(f"  {pkg:<20}{v['inclusive_ms']:7.1f}{v['exclusive_ms']:7.1f}")
        print(
            "  slowest modules (self ms): "
            + ", ".join(f"{m} {ms:.1f}" for m, ms in imp["slowest_modules_self_ms"].items())
        )
    print(f"\none-shot commands, what they import of {', '.join(HEAVY)}:")
    for name, mods in loaded.items():
        print(f"  neuro {name:<20}{', '.join(mods) or 'none'}")
    print(
        "\nin process (ms, medians): "
        + ", ".join(f"{k} {v['median']:.2f}" for k, v in inproc.items() if isinstance(v, dict))
    )


if __name__ == "__main__":
    main()
