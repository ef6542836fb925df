"""Sharing a job, on both runtimes: read lets another user see it and its logs, write also lets
them exec and kill it; nothing without a share; revoked means gone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Neuro
from tests.e2e.conftest import server_toml


def _other_user(neuro: Neuro, tmp_path: Path, name: str) -> Neuro:
    token = subprocess.run(
        ["neuro-server", "add-user", name, "--data-dir", str(neuro.server_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=neuro.env,
    ).stdout.strip()
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    home = tmp_path / name
    home.mkdir()
    other = Neuro(home)
    other.ok("login", url, "--token", token)
    return other


def test_share_read_write_revoke(neuro: Neuro, tmp_path: Path) -> None:
    job = neuro.ok(
        "run",
        "-q",
        "--detach",
        "-n",
        "shared",
        neuro.image,
        "--",
        "sh",
        "-c",
        "echo hello-bob; sleep 60",
    ).strip()
    mine_only = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "60").strip()
    bob = _other_user(neuro, tmp_path, "bob")
    assert bob.ok("ps", "-q") == ""
    r = bob("status", job)
    assert r.returncode == 77 and "no permission to access" in r.stderr

    r = neuro("share", "shared", "bob")
    assert r.returncode == 0 and f"Shared job {job} with bob (read)" in r.stderr
    assert bob.ok("ps", "-q").split() == [job]  # shared jobs are listed; the other one is not
    owner = neuro.ok("config", "show").splitlines()[0].removeprefix("User: ")
    assert bob.ok("ps", "-q", "-o", owner).split() == [job]  # by its owner
    assert "Status: running" in bob.ok("status", job)
    neuro.wait_status(job, {"running"})
    r = bob("exec", "-T", job, "--", "true")
    assert r.returncode == 77 and "no permission to write (shared with you: read)" in r.stderr
    r = bob("kill", job)
    assert r.returncode == 1 and "no permission" in r.stderr
    r = bob("share", job, "carol")  # read cannot share further
    assert r.returncode != 0

    neuro.ok("share", job, "bob", "write")
    assert neuro.ok("share", "--list", job).splitlines() == ["USER\tACCESS", "bob\twrite"]
    r = bob("share", "--list", job)  # (write does not show who else has access)
    assert r.returncode == 77
    r = neuro("share", job)
    assert r.returncode == 2 and "--list" in r.stderr
    r = bob("exec", "-T", job, "--", "sh", "-c", "echo in-job")
    assert r.returncode == 0 and r.stdout == "in-job\n"
    assert bob.ok("kill", job).split() == [job]
    assert "cancelled (UserRequested)" in neuro.ok("status", job)
    assert "hello-bob" in bob.ok("logs", job)

    neuro.ok("share", "--revoke", job, "bob")
    r = bob("status", job)
    assert r.returncode == 77
    assert bob.ok("ps", "-a", "-q") == ""
    r = neuro("share", job, "nobody-like-this")
    assert r.returncode == 72 and "no user 'nobody-like-this'" in r.stderr
    neuro.ok("kill", mine_only)


def test_a_server_that_cannot_keep_users_apart_runs_only_its_users_jobs(
    neuro: Neuro, tmp_path: Path
) -> None:
    """(process runtime, job_uids off, as a server that is not root: jobusers.py)"""
    if neuro.runtime != "process":
        pytest.skip("containers keep users apart")
    neuro.write_server_config(server_toml("process", server='job_uids = "off"\n'))
    r = neuro("run", neuro.image, "--", "echo", "mine")
    assert r.returncode == 0 and r.stdout == "mine\n", r.stderr
    out = neuro.ok("config", "show")
    me = out.splitlines()[0].removeprefix("User: ")
    assert f"  users: not kept apart: every job runs as {me} (job_uids is off)\n" in out, out
    bob = _other_user(neuro, tmp_path, "bob")
    r = bob("run", neuro.image, "--", "echo", "bobs")
    assert r.returncode != 0 and "bobs" not in r.stdout
    assert (
        f"this server cannot keep users apart (job_uids is off): it runs only {me}'s jobs; "
        f"its admin may run every user's jobs as {me} with allow_shared_uid = true in "
        "server.toml"
    ) in r.stderr, r.stderr
    assert bob.ok("ps", "-a", "-q") == ""


def test_run_share_shares_the_job_as_it_starts(neuro: Neuro, tmp_path: Path) -> None:
    neuro.ok("server", "start")
    bob = _other_user(neuro, tmp_path, "bob")
    job = neuro.ok(
        "run", "-q", "--detach", "--share", "bob", neuro.image, "--", "sleep", "60"
    ).strip()
    assert neuro.ok("share", "--list", job).splitlines() == ["USER\tACCESS", "bob\twrite"]
    assert bob.ok("kill", job).split() == [job]  # write: bob may stop it
    r = neuro("run", "-q", "--detach", "--share", "nobody", neuro.image, "--", "sleep", "60")
    assert r.returncode == 72
    started = neuro.ok("ps", "-q").split()
    assert len(started) == 1  # it runs: only the share failed, and the error says so
    assert f"job {started[0]} was started, but not shared with nobody" in r.stderr
    neuro.ok("kill", started[0])
