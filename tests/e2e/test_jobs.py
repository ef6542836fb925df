"""ps filters, kill, bump-life-span, concurrency and a server killed under running jobs."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from tests.conftest import Neuro
from tests.e2e.conftest import wait_job_ended_without_server

JOB_ID = re.compile(r"job-[0-9a-f-]{36}")


def _detach(neuro: Neuro, *args: str) -> str:
    out = neuro.ok("run", "-q", "--detach", *args)
    job_id = out.strip()
    assert JOB_ID.fullmatch(job_id), out
    return job_id


def test_ps_filters(neuro: Neuro) -> None:
    a = _detach(neuro, "-n", "alpha", "--tag", "x", "--tag", "y", neuro.image, "--", "sleep", "60")
    b = _detach(neuro, "-n", "beta", "--tag", "x", neuro.image, "--", "true")
    neuro.wait_status(b, {"succeeded"})
    c = _detach(neuro, neuro.image, "--", "sh", "-c", "sleep 0.3; exit 2")
    neuro.wait_status(c, {"failed"})

    assert neuro.ok("ps", "-q").split() == [a]  # default: active only
    assert neuro.ok("ps", "-a", "-q").split() == [a, b, c]
    assert neuro.ok("ps", "-a", "-q", "--recent-first").split() == [c, b, a]
    assert neuro.ok("ps", "-q", "-s", "succeeded", "-s", "failed").split() == [b, c]
    assert neuro.ok("ps", "-a", "-q", "-n", "beta").split() == [b]
    assert neuro.ok("ps", "-a", "-q", "-t", "x").split() == [a, b]
    assert neuro.ok("ps", "-a", "-q", "-t", "x", "-t", "y").split() == [a]
    assert neuro.ok("ps", "-a", "-q", "-o", "ME").split() == [a, b, c]
    assert neuro.ok("ps", "-a", "-q", "-o", "somebody-else").split() == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert neuro.ok("ps", "-a", "-q", "--since", future).split() == []
    assert neuro.ok("ps", "-a", "-q", "--until", future).split() == [a, b, c]
    assert neuro.ok("ps", "-a", "-q", "--since", "1h").split() == [a, b, c]
    # piped: a header and tab-separated columns, ISO times
    lines = neuro.ok("ps", "-a").splitlines()
    assert lines[0].split("\t") == ["ID", "NAME", "STATUS", "WHEN", "IMAGE", "PRESET", "COMMAND"]
    row = dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=False))
    assert row["ID"] == a and row["NAME"] == "alpha" and row["STATUS"] == "running"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["WHEN"])
    assert "\x1b[" not in "\n".join(lines)
    r = neuro("ps", "-a", "-s", "running")
    assert r.returncode == 2


def test_kill_by_name_and_errors(neuro: Neuro) -> None:
    a = _detach(
        neuro,
        "-n",
        "victim",
        neuro.image,
        "--",
        "sh",
        "-c",
        "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
    )
    neuro.wait_status(a, {"running"})
    r = neuro("kill", "victim", "no-such-job", "job-00000000-0000-0000-0000-000000000000")
    assert r.returncode == 1
    assert r.stdout.split() == [a]
    assert "cannot kill no-such-job" in r.stderr
    assert "cannot kill job-00000000-0000-0000-0000-000000000000" in r.stderr
    st = neuro.ok("status", a)
    assert "Status: cancelled (UserRequested)" in st
    assert "got-term\n" in neuro.ok("logs", a)
    r = neuro("kill", a)
    assert r.returncode == 1 and "already cancelled" in r.stderr


def test_bump_life_span(neuro: Neuro) -> None:
    # 5 s: the bump must land within the original life span on a loaded machine too
    a = _detach(neuro, "--life-span", "5s", neuro.image, "--", "sleep", "60")
    started = time.monotonic()
    out = neuro.ok("job", "bump-life-span", a, "1h")
    assert f"Updated job {a} life span to be 1h5s" in out
    # past the original life span it is still running
    deadline = started + 7
    while time.monotonic() < deadline:
        assert "Status: running" in neuro.ok("status", a)
        time.sleep(0.5)
    r = neuro("job", "bump-life-span", a, "0s")
    assert r.returncode == 2
    neuro.ok("kill", a)


def test_life_span_signal_warns_the_main_process_before_the_end(neuro: Neuro) -> None:
    import json

    # the job's shell handles USR1; its background child, which does not, must not get it
    script = (
        "sleep 300 & child=$!; "
        "trap 'echo warned; kill -0 $child && echo child-alive' USR1; "
        "while :; do sleep 0.1; done"
    )
    job = _detach(
        neuro,
        "--life-span",
        "4s",
        "--life-span-signal",
        "USR1@2s",
        neuro.image,
        "--",
        "sh",
        "-c",
        script,
    )
    assert "Life span signal: SIGUSR1 2s before its end" in neuro.ok("status", job)
    neuro.wait_status(job, {"cancelled"}, timeout=30)
    assert neuro.job_output(job).split() == ["warned", "child-alive"]  # once, then the end
    st = json.loads(neuro.ok("status", "--json", job))
    assert st["reason"] == "LifeSpanEnded"
    assert st["life_span_signal"] == {"signal": "SIGUSR1", "seconds_before": 2.0, "sent": True}
    assert "--life-span-signal USR1@2s" in neuro.ok("job", "generate-run-command", job)


def test_fifty_concurrent_detached_runs(neuro: Neuro) -> None:
    def one(i: int) -> str:
        return _detach(neuro, "-n", f"many-{i}", neuro.image, "--", "echo", str(i))

    with ThreadPoolExecutor(max_workers=25) as pool:
        ids = list(pool.map(one, range(50)))
    assert len(set(ids)) == 50
    listed = neuro.ok("ps", "-a", "-q").split()
    assert sorted(listed) == sorted(ids)


def test_server_sigkill_loses_nothing(neuro: Neuro) -> None:
    # a job that prints numbered lines while the server is killed and restarted
    script = "i=0; while [ $i -lt 100 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"
    long_job = _detach(neuro, neuro.image, "--", "sh", "-c", script)
    short_job = _detach(neuro, neuro.image, "--", "sh", "-c", "sleep 1; exit 7")
    follower = neuro.popen("logs", long_job)
    pid = neuro.server_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    # while the server is down the short job ends (its supervisor, or the engine, keeps the
    # exit code)
    wait_job_ended_without_server(neuro, short_job)
    assert neuro.ok("status", short_job)  # restarts the server, which reconciles
    assert neuro.server_pid() != pid
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert out.splitlines() == [f"line-{i}" for i in range(100)]
    st = neuro.ok("status", short_job)
    assert "Status: failed (Error)" in st and "Exit code: 7" in st
    neuro.wait_status(long_job, {"succeeded"})
    assert neuro.ok("logs", long_job).splitlines() == [f"line-{i}" for i in range(100)]


def test_restart_policies(neuro: Neuro) -> None:
    # on-failure: a clean exit ends the job
    ok = _detach(neuro, "--restart", "on-failure", neuro.image, "--", "sh", "-c", "echo once")
    neuro.wait_status(ok, {"succeeded"})
    assert "Restarts" not in neuro.ok("status", ok)
    # a failing job restarts with a growing delay; logs follow it across the restarts
    job = _detach(
        neuro, "--restart", "on-failure", neuro.image, "--", "sh", "-c", "echo run; exit 3"
    )
    follower = neuro.popen("logs", job)
    deadline = time.monotonic() + 30
    while "Restarts: 2" not in (st := neuro.ok("status", job)):
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    assert "Restart policy: on-failure" in st
    assert "restart 1 in 1s (restart policy on-failure)" in st  # the transition says why
    # restarted in place, as on the platform: running between its runs, the backoff its reason
    assert "pending (Restarting)" not in st
    while "Status: running (Restarting)" not in st:  # (its backoff: 4 s now)
        assert time.monotonic() < deadline, st
        st = neuro.ok("status", job)
    assert "Reason: The job exited with code 3; restart " in st
    assert job in neuro.ok("ps", "-q", "--status", "running").split()
    neuro.ok("kill", job)
    out, _err = follower.communicate(timeout=30)
    assert follower.returncode == 0
    assert out.count("run\n") >= 2  # the first run and the restarted one, in one follow
    st = neuro.ok("status", job)
    assert "Status: cancelled (UserRequested)" in st
    restarts = re.search(r"Restarts: (\d+)", st)
    assert restarts
    # never restarted after the kill: a finished job is final (the store refuses any later
    # transition), so the scheduler's next steps find nothing to restart
    again = neuro.ok("status", job)
    assert "Status: cancelled" in again and f"Restarts: {restarts.group(1)}" in again
    assert again.rstrip().splitlines()[-1].split("\t")[1].startswith("cancelled")


def test_generate_run_command_recreates_the_job(neuro: Neuro) -> None:
    import json
    import shlex

    neuro.ok("secret", "add", "tok", "v")
    first = _detach(
        neuro,
        "-n",
        "orig",
        "--tag",
        "a",
        "--tag",
        "b:c",
        "-d",
        "it's quoted",
        "-e",
        "X=1 2",
        "-e",
        "S=secret:tok",
        "-w",
        "/tmp",
        "--life-span",
        "1h30m",
        "--restart",
        "on-failure",
        neuro.image,
        "--",
        "sh",
        "-c",
        "echo \"$X\" 'q'",
    )
    line = neuro.ok("job", "generate-run-command", "orig").strip()
    assert line.startswith("neuro run ")
    neuro.wait_status(first, {"succeeded"})
    argv = shlex.split(line)[2:]
    second = _detach(neuro, *argv)
    neuro.wait_status(second, {"succeeded"})
    assert neuro.ok("logs", second) == neuro.ok("logs", first) == "1 2 q\n"
    a, b = (json.loads(neuro.ok("status", "--json", j)) for j in (first, second))
    for key in (
        "image",
        "command",
        "entrypoint",
        "env",
        "secret_env",
        "working_dir",
        "preset",
        "tags",
        "description",
        "life_span",
        "restart_policy",
        "name",
        "tty",
    ):
        assert a[key] == b[key], key
