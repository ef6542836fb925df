"""What volumes cost a process-runtime job's start: the same job started with and without a
view of its own (a storage directory read-only at a new top-level path, one more read-write,
and a secret file in a directory the host lacks), interleaved, in one run.

    python bench/volumes.py [--runs 30]

Each start is ``ProcessRuntime.start`` (supervisor up, job exec'd, started.json read back)
of ``true``; the figure is the median, and the ratio of the two.  Needs mount namespaces (root
or unprivileged user namespaces)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import stats

from neuro_server.runtime import cgroups, mountns
from neuro_server.runtime.base import JobSpec
from neuro_server.runtime.process import ProcessRuntime


async def main(runs: int) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="neuro-bench-volumes-"))
    data, out = tmp / "data", tmp / "out"
    data.mkdir()
    out.mkdir()
    rt = ProcessRuntime(tmp / "jobs", cgroup_parent="neuro-bench-volumes")
    views = {
        "mounts": [(str(data), "/bench-data", True), (str(out), "/bench-out", False)],
        "files": [("/etc/bench-app/key", b"secret")],
    }
    times: dict[str, list[float]] = {"plain": [], "volumes": []}
    try:
        for i in range(runs):
            for kind in ("plain", "volumes"):
                extra = views if kind == "volumes" else {}
                spec = JobSpec(
                    job_id=f"{kind}-{i}",
                    argv=["true"],
                    env={},
                    working_dir=None,
                    cpu=0,
                    memory=0,
                    **extra,
                )  # type: ignore[arg-type]
                t0 = time.perf_counter()
                await rt.start(spec)
                times[kind].append(time.perf_counter() - t0)
                await rt.wait(spec.job_id)
                await rt.cleanup(spec.job_id)
    finally:
        cgroups.remove_parent("neuro-bench-volumes")
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: stats(v) for k, v in times.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    if why := mountns.why_unsupported():
        raise SystemExit(f"cannot run: {why}")
    res = asyncio.run(main(args.runs))
    print(f"{'process runtime start':<24} {'median ms':>10} {'p10':>8} {'p90':>8}")
    for k, v in res.items():
        print(f"{k:<24} {v['median']:>10.1f} {v['p10']:>8.1f} {v['p90']:>8.1f}")
    ratio = res["volumes"]["median"] / res["plain"]["median"]
    extra = res["volumes"]["median"] - res["plain"]["median"]
    print(f"\nwith volumes / without: {ratio:.2f}x (+{extra:.1f} ms)")
    results = Path(__file__).parent / "results" / "volumes.json"
    results.write_text(json.dumps({"runs": args.runs, **res, "ratio": ratio}, indent=1) + "\n")
    print(f"wrote {results}")
