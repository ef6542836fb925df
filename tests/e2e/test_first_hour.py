"""Issue 16, what a new user hits in the first hour, on both runtimes and on real terminals:
`exec` that waited for stdin to close, the Ctrl-C dialog that broke on a second Ctrl-C, an
attached run of a restarting job that followed one attempt and gave up, Ctrl-C in a script
that exited 0 (the loop around it went on), and Ctrl-C of a run that waits to start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest

from tests.conftest import Neuro
from tests.e2e.conftest import server_toml

NEURO = f"{sys.executable} -m neuro_cli"
TICKER = "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.2; done"


_STARTED: list[Any] = []  # this test's terminals and processes, ended before its server


@pytest.fixture(autouse=True)
def _reap(neuro: Neuro) -> Iterator[None]:
    """A failing test leaves no CLI behind (one that goes on would start the server again)."""
    yield
    while _STARTED:
        p = _STARTED.pop()
        if isinstance(p, pexpect.spawn):
            p.close(force=True)
        elif p.poll() is None:
            p.kill()
            p.communicate()


def in_shell(neuro: Neuro, script: str, timeout: float = 20) -> pexpect.spawn:
    """A shell script on a real terminal (pexpect's pty), as typed in a terminal."""
    child = pexpect.spawn(
        "bash",
        ["--norc", "--noprofile", "-c", script],
        env=neuro.env,
        cwd=str(neuro.home),
        encoding="utf-8",
        timeout=timeout,
    )
    _STARTED.append(child)
    return child


def spawn(neuro: Neuro, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "neuro_cli", *args],
        env=neuro.env,
        cwd=str(neuro.home),
        encoding="utf-8",
        timeout=20,
    )
    _STARTED.append(child)
    return child


def popen(neuro: Neuro, *args: str, **kw: Any) -> subprocess.Popen[Any]:
    p = subprocess.Popen(
        [sys.executable, "-m", "neuro_cli", *args], env=neuro.env, cwd=neuro.home, **kw
    )
    _STARTED.append(p)
    return p


def job_ids(neuro: Neuro) -> list[str]:
    return neuro.ok("ps", "-a", "-q").split()


def job_exit_code(neuro: Neuro, job: str, default: int) -> int:
    """The job's exit code as `neuro status` shows it (``default`` when it has none)."""
    found = re.search(r"^Exit code: (-?\d+)", neuro.ok("status", job), re.MULTILINE)
    return int(found.group(1)) if found else default


def wait_running(neuro: Neuro, job: str) -> None:
    assert neuro.wait_status(job, {"running"}) == "running"


# -- 1. exec returns when its command exits; it reads stdin only with -i ----------------------


