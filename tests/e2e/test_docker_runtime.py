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
