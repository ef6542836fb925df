"""The queue's rules through the CLI, on both runtimes: a per-user quota of running jobs
(refused, or queued with --wait-for-seat) and schedule_timeout."""

from __future__ import annotations

import time

from tests.conftest import Neuro
from tests.e2e.conftest import server_toml


def _status(neuro: Neuro, job: str) -> str:
    return next(line for line in neuro.ok("status", job).splitlines() if line.startswith("Status: "))


def test_quota_of_running_jobs(neuro: Neuro) -> None:
    neuro.write_server_config(server_toml(neuro.runtime, server="max_running_jobs = 2\n"))
    first = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "60").strip()
    neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "60")
    r = neuro("run", "--detach", neuro.image, "--", "true")
    assert r.returncode == 65, r.stderr
    assert "quota exhausted: 2 of your 2 jobs are running" in r.stderr and "--wait-for-seat" in r.stderr
    queued = neuro.ok("run", "-q", "--detach", "--wait-for-seat", neuro.image, "--",
                      "sh", "-c", "echo got-a-seat").strip()
    assert _status(neuro, queued) == ("Status: pending (Scheduling)")
    assert "Waiting for a seat: 2 of your 2 jobs are running" in neuro.ok("status", queued)
    neuro.ok("kill", first)
    neuro.wait_status(queued, {"succeeded"})
    assert neuro.ok("logs", queued) == "got-a-seat\n"


def test_schedule_timeout(neuro: Neuro) -> None:
    neuro.write_server_config(server_toml(
        neuro.runtime, '[[presets]]\nname = "huge"\ncpu = 64\nmemory = "1GiB"\n'))
    t0 = time.monotonic()
    r = neuro("run", "--preset", "huge", "--schedule-timeout", "2s", neuro.image, "--", "true")
    assert r.returncode == 125, r.stderr
    assert time.monotonic() - t0 >= 2
    assert "ClusterScaleUpFailed" in r.stderr
    job = r.stderr.split("Job ID: ")[1].split()[0]
    st = neuro.ok("status", job)
    assert "Not scheduled within its schedule timeout of 2s: needs cpu 64" in st
