"""The queue's rules through the CLI, on both runtimes: a per-user quota of running jobs
(refused, or queued with --wait-for-seat) and schedule_timeout."""

from __future__ import annotations

import time

from tests.conftest import Neuro
from tests.e2e.conftest import server_toml


def _status(neuro: Neuro, job: str) -> str:
    return next(
        line for line in neuro.ok("status", job).splitlines() if line.startswith("Status: ")
    )


def test_quota_of_running_jobs(neuro: Neuro) -> None:
    neuro.write_server_config(server_toml(neuro.runtime, server="max_running_jobs = 2\n"))
    first = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "60").strip()
    neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "60")
    r = neuro("run", "--detach", neuro.image, "--", "true")
    assert r.returncode == 65, r.stderr
    assert (
        "quota exhausted: 2 of your 2 jobs are running" in r.stderr
        and "--wait-for-seat" in r.stderr
    )
    queued = neuro.ok(
        "run", "-q", "--detach", "--wait-for-seat", neuro.image, "--", "sh", "-c", "echo got-a-seat"
    ).strip()
    assert _status(neuro, queued) == ("Status: pending (Scheduling)")
    assert "Waiting for a seat: 2 of your 2 jobs are running" in neuro.ok("status", queued)
    neuro.ok("kill", first)
    neuro.wait_status(queued, {"succeeded"})
    assert neuro.ok("logs", queued) == "got-a-seat\n"


def test_schedule_timeout(neuro: Neuro) -> None:
    # two CPUs: a job holds one, so one needing both waits past its schedule timeout (one that
    # needs more than the server has at all is refused at once: test_first_hour)
    presets = (
        '[[presets]]\nname = "one"\ncpu = 1\nmemory = "256MiB"\n'
        '[[presets]]\nname = "huge"\ncpu = 2\nmemory = "256MiB"\n'
    )
    neuro.write_server_config(server_toml(neuro.runtime, presets).replace("cpu = 32", "cpu = 2"))
    holder = neuro.ok(
        "run", "-q", "--detach", "--preset", "one", neuro.image, "--", "sleep", "300"
    ).strip()
    t0 = time.monotonic()
    r = neuro("run", "--preset", "huge", "--schedule-timeout", "2s", neuro.image, "--", "true")
    assert r.returncode == 125, r.stderr
    assert time.monotonic() - t0 >= 2
    assert "ClusterScaleUpFailed" in r.stderr
    job = r.stderr.split("Job ID: ")[1].split()[0]
    st = neuro.ok("status", job)
    assert "Not scheduled within its schedule timeout of 2s: needs cpu 2" in st
    neuro.ok("kill", holder)


PREEMPT_PRESETS = (
    '[[presets]]\nname = "rr"\ncpu = 1\nmemory = "256MiB"\nscheduler_enabled = true\n'
    '[[presets]]\nname = "solid"\ncpu = 1\nmemory = "256MiB"\n'
)
TICKS = "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.1; done"


def _one_cpu(neuro: Neuro, round_robin: str = "60") -> None:
    text = server_toml(
        neuro.runtime, PREEMPT_PRESETS, server=f"round_robin_seconds = {round_robin}\n"
    )
    neuro.write_server_config(text.replace("cpu = 32", "cpu = 1"))


def _wait(pred, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.1)


def test_preemptible_job_is_suspended_and_resumed(neuro: Neuro) -> None:
    _one_cpu(neuro)
    victim = neuro.ok(
        "run", "-q", "--detach", "--preset", "rr", neuro.image, "--", "sh", "-c", TICKS
    ).strip()
    _wait(lambda: "tick-3" in neuro.job_output(victim))
    urgent = neuro.ok(
        "run",
        "-q",
        "--detach",
        "--preset",
        "solid",
        neuro.image,
        "--",
        "sh",
        "-c",
        "sleep 3; echo urgent-done",
    ).strip()
    _wait(lambda: _status(neuro, victim).startswith("Status: suspended"))
    st = neuro.ok("status", victim)
    assert "Restarts: 1" in st and "preempted" in st
    # frozen: no output while it stays suspended (the urgent job holds the CPU for 3 s)
    frozen_at = len(neuro.job_output(victim))
    checks = 0
    while _status(neuro, victim).startswith("Status: suspended"):
        assert len(neuro.job_output(victim)) <= frozen_at + len("tick-000\n")  # (one in flight)
        checks += 1
        time.sleep(0.1)
    assert checks >= 3
    neuro.wait_status(urgent, {"succeeded"})
    # resumed once the CPU is free, and it goes on where it was
    _wait(lambda: _status(neuro, victim).startswith("Status: running"))
    _wait(lambda: len(neuro.job_output(victim)) > frozen_at + 20)
    lines = neuro.job_output(victim).split()
    assert lines == [f"tick-{i}" for i in range(len(lines))]  # nothing lost, nothing repeated
    assert "Status: cancelled" in neuro.ok("status", neuro.ok("kill", victim).strip())


def test_round_robin_between_preemptible_jobs(neuro: Neuro) -> None:
    _one_cpu(neuro, round_robin="1.5")
    a = neuro.ok(
        "run", "-q", "--detach", "--preset", "rr", neuro.image, "--", "sh", "-c", TICKS
    ).strip()
    b = neuro.ok(
        "run", "-q", "--detach", "--preset", "rr", neuro.image, "--", "sh", "-c", TICKS
    ).strip()
    # b waits, then takes a's turn; a then takes b's: both make progress, both were suspended
    _wait(lambda: "tick-5" in neuro.job_output(b), timeout=30)
    _wait(lambda: "Restarts: 1" in neuro.ok("status", b), timeout=30)
    _wait(lambda: "Restarts: 2" in neuro.ok("status", a), timeout=30)
    for job in (a, b):
        assert "Status: cancelled" in neuro.ok("status", neuro.ok("kill", job).strip())


def test_life_span_counts_run_time_not_suspension(neuro: Neuro) -> None:
    import json
    from datetime import datetime

    _one_cpu(neuro)
    job = neuro.ok(
        "run",
        "-q",
        "--detach",
        "--preset",
        "rr",
        "--life-span",
        "6s",
        neuro.image,
        "--",
        "sh",
        "-c",
        TICKS,
    ).strip()
    _wait(lambda: "tick-3" in neuro.job_output(job))
    # 6 s: the urgent job must come within the life span on a loaded machine too
    urgent = neuro.ok(
        "run", "-q", "--detach", "--preset", "solid", neuro.image, "--", "sleep", "2"
    ).strip()
    neuro.wait_status(urgent, {"succeeded"})
    neuro.wait_status(job, {"cancelled"}, timeout=30)
    st = json.loads(neuro.ok("status", "--json", job))
    assert st["reason"] == "LifeSpanEnded"
    wall = (
        datetime.fromisoformat(st["finished_at"].replace("Z", "+00:00"))
        - datetime.fromisoformat(st["started_at"].replace("Z", "+00:00"))
    ).total_seconds()
    assert wall >= 7.5, wall  # 6 s of run time plus the ~2 s it spent suspended
