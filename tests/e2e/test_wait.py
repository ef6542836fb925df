"""neuro wait end to end, on both runtimes: chaining jobs in scripts as Slurm's srun does."""

from __future__ import annotations

import pytest

from tests.conftest import Neuro


def detached(neuro: Neuro, *command: str) -> str:
    """The id of a job run with --detach (which exits with the job's code when it ended first)."""
    r = neuro("run", "-q", "--detach", neuro.image, "--", *command)
    assert r.stdout.startswith("job-"), r.stderr
    return r.stdout.strip()


def test_wait_exit_code_chains_like_srun(neuro: Neuro) -> None:
    ok = detached(neuro, "sh", "-c", "sleep 0.5; exit 0")
    bad = detached(neuro, "sh", "-c", "sleep 1; exit 5")
    r = neuro("wait", "--exit-code", ok, bad)
    assert r.returncode == 5, r.stderr  # the highest of the jobs' exit codes
    assert r.stdout == f"{ok} succeeded (exit code 0)\n{bad} failed (exit code 5)\n"
    r = neuro("wait", ok, bad)  # without --exit-code: both got there
    assert r.returncode == 0 and r.stderr == ""


def test_wait_for_succeeded_of_a_failing_job_says_it_never_will(neuro: Neuro) -> None:
    job = detached(neuro, "sh", "-c", "exit 3")
    r = neuro("wait", "--for", "succeeded", job)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"ERROR: job {job} will never be succeeded: it has finished (failed) (exit code 3)"
    ]


def test_wait_for_running_then_timeout(neuro: Neuro) -> None:
    job = detached(neuro, "sleep", "60")
    r = neuro("wait", "--for", "running", "--timeout", "30s", job)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{job} running\n"
    r = neuro("wait", "--timeout", "1s", job)
    assert r.returncode == 124
    assert r.stderr.splitlines()[0] == (
        f"ERROR: timed out waiting for job {job} to be finished: it is running"
    )
    neuro.ok("kill", job)
    r = neuro("wait", "--for", "running", job)  # it ran: that is past, not never
    assert r.returncode == 0 and r.stdout.startswith(f"{job} cancelled"), r.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--for", "bogus", "x-job"], 2, "invalid value for '--for'"),
        (["--timeout", "soon", "x-job"], 2, "--timeout"),
        ([], 2, "missing argument 'JOBS...'"),
        (["no-such-job"], 72, "no such job: no-such-job"),
    ],
    ids=["bad-state", "bad-timeout", "no-job", "unknown-job"],
)
def test_wait_bad_input(neuro: Neuro, args: list[str], code: int, message: str) -> None:
    r = neuro("wait", *args)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_ps_last_distinct_and_description(neuro: Neuro) -> None:
    """`ps --last N`, `--distinct` (the newest job of each name) and `-d DESCRIPTION`, as the
    Neu.ro CLI has them."""
    ids = []
    for name, desc in [("sweep", "first"), ("sweep", "second"), ("", "nightly"), ("other", "")]:
        args = [*(("-n", name) if name else ()), *(("-d", desc) if desc else ())]
        r = neuro("run", *args, neuro.image, "--", "true")
        assert r.returncode == 0, r.stderr
        ids.append(neuro.ok("ps", "-a", "-q", "--last", "1").strip())
    assert len(set(ids)) == 4
    assert neuro.ok("ps", "-a", "-q", "--last", "2").split() == ids[2:]
    assert neuro.ok("ps", "-a", "-q", "--last", "2", "--recent-first").split() == ids[:1:-1]
    assert neuro.ok("ps", "-a", "-q", "--distinct").split() == ids[1:]
    assert neuro.ok("ps", "-a", "-q", "-d", "nightly").split() == [ids[2]]
    assert neuro.ok("ps", "-a", "-q", "-d", "first", "--distinct").split() == [ids[0]]
    r = neuro("ps", "--last", "0")
    assert r.returncode == 2 and "--last" in r.stderr
