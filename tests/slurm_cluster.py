"""Find the CI Slurm cluster that .ci/slurm-setup.sh starts, and drive it from tests.

The setup prints KEY=VALUE lines (SLURM_CONF, NEURO_SLURM_REST, NEURO_SLURM_NODES, ...) and
writes them to $NEURO_SLURM_ROOT/env (default /var/lib/neuro-slurm/env). tests/conftest.py
removes every NEURO_* variable before each test, so the environment is read here at import
time, and the env file is the fallback.

    def test_x(slurm_cluster: SlurmCluster, slurm_jobs: SlurmJobs) -> None:
        job = slurm_jobs.sbatch("-w", "n2", script="#!/bin/sh\\nsleep 30\\n")
        slurm_cluster.wait_state(job, {"RUNNING"})

`slurm_cluster` (session) skips with "Slurm cluster not running (.ci/slurm-setup.sh)" when no
cluster answers; `slurm_jobs` (per test) cancels every job it submitted when the test ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SKIP_REASON = "Slurm cluster not running (.ci/slurm-setup.sh)"
DEFAULT_ENV_FILE = Path("/var/lib/neuro-slurm/env")
# finished states: the job has left the nodes (COMPLETING is not one of them)
ENDED = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
    }
)

# captured at import (collection), before conftest's clean_environ drops NEURO_* per test
_IMPORT_ENV = {
    k: v for k, v in os.environ.items() if k.startswith("NEURO_SLURM_") or k == "SLURM_CONF"
}


def read_env() -> dict[str, str]:
    """The cluster's KEY=VALUE lines: the env file, overridden by the environment."""
    path = Path(
        _IMPORT_ENV.get("NEURO_SLURM_ENV_FILE")
        or Path(_IMPORT_ENV.get("NEURO_SLURM_ROOT", DEFAULT_ENV_FILE.parent)) / "env"
    )
    env: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and not key.startswith("#"):
            env[key.strip()] = value.strip()
    env.update(_IMPORT_ENV)
    return env


class SlurmError(RuntimeError):
    pass


@dataclass(frozen=True)
class SlurmCluster:
    env: dict[str, str]
    conf: Path
    rest: str
    nodes: tuple[str, ...]
    node_addrs: dict[str, str]
    partition: str
    jobs_dir: Path

    @classmethod
    def from_env(cls, env: dict[str, str]) -> SlurmCluster:
        addrs = dict(
            item.split("=", 1)
            for item in env.get("NEURO_SLURM_NODE_ADDRS", "").split(",")
            if "=" in item
        )
        return cls(
            env=env,
            conf=Path(env["SLURM_CONF"]),
            rest=env.get("NEURO_SLURM_REST", "http://127.0.0.1:6820"),
            nodes=tuple(n for n in env.get("NEURO_SLURM_NODES", "").split(",") if n),
            node_addrs=addrs,
            partition=env.get("NEURO_SLURM_PARTITION", "debug"),
            jobs_dir=Path(env.get("NEURO_SLURM_JOBS_DIR", "/tmp")),
        )

    def cmd_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, *argv: str, timeout: float = 30, check: bool = True) -> str:
        """Run a Slurm command against this cluster; its stdout."""
        p = subprocess.run(
            argv, env=self.cmd_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and p.returncode != 0:
            raise SlurmError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def answers(self) -> bool:
        try:
            out = self.run("sinfo", "-h", "-N", "-o", "%N", timeout=10)
        except (OSError, SlurmError, subprocess.TimeoutExpired):
            return False
        return bool(self.nodes) and set(self.nodes) <= set(out.split())

    def job(self, job_id: int) -> dict[str, str]:
        """{"state", "reason", "nodes"} from squeue (finished jobs too, for MinJobAge)."""
        out = self.run(
            "squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T|%r|%N", check=False
        )
        line = out.strip().splitlines()[0] if out.strip() else ""
        if not line:
            return {"state": "", "reason": "", "nodes": ""}
        state, reason, nodes = line.split("|", 2)
        return {"state": state, "reason": reason, "nodes": nodes}

    def wait_job(
        self, job_id: int, ok: set[str], *, reason: str | None = None, timeout: float = 20
    ) -> dict[str, str]:
        """Poll squeue until the job is in one of `ok` (with `reason`, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info["state"] in ok and (reason is None or info["reason"] == reason):
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id}: {info}, waited for {ok} reason={reason}")
            time.sleep(0.05)

    def wait_state(self, job_id: int, ok: set[str], timeout: float = 20) -> dict[str, str]:
        return self.wait_job(job_id, ok, timeout=timeout)

    def token(self, username: str = "root", lifespan: int = 300) -> str:
        out = self.run("scontrol", "token", f"username={username}", f"lifespan={lifespan}")
        return out.strip().removeprefix("SLURM_JWT=")

    def rest_get(self, path: str, username: str = "root") -> dict[str, object]:
        req = urllib.request.Request(
            self.rest + path,
            headers={"X-SLURM-USER-NAME": username, "X-SLURM-USER-TOKEN": self.token(username)},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            data: dict[str, object] = json.load(resp)
        return data


@dataclass
class SlurmJobs:
    """Submits jobs for one test and cancels them all when it ends."""

    cluster: SlurmCluster
    ids: list[int] = field(default_factory=list)

    def sbatch(self, *args: str, script: str) -> int:
        """Submit; output goes to /dev/null unless args name one (-o), never into the cwd."""
        if not any(a == "-o" or a.startswith("--output") for a in args):
            args = ("-o", "/dev/null", *args)
        p = subprocess.run(
            ["sbatch", "--parsable", *args],
            input=script,
            env=self.cluster.cmd_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if p.returncode != 0:
            raise SlurmError(f"sbatch {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        job_id = int(p.stdout.strip().split(";")[0])
        self.ids.append(job_id)
        return job_id

    def cancel_all(self, timeout: float = 20) -> None:
        if not self.ids:
            return
        ids = [str(i) for i in self.ids]
        self.cluster.run("scancel", *ids, check=False)
        deadline = time.monotonic() + timeout
        for job_id in self.ids:
            while self.cluster.job(job_id)["state"] not in ENDED | {""}:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"job {job_id} still {self.cluster.job(job_id)} after scancel"
                    )
                time.sleep(0.05)


def find_cluster() -> SlurmCluster | None:
    env = read_env()
    if "SLURM_CONF" not in env or not Path(env["SLURM_CONF"]).is_file():
        return None
    cluster = SlurmCluster.from_env(env)
    return cluster if cluster.answers() else None


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    cluster = find_cluster()
    if cluster is None:
        pytest.skip(SKIP_REASON)
    return cluster


@pytest.fixture
def slurm_jobs(slurm_cluster: SlurmCluster) -> Iterator[SlurmJobs]:
    jobs = SlurmJobs(slurm_cluster)
    try:
        yield jobs
    finally:
        jobs.cancel_all()
