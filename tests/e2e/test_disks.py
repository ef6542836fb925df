"""Disks end to end, on both runtimes: created with `neuro disk`, persistent across jobs, one
writer at a time (a second waits with DiskUnavailable), the size enforced."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from tests.conftest import Neuro


def _status(neuro: Neuro, job: str) -> str:
    return next(
        line for line in neuro.ok("status", job).splitlines() if line.startswith("Status: ")
    )


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 (e2fsprogs) not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root (the disks' mount tool)")
def test_disk_persists_one_writer_and_size(neuro: Neuro) -> None:
    disk_id = neuro.ok("disk", "create", "32M", "--name", "cache").strip()
    assert disk_id.startswith("disk-")
    listed = json.loads(neuro.ok("disk", "ls", "--json"))
    assert [(d["name"], d["storage"]) for d in listed] == [("cache", 32 << 20)]
    r = neuro("disk", "create", "32M", "--name", "cache")
    assert r.returncode != 0 and "already have a disk named 'cache'" in r.stderr

    r = neuro("run", "-v", "disk:cache:/cache", neuro.image, "--", "sh", "-c", "echo hi > /cache/f")
    assert r.returncode == 0, r.stderr
    # persistent: a later job reads what the first wrote
    r = neuro("run", "-v", "disk:cache:/cache:ro", neuro.image, "--", "cat", "/cache/f")
    assert r.returncode == 0 and r.stdout == "hi\n", r.stderr
    # one writer at a time: the second writer waits until the first ends
    first = neuro.ok(
        "run",
        "-q",
        "--detach",
        "-v",
        "disk:cache:/cache",
        neuro.image,
        "--",
        "sh",
        "-c",
        "echo one >> /cache/log; sleep 60",
    ).strip()
    neuro.wait_status(first, {"running"})
    second = neuro.ok(
        "run",
        "-q",
        "--detach",
        "-v",
        "disk:cache:/cache",
        neuro.image,
        "--",
        "sh",
        "-c",
        "echo two >> /cache/log; cat /cache/log",
    ).strip()
    deadline = time.monotonic() + 20
    while "DiskUnavailable" not in _status(neuro, second):
        assert time.monotonic() < deadline, neuro.ok("status", second)
        time.sleep(0.1)
    assert "Waiting for job" in neuro.ok("status", second) and "one writer at a time" in neuro.ok(
        "status", second
    )
    r = neuro("disk", "rm", "cache")
    assert r.returncode != 0 and "in use by" in r.stderr
    neuro.ok("kill", first)
    neuro.wait_status(second, {"succeeded"})
    assert neuro.ok("logs", second) == "one\ntwo\n"
    # the size is the filesystem's: writing more fails
    r = neuro(
        "run",
        "-v",
        "disk:cache:/cache",
        neuro.image,
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/cache/big bs=1M count=64 2>/dev/null || echo write-failed;"
        " du -m /cache/big | cut -f1; rm -f /cache/big",
    )
    failed, mib = r.stdout.split()
    assert failed == "write-failed" and int(mib) <= 32, r.stdout
    neuro.wait_status(r.stderr.split("Job ID: ")[1].split()[0], {"succeeded", "failed"})
    assert neuro.ok("disk", "rm", "cache").split() == ["cache"]
    assert json.loads(neuro.ok("disk", "ls", "--json")) == []
