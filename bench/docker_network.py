"""What a network per user costs a container's start: the docker runtime's start of the same
job on the engine's default network and on its owner's own network (DNS on), interleaved, in
one run.

    python bench/docker_network.py [--runs 16]

Each figure is ``DockerRuntime.start`` of ``sleep 300`` in localhost/busybox (create, attach,
start, inspect); the first start on the per-user network also makes the network and is shown
apart.  Needs the engine of .ci/podman-setup.sh (or $NEURO_DOCKER_HOST)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import stats

from neuro_server.runtime.base import JobSpec
from neuro_server.runtime.docker import DockerRuntime

ENGINE = os.environ.get("NEURO_DOCKER_HOST") or "unix:///run/neuro-podman.sock"
IMAGE = "localhost/busybox:latest"


async def main(runs: int) -> dict[str, dict[str, float]]:
    from tests.server.runtime_docker.conftest import remove_containers, remove_networks

    tmp = Path(tempfile.mkdtemp(prefix="neuro-bench-net-"))
    tag = uuid.uuid4().hex[:8]
    rts = {
        "default network": DockerRuntime(ENGINE, root=tmp / "a", instance=f"bd{tag}"),
        "per-user network": DockerRuntime(
            ENGINE, root=tmp / "b", instance=f"bu{tag}", network="per-user"
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in rts}
    try:
        for i in range(runs + 1):
            order = list(rts.items()) if i % 2 else list(reversed(rts.items()))
            for kind, rt in order:
                spec = JobSpec(
                    job_id=f"j{i}",
                    argv=["sleep", "300"],
                    env={},
                    working_dir=None,
                    cpu=0,
                    memory=0,
                    image=IMAGE,
                    owner="alice",
                )
                t0 = time.perf_counter()
                await rt.start(spec)
                times[kind].append(time.perf_counter() - t0)
    finally:
        for rt in rts.values():
            await rt.close()
        for rt in rts.values():
            remove_containers(rt.instance)
            remove_networks(rt.instance)
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: {**stats(v[1:]), "first": v[0] * 1000} for k, v in times.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=16)
    args = ap.parse_args()
    res = asyncio.run(main(args.runs))
    print(f"{'docker runtime start':<22} {'median ms':>10} {'p10':>8} {'p90':>8} {'first':>8}")
    for k, v in res.items():
        print(f"{k:<22} {v['median']:>10.1f} {v['p10']:>8.1f} {v['p90']:>8.1f} {v['first']:>8.1f}")
    a, b = res["default network"]["median"], res["per-user network"]["median"]
    print(f"\nper-user / default: {b / a:.2f}x (+{b - a:.1f} ms a start)")
    results = Path(__file__).parent / "results" / "docker_network.json"
    results.write_text(json.dumps({"runs": args.runs, **res}, indent=1) + "\n")
    print(f"wrote {results}")
