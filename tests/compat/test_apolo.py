"""The official client (apolo-cli from PyPI, in its own virtual environment) against our server."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Neuro
from tests.e2e.conftest import http_server_job

APOLO_VERSION = "26.9.0"
VENV = Path(os.environ.get("NEURO_APOLO_VENV") or Path.home() / ".cache/neuro-tests/apolo-venv")

pytestmark = pytest.mark.compat


def apolo_bin() -> Path:
    """Create the venv on first use (one process at a time under xdist)."""
    exe = VENV / "bin" / "apolo"
    if exe.exists():
        return exe
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "apolo-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exe.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run(
                [str(VENV / "bin" / "pip"), "install", "-q", f"apolo-cli=={APOLO_VERSION}"],
                check=True,
                timeout=600,
            )
    return exe


@pytest.fixture
def apolo(neuro: Neuro, tmp_path: Path):  # type: ignore[no-untyped-def]
    exe = apolo_bin()
    home = tmp_path / "apolo-home"
    home.mkdir()

    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    argv0 = [str(exe), "--disable-pypi-version-check", "--skip-stats"]

    def call(*args: str, timeout: float = 60, background: bool = False):  # type: ignore[no-untyped-def]
        if background:
            return subprocess.Popen(
                [*argv0, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        return subprocess.run(
            [*argv0, *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    call.home = str(home)  # type: ignore[attr-defined]
    return call


@pytest.mark.timeout(300)
def test_official_client_against_our_server(neuro: Neuro, apolo) -> None:  # type: ignore[no-untyped-def]
    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    token = neuro.ok("config", "show-token").strip()

    r = apolo("config", "login-with-token", token, url)
    assert r.returncode == 0, r.stderr
    assert f"Logged into {url} as " in r.stdout

    # a job started by our CLI is visible to theirs
    ours = neuro.ok(
        "run", "-q", "--detach", "-n", "from-neuro", neuro.image, "--", "sleep", "60"
    ).strip()
    r = apolo("ps")
    assert r.returncode == 0, r.stderr
    assert ours in r.stdout and "from-neuro" in r.stdout

    # run --detach: the job runs, with the official client's default flags (http port, shm, 1d)
    r = apolo(
        "run",
        "--detach",
        "--preset",
        "cpu-small",
        "-n",
        "from-apolo",
        neuro.image,
        "--",
        "sh",
        "-c",
        "echo hello-from-apolo; sleep 60",
    )
    assert r.returncode == 0, r.stderr
    theirs = re.search(r"job-[0-9a-f-]{36}", r.stdout)
    assert theirs, r.stdout
    job_id = theirs.group(0)

    r = apolo("status", job_id)
    assert r.returncode == 0, r.stderr
    assert "running" in r.stdout and "from-apolo" in r.stdout and "cpu-small" in r.stdout

    # our CLI sees their job, with the life span they asked for
    st = neuro.ok("status", "from-apolo")
    assert "Life span: 1d" in st

    # logs follow a running job, and end when it is killed
    follower = apolo("logs", job_id, background=True)
    r = apolo("kill", job_id)
    assert r.returncode == 0, r.stderr
    assert job_id in r.stdout
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert "hello-from-apolo" in out
    r = apolo("logs", job_id)  # and print a finished job's output
    assert r.returncode == 0 and "hello-from-apolo" in r.stdout
    assert "Status: cancelled (UserRequested)" in neuro.ok("status", job_id)

    # kill of something that does not exist fails with exit 1, as the official client does
    r = apolo("kill", "job-00000000-0000-0000-0000-000000000000")
    assert r.returncode == 1

    # a reference that cannot be a job is an illegal argument (65), as on the platform; only a
    # valid, unknown name is "not found"
    r = apolo("exec", "job_id", "true")
    assert r.returncode == 65, (r.returncode, r.stdout, r.stderr)
    assert "invalid job name 'job_id'" in r.stderr
    r = apolo("status", "no-such-job")
    assert r.returncode != 65 and r.returncode != 0, (r.returncode, r.stderr)

    r = apolo("ps", "-a")
    assert job_id in r.stdout
    neuro.ok("kill", ours)


@pytest.mark.timeout(300)
def test_official_client_interactive_commands(neuro: Neuro, apolo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import socket
    import urllib.request

    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    r = apolo("config", "login-with-token", neuro.ok("config", "show-token").strip(), url)
    assert r.returncode == 0, r.stderr

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    job_port, local = free_port(), free_port()
    job, _ = http_server_job(neuro, job_port, "served to apolo\n", tmp_path / "www")

    r = apolo("exec", "-T", job, "--", "sh", "-c", "echo in-job; exit 4")
    assert r.returncode == 4, r.stderr
    assert "in-job" in r.stdout

    r = apolo("top", "--timeout", "3", job)
    assert r.returncode == 124, r.stderr  # apolo top ends its --timeout with 124
    assert job in r.stdout
    assert re.search(r"\d\.\d{3}", r.stdout), r.stdout  # a CPU figure arrived

    fwd = apolo("port-forward", job, f"{local}:{job_port}", background=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, (
                    fwd.stderr.read() if fwd.poll() is not None else "no answer"
                )
                time.sleep(0.2)
        assert b"served to apolo" in body
    finally:
        fwd.terminate()
        fwd.communicate(timeout=30)

    # attach to a non-TTY job: its output streams live, and the attach ends when the job does
    talker = neuro.ok(
        "run",
        "-q",
        "--detach",
        neuro.image,
        "--",
        "sh",
        "-c",
        "while :; do echo from-attached-job; sleep 0.2; done",
    ).strip()
    attached = apolo("attach", talker, background=True)
    try:
        seen = []  # apolo's banner, then what the job printed after apolo attached
        while "from-attached-job" not in (line := attached.stdout.readline()):
            assert line, (seen, attached.stderr.read())  # apolo ended without the job's output
            seen.append(line)
        neuro.ok("kill", talker)
        attached.communicate(timeout=60)
    finally:
        attached.kill()
        attached.communicate()
    neuro.ok("kill", job)


@pytest.mark.timeout(300)
def test_official_client_secrets(neuro: Neuro, apolo) -> None:  # type: ignore[no-untyped-def]
    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    r = apolo("config", "login-with-token", neuro.ok("config", "show-token").strip(), url)
    assert r.returncode == 0, r.stderr
    r = apolo("secret", "add", "from-apolo", "apolo-value-1")
    assert r.returncode == 0, r.stderr
    assert "from-apolo" in neuro.ok("secret", "ls")
    neuro.ok("secret", "add", "from-neuro", "neuro-value-2")
    r = apolo("secret", "ls")
    assert r.returncode == 0 and "from-neuro" in r.stdout and "neuro-value-2" not in r.stdout
    # their run with -e VAR=secret:KEY (a full secret:// URI on the wire) gets the value
    r = apolo(
        "run",
        "--preset",
        "cpu-small",
        "-e",
        "V=secret:from-apolo",
        neuro.image,
        "--",
        "sh",
        "-c",
        "echo got=$V",
    )
    assert r.returncode == 0, r.stderr
    assert "got=apolo-value-1" in r.stdout
    r = apolo("secret", "rm", "from-apolo")
    assert r.returncode == 0, r.stderr
    assert "from-apolo" not in neuro.ok("secret", "ls")


@pytest.mark.timeout(180)
def test_official_client_attach_to_a_tty_job_shows_its_screen(neuro: Neuro, apolo) -> None:  # type: ignore[no-untyped-def]
    """`apolo attach` at 24x80 to a TTY job whose terminal already is 24x80: the shell redraws
    its prompt at once (the attach's resize signals it even when the size does not change);
    typing echoes; Ctrl-P Ctrl-Q detaches and the job goes on."""
    import pexpect

    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    r = apolo("config", "login-with-token", neuro.ok("config", "show-token").strip(), url)
    assert r.returncode == 0, r.stderr
    shell = ["bash", "--norc", "--noprofile"] if neuro.runtime != "docker" else ["sh"]
    job = neuro.ok(
        "run", "-q", "--detach", "-t", "-e", "PS1=tty-prompt$ ", neuro.image, "--", *shell
    ).strip()
    # the shell has drawn its first prompt long before anyone attaches
    logs = pexpect.spawn(
        sys.executable, ["-m", "neuro_cli", "logs", job], env=neuro.env, cwd=str(neuro.home)
    )
    try:
        logs.expect("tty-prompt", timeout=20)
    finally:
        logs.close(force=True)

    child = pexpect.spawn(
        str(apolo_bin()),
        ["--disable-pypi-version-check", "--skip-stats", "attach", job],
        env={"HOME": apolo.home, "PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TERM": "xterm"},
        dimensions=(24, 80),
        timeout=20,
    )
    try:
        child.expect("tty-prompt")  # drawn again for this attach, before any key
        child.send("echo typed-$((6*7))\r")
        child.expect("typed-42")
        child.sendcontrol("p")
        child.sendcontrol("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert "running" in neuro.ok("status", job)
    neuro.ok("kill", job)


@pytest.mark.timeout(240)
def test_official_client_restarting_job_stays_running(neuro: Neuro, apolo) -> None:  # type: ignore[no-untyped-def]
    """A job whose command keeps failing, run with `--restart on-failure`: as on the platform,
    `apolo status` says running between its runs (the backoff is the reason, Restarting), after
    its first failure and after its second."""
    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    r = apolo("config", "login-with-token", neuro.ok("config", "show-token").strip(), url)
    assert r.returncode == 0, r.stderr
    r = apolo(
        "run",
        "--detach",
        "--preset",
        "cpu-small",
        "--restart",
        "on-failure",
        neuro.image,
        "--",
        "sh",
        "-c",
        "echo attempt; exit 3",
    )
    assert r.returncode == 0, r.stderr
    found = re.search(r"job-[0-9a-f-]{36}", r.stdout)
    assert found, r.stdout
    job_id = found.group(0)
    seen: list[tuple[str, int]] = []  # (status, restarts) of each `apolo status`
    deadline = time.monotonic() + 60
    while not seen or seen[-1][1] < 2:  # (its second failure)
        assert time.monotonic() < deadline, seen
        r = apolo("status", job_id)
        assert r.returncode == 0, r.stderr
        status = re.search(r"Status\s+(\w+(?: \(\w+\))?)", r.stdout)
        restarts = re.search(r"Restarts\s+(\d+)", r.stdout)
        assert status, r.stdout
        seen.append((status.group(1), int(restarts.group(1)) if restarts else 0))
    after_first = [s for s, n in seen if n >= 1]
    assert after_first and all(s.startswith("running") for s in after_first), seen
    r = apolo("status", job_id)  # and again, a moment later
    assert re.search(r"Status\s+running", r.stdout), r.stdout
    st = neuro.ok("status", job_id)
    assert "pending (Restarting)" not in st and "running (Restarting)" in st
    r = apolo("kill", job_id)
    assert r.returncode == 0, r.stderr
    assert "Status: cancelled (UserRequested)" in neuro.ok("status", job_id)
