"""The CLI end to end against the embedded server with the docker runtime (Podman's
Docker-compatible service from .ci/podman-setup.sh): real images, the same commands."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.conftest import Neuro, kill_tree_of

ENGINE = os.environ.get("NEURO_DOCKER_HOST") or "unix:///run/neuro-podman.sock"
IMAGE = os.environ.get("NEURO_DOCKER_TEST_IMAGE") or "localhost/busybox:latest"


def _why_not() -> str | None:
    import shutil

    from tests.server.runtime_docker.conftest import WHY_NO_ENGINE

    if WHY_NO_ENGINE and shutil.which("podman") is None and shutil.which("docker") is None:
        return "podman not installed: run .ci/podman-setup.sh"
    return WHY_NO_ENGINE


pytestmark = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "")


@pytest.fixture
def dneuro(tmp_path: Path) -> Iterator[Neuro]:
    home = tmp_path / "home"
    home.mkdir()
    n = Neuro(home)
    n.write_server_config(
        f'[server]\nkill_grace_seconds = 3\nruntime = "docker"\ndocker_host = "{ENGINE}"\n'
        '[resources]\ncpu = 32\nmemory = "64GiB"\n'
    )
    try:
        yield n
    finally:
        for job in n("ps", "-q").stdout.split():
            n("kill", job, timeout=30)
        n("server", "stop", timeout=30)
        kill_tree_of(n.server_dir)


def test_run_in_the_image(dneuro: Neuro) -> None:
    r = dneuro("run", "--preset", "cpu-small", IMAGE, "--", "sh", "-c",
               "cat /etc/passwd | head -1; echo $((6*7)); exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.splitlines() == ["root:x:0:0:root:/root:/bin/sh", "42"]
    assert "does not use the image" not in r.stderr
    out = dneuro.ok("config", "show")
    assert re.search(r"Runtime: docker \(set in the server config\)", out), out


def test_missing_command_and_missing_image(dneuro: Neuro) -> None:
    r = dneuro("run", IMAGE, "--", "no-such-binary")
    assert r.returncode == 127, (r.stdout, r.stderr)
    assert "no-such-binary" in r.stdout + r.stderr
    r = dneuro("run", "localhost/no-such-image:1", "--", "true")
    assert r.returncode == 125
    assert "ErrImagePull" in r.stderr


def test_exec_attach_and_logs(dneuro: Neuro) -> None:
    job = dneuro.ok("run", "-q", "--detach", "-n", "box", IMAGE, "--", "sh", "-c",
                    "echo started; sleep 60").strip()
    r = dneuro("exec", "-T", "box", "--", "sh", "-c", "echo in-container; exit 4")
    assert r.returncode == 4 and r.stdout == "in-container\n"
    child = pexpect.spawn(sys.executable, ["-m", "neuro_cli", "exec", "-t", "box", "sh"],
                          env=dneuro.env, cwd=str(dneuro.home), encoding="utf-8", timeout=20,
                          dimensions=(30, 70))
    child.sendline("stty size; exit 6")
    child.expect_exact("30 70")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 6
    dneuro.ok("kill", job)
    assert dneuro.ok("logs", job) == "started\n"


def test_server_sigkill_while_containers_run(dneuro: Neuro) -> None:
    script = "i=0; while [ $i -lt 60 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"
    long_job = dneuro.ok("run", "-q", "--detach", IMAGE, "--", "sh", "-c", script).strip()
    short_job = dneuro.ok("run", "-q", "--detach", IMAGE, "--", "sh", "-c", "sleep 1; exit 7").strip()
    follower = dneuro.popen("logs", long_job)
    pid = dneuro.server_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    out, err = follower.communicate(timeout=90)
    assert follower.returncode == 0, err
    assert out.splitlines() == [f"line-{i}" for i in range(60)]
    st = dneuro.ok("status", short_job)
    assert "Exit code: 7" in st
