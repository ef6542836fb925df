"""What only the docker runtime does, through the CLI: the job runs in its image, a missing
image fails the job.  The rest of the end-to-end suite runs on both runtimes (conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Neuro, kill_tree_of
from tests.e2e.conftest import IMAGE, remove_containers_of, server_toml, why_no_engine

pytestmark = pytest.mark.skipif(bool(why_no_engine()), reason=why_no_engine() or "")


@pytest.fixture
def dneuro(tmp_path: Path) -> Iterator[Neuro]:
    home = tmp_path / "home"
    home.mkdir()
    n = Neuro(home)
    n.runtime, n.image = "docker", IMAGE
    n.write_server_config(server_toml("docker"))
    try:
        yield n
    finally:
        for job in n("ps", "-q").stdout.split():
            n("kill", job, timeout=30)
        n("server", "stop", timeout=30)
        kill_tree_of(n.server_dir)
        remove_containers_of(n)


def test_run_in_the_image(dneuro: Neuro) -> None:
    r = dneuro(
        "run",
        "--preset",
        "cpu-small",
        IMAGE,
        "--",
        "sh",
        "-c",
        "cat /etc/passwd | head -1; echo $((6*7)); exit 3",
    )
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


def test_port_forward_through_an_exec_relay(dneuro: Neuro, tmp_path: Path) -> None:
    """Where the engine's containers cannot be reached from its host (rootless), ports are
    reached through a relay exec'd in the container; forced here with port_connect = "exec"."""
    import hashlib
    import socket
    import time
    import urllib.request

    from tests.e2e.conftest import http_server_job

    dneuro.write_server_config(server_toml("docker", server='port_connect = "exec"\n'))

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    job_port, local = free_port(), free_port()
    job, blob_sha = http_server_job(dneuro, job_port, "relayed\n", tmp_path / "www", blob_mib=8)
    fwd = dneuro.popen("port-forward", job, f"{local}:{job_port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                body = urllib.request.urlopen(
                    f"http://127.0.0.1:{local}/index.html", timeout=5
                ).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the forward never answered"
                time.sleep(0.2)
        assert body == b"relayed\n"
        data = urllib.request.urlopen(f"http://127.0.0.1:{local}/blob", timeout=60).read()
        assert hashlib.sha256(data).hexdigest() == blob_sha
    finally:
        fwd.kill()
        fwd.communicate(timeout=30)
    dneuro.ok("kill", job)


def test_pass_config_reaches_the_embedded_server_and_starts_a_sub_job(dneuro: Neuro) -> None:
    """The embedded server is on loopback: the job's passed config names a door on its
    network's gateway, through which the job (busybox: wget, no CLI in the image) lists its
    owner's jobs and starts one, with its own token."""
    import json

    body = json.dumps(
        {"image": IMAGE, "command": "echo child-ran", "name": "child", "preset_name": "cpu-small"}
    )
    script = (
        'cfg=$(echo "$NEURO_PASSED_CONFIG" | base64 -d); '
        """url=$(echo "$cfg" | sed 's/.*"url": "\\([^"]*\\)".*/\\1/'); """
        """tok=$(echo "$cfg" | sed 's/.*"token": "\\([^"]*\\)".*/\\1/'); """
        'echo "url=$url"; auth="Authorization: Bearer $tok"; '
        'wget -q -O - --header "$auth" "$url/jobs" && echo && '
        'wget -q -O - --header "$auth" --header "Content-Type: application/json" '
        f"--post-data '{body}' \"$url/jobs?from_preset\" && echo && "
        'wget -q -O - "$url/jobs" || echo refused-without-token'
    )
    r = dneuro("run", "--pass-config", "-n", "parent", IMAGE, "--", "sh", "-c", script, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    server = json.loads((dneuro.server_dir / "server.json").read_text())["url"]
    url = re.search(r"url=(\S+)", r.stdout)
    assert url and url.group(1) != server and "127.0.0.1" not in url.group(1), r.stdout
    assert url.group(1).endswith(":" + server.rsplit(":", 1)[1])  # the server's port
    assert '"name": "parent"' in r.stdout or '"name":"parent"' in r.stdout, r.stdout
    assert "refused-without-token" in r.stdout  # the door leads to the API, tokens and all
    child = dneuro.wait_status("child", {"succeeded"}, timeout=60)
    assert "succeeded" in child
    assert dneuro.ok("logs", "child") == "child-ran\n"
    owner = dneuro.ok("config", "show").splitlines()[0].removeprefix("User: ")
    assert f"Owner: {owner}" in dneuro.ok("status", "child")


def test_a_pass_config_jobs_door_opens_again_after_a_server_restart(dneuro: Neuro) -> None:
    job = dneuro.ok(
        "run", "-q", "--detach", "--pass-config", IMAGE, "--", "sh", "-c", "sleep 600"
    ).strip()
    fetch = (
        'cfg=$(echo "$NEURO_PASSED_CONFIG" | base64 -d); '
        """url=$(echo "$cfg" | sed 's/.*"url": "\\([^"]*\\)".*/\\1/'); """
        """tok=$(echo "$cfg" | sed 's/.*"token": "\\([^"]*\\)".*/\\1/'); """
        'wget -q -O - --header "Authorization: Bearer $tok" "$url/jobs/$0"'
    )
    assert job in dneuro.ok("exec", "-T", job, "--", "sh", "-c", fetch, job)
    dneuro.ok("server", "stop")
    dneuro.ok("server", "start")
    r = dneuro("exec", "-T", job, "--", "sh", "-c", fetch, job)
    assert r.returncode == 0 and job in r.stdout, r.stdout + r.stderr
    dneuro.ok("kill", job)