def test_exec_returns_when_the_command_exits_whatever_stdin_does(neuro: Neuro) -> None:
    job = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "300").strip()
    wait_running(neuro, job)
    # in a terminal, stdout piped: it printed `hi` and waited for Ctrl-D
    child = in_shell(neuro, f"{NEURO} exec {job} -- echo hi | cat; echo RC=$?")
    child.expect_exact("hi")
    child.expect(r"RC=(\d+)", timeout=10)  # no Ctrl-D sent
    assert child.match.group(1) == "0"
    child.expect(pexpect.EOF)
    # -T on a terminal: `sleep 1` needed Ctrl-D after it ended
    child = in_shell(neuro, f"{NEURO} exec -T {job} -- sh -c 'sleep 1; echo slept'; echo RC=$?")
    child.expect_exact("slept")
    child.expect(r"RC=(\d+)", timeout=10)
    assert child.match.group(1) == "0"
    child.expect(pexpect.EOF)
    # stdin a pipe that stays open (`true < <(sleep 12)` took 12 s), with and without -i
    for flags in ((), ("-i",)):
        p = popen(
            neuro,
            "exec",
            *flags,
            job,
            "--",
            "sh",
            "-c",
            "exit 4",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            p.wait(timeout=10)  # stdin kept open
        finally:
            p.communicate(timeout=10)  # (closes stdin)
        assert p.returncode == 4, flags
    # -i passes piped stdin on, and its end is the command's EOF
    r = neuro("exec", "-i", job, "--", "sh", "-c", "cat; echo end", input="line\n")
    assert r.returncode == 0 and r.stdout == "line\nend\n", r.stderr
    neuro.ok("kill", job)


# -- 2. the Ctrl-C dialog survives any number of Ctrl-Cs --------------------------------------


def test_ctrl_c_dialog_second_ctrl_c_detaches_and_quits(neuro: Neuro) -> None:
    # at the prompt: a clear choice, said as it is made; the job goes on; the terminal is
    # restored (it was left with keys echoed and ignored, and Enter gave `Aborted.`)
    # (the shell traps INT, so that it goes on after neuro and says what it saw)
    child = in_shell(
        neuro,
        f"trap 'echo SHELL-GOT-INT' INT; {NEURO} run -T -n dialog2 "
        f"{neuro.image} -- sh -c '{TICKER}'; echo RC=$?; stty -a",
    )
    child.expect("tick-1")
    child.sendintr()
    child.expect(r"\[c\]ontinue\? \(Ctrl-C again: detach and quit\)")
    child.sendintr()
    child.expect_exact("Ctrl-C again: detach")
    child.expect_exact("Detached from dialog2: it keeps running.")  # its name, not its id
    child.expect_exact("neuro kill dialog2")
    child.expect(r"RC=(\d+)")
    assert child.match.group(1) == "130"
    child.expect(pexpect.EOF)
    modes = child.before
    assert all(re.search(rf"(?<!-){m}\b", modes) for m in ("icanon", "echo", "isig")), modes
    assert "Status: running" in neuro.ok("status", "dialog2")

    # two quick Ctrl-Cs: one prompt, and the second one is the same clear choice
    child = spawn(neuro, "run", "-T", neuro.image, "--", "sh", "-c", TICKER)
    child.expect("tick-1")
    child.sendintr()
    child.expect_exact("^C")  # (the terminal has taken the first: a second press, not a flush)
    child.sendintr()
    child.expect_exact("Ctrl-C again: detach")
    child.expect(pexpect.EOF)
    assert child.before.count("Ctrl-C: [k]ill") <= 1
    child.close()
    assert child.signalstatus == signal.SIGINT
    assert len(neuro.ok("ps", "-q").split()) == 2  # both still running

    # other keys are ignored; k kills (the job the user asked to kill does not keep running)
    child = spawn(neuro, "run", "-T", "-n", "victim", neuro.image, "--", "sh", "-c", TICKER)
    child.expect("tick-1")
    child.sendintr()
    child.expect(r"\[k\]ill")
    child.send("xyz")
    child.send("k")
    child.expect_exact("Killed victim")
    child.expect(pexpect.EOF)
    child.close()
    assert child.signalstatus == signal.SIGINT
    assert "Status: cancelled" in neuro.ok("status", "victim")
    for job in neuro.ok("ps", "-q").split():
        neuro.ok("kill", job)


# -- 3. an attached run follows every attempt of a restarting job -----------------------------

# (long enough for the output stream to be open before the attempt ends)
ATTEMPT = "echo attempt-$(date +%s%N); sleep 1; exit 3"


def test_run_restart_on_failure_follows_every_attempt(neuro: Neuro) -> None:
    p = popen(
        neuro,
        "run",
        "-n",
        "flaky",
        "--restart",
        "on-failure",
        neuro.image,
        "--",
        "sh",
        "-c",
        ATTEMPT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert p.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while not any("attempt 3" in line for line in lines):  # (it waits 2 s to start it)
        assert time.monotonic() < deadline, lines
        line = p.stdout.readline()
        assert line, lines  # it followed only the first attempt
        lines.append(line.rstrip("\n"))
    neuro.ok("kill", "flaky")  # (while it waits to restart, or during the third attempt)
    rest, _ = p.communicate(timeout=30)
    lines += rest.splitlines()
    # the last exit code: the third attempt's, or the second's when it was killed before the
    # third had one (not 124 "did not finish in time", nor 125)
    assert p.returncode == job_exit_code(neuro, "flaky", default=3), lines
    restarts = [line for line in lines if line.startswith("restarting")]
    assert restarts[0].startswith("restarting after exit 3, attempt 2 (in "), lines
    assert restarts[1].startswith("restarting after exit 3, attempt 3 (in "), lines
    # each line comes between attempts: after the output of the ones that ended
    before_third = lines[: lines.index(restarts[1])]
    assert sum(line.startswith("attempt-") for line in before_third) == 2, lines
    assert not any("did not finish in time" in line for line in lines)
    assert "was cancelled" in lines[-1]


def test_run_tty_restart_on_failure_attaches_every_attempt(neuro: Neuro) -> None:
    child = spawn(
        neuro,
        "run",
        "-t",
        "-n",
        "flaky-tty",
        "--restart",
        "on-failure",
        neuro.image,
        "--",
        "sh",
        "-c",
        ATTEMPT,
    )
    for attempt in (2, 3):
        child.expect("attempt-")
        child.expect_exact(f"restarting after exit 3, attempt {attempt}")
    child.expect("attempt-")  # the third attempt, attached again
    neuro.ok("kill", "flaky-tty")
    child.expect_exact("was cancelled")
    child.expect(pexpect.EOF)
    child.close()
    assert "did not finish in time" not in child.before
    assert child.exitstatus == job_exit_code(neuro, "flaky-tty", default=3)


# -- 4. Ctrl-C in a script detaches, and the script stops -------------------------------------


def test_ctrl_c_in_a_script_detaches_and_stops_the_loop(neuro: Neuro) -> None:
    # stdin not a terminal: no dialog; the job is not killed by surprise, but the loop stops
    # (with exit 0 it went on to the next iteration, and the next job)
    child = in_shell(
        neuro,
        f"for i in 1 2 3; do {NEURO} run -n loop-$i {neuro.image} -- sh -c "
        f"'{TICKER}' </dev/null; echo ITERATION-$i-RC=$?; done; echo LOOP-END",
    )
    child.expect("tick-2")
    child.sendintr()
    child.expect_exact("Detached from loop-1: it keeps running.")
    child.expect(pexpect.EOF)
    assert "ITERATION" not in child.before and "LOOP-END" not in child.before, child.before
    assert len(job_ids(neuro)) == 1
    assert "Status: running" in neuro.ok("status", "loop-1")

    # the shell shows 130 ($? of a program that SIGINT ended; this one traps INT, so it goes
    # on and says what it saw)
    child = in_shell(
        neuro,
        f"trap 'echo SHELL-GOT-INT' INT; {NEURO} run -n loop-b "
        f"{neuro.image} -- sh -c '{TICKER}' </dev/null; echo RC=$?",
    )
    child.expect("tick-2")
    child.sendintr()
    child.expect(r"RC=(\d+)")
    assert child.match.group(1) == "130"
    for job in neuro.ok("ps", "-q").split():
        neuro.ok("kill", job)


# -- 5. Ctrl-C of a run still waiting to start ------------------------------------------------


def test_ctrl_c_while_pending_asks_or_says_how_to_kill(neuro: Neuro) -> None:
    # one CPU: a job holds it, the next waits for it (a request that can be satisfied)
    neuro("server", "stop")
    neuro.write_server_config(server_toml(neuro.runtime).replace("cpu = 32", "cpu = 1"))
    holder = neuro.ok(
        "run", "-q", "--detach", "--preset", "cpu-medium", neuro.image, "--", "sleep", "300"
    ).strip()
    wait_running(neuro, holder)

    child = spawn(neuro, "run", "-n", "waiting", neuro.image, "--", "true")
    child.expect("Status: pending Scheduling")
    child.sendintr()
    child.expect(r"the job has not started yet\. \[k\]ill it, \[d\]etach \(it stays pending\)")
    child.send("d")
    child.expect_exact("Left waiting pending")
    child.expect_exact("cancel it: neuro kill waiting")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Status: pending" in neuro.ok("status", "waiting")

    child = spawn(neuro, "run", "-n", "doomed", neuro.image, "--", "true")
    child.expect("Status: pending Scheduling")
    child.sendintr()
    child.expect(r"\[k\]ill it")
    child.send("k")
    child.expect_exact("Killed doomed")
    child.expect(pexpect.EOF)
    child.close()
    assert "Status: cancelled" in neuro.ok("status", "doomed")

    # in a script: no question; it says the job is left pending and how to kill it
    p = popen(
        neuro,
        "run",
        "-n",
        "queued",
        neuro.image,
        "--",
        "true",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while "Status: pending" not in neuro("status", "queued").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == -signal.SIGINT, err  # 130 in a shell
    assert "Left queued pending" in err and "neuro kill queued" in err, err
    assert "Status: pending" in neuro.ok("status", "queued")
    neuro.ok("kill", "waiting", "queued")
    neuro.ok("kill", holder)


def test_a_job_that_can_never_start_is_refused_at_once(neuro: Neuro) -> None:
    # item 5: gpu-small on a machine with no GPU pended for ever ("this machine has none")
    r = neuro("run", "--preset", "gpu-small", neuro.image, "--", "true", timeout=30)
    assert r.returncode == 65, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(
        "ERROR: preset gpu-small needs 1 NVIDIA GPU, but this server has "
    ), r.stderr
    assert "no job of it can ever run here (presets that can: cpu-small" in lines[0]
    assert "Traceback" not in r.stderr and neuro.ok("ps", "-a", "-q").strip() == ""
