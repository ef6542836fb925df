"""Volumes and secret files on the process runtime: each job with them gets its own mount
namespace, a view of the host's tree with the volumes in it; nothing is made on the host."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from neuro_server.runtime import mountns
from neuro_server.runtime.base import JobSpec, Mount, RuntimeError_, StdioSession
from neuro_server.runtime.process import ProcessRuntime
from tests.server.runtime.conftest import eventually, output

pytestmark = pytest.mark.skipif(
    bool(mountns.why_unsupported()), reason=mountns.why_unsupported() or ""
)

ROOT = str(Path(__file__).resolve().parents[3])


def job(
    job_id: str,
    script: str,
    *,
    mounts: Sequence[tuple[str, str, bool]] = (),
    files: Sequence[tuple[str, bytes]] = (),
) -> JobSpec:
    """A job; ``mounts`` (host directory, path in the job, read-only), each the root of its
    own tree."""
    return JobSpec(
        job_id=job_id,
        argv=["sh", "-c", script],
        env={},
        working_dir=None,
        cpu=0,
        memory=0,
        mounts=[Mount(src, "", dst, ro) for src, dst, ro in mounts],
        files=files,
    )


@pytest.fixture
def new_path() -> str:
    """A top-level path this host does not have."""
    path = f"/neuro-test-{uuid.uuid4().hex[:10]}"
    assert not os.path.lexists(path)
    return path


def volume_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Two empty host directories: for a read-write and a read-only volume."""
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    return rw, ro


async def read_session(s: StdioSession) -> bytes:
    out = b""
    while (chunk := await s.read()) is not None:
        out += chunk[1]
    return out


async def test_volumes_and_files_in_the_jobs_view_and_not_on_the_host(
    runtime: ProcessRuntime, tmp_path: Path, new_path: str
) -> None:
    rw, ro = volume_dirs(tmp_path)
    (ro / "in.txt").write_text("read me\n")
    secret_dir = f"/etc/{new_path[1:]}"
    script = (
        f"cat {new_path}/ro/in.txt {secret_dir}/key; echo;"
        f"echo out > {new_path}/rw/out.txt && echo wrote-rw;"
        f"(echo x > {new_path}/ro/x) 2>/dev/null && echo WROTE-RO || echo ro-refused;"
        f"(echo x > {secret_dir}/key) 2>/dev/null && echo WROTE-KEY || echo key-refused;"
        f"echo ready; exec sleep 60"
    )
    await runtime.start(
        job(
            "view",
            script,
            mounts=[(str(rw), f"{new_path}/rw", False), (str(ro), f"{new_path}/ro", True)],
            files=[(f"{secret_dir}/key", b"s3cret")],
        )
    )
    await eventually(lambda: b"ready" in output(runtime, "view"))
    assert output(runtime, "view").decode().splitlines() == [
        "read me",
        "s3cret",
        "wrote-rw",
        "ro-refused",
        "key-refused",
        "ready",
    ]
    assert (rw / "out.txt").read_text() == "out\n" and not (ro / "x").exists()
    # the host has none of it: no mount points, nothing under the job's staging directory
    assert not os.path.lexists(new_path) and not os.path.lexists(secret_dir)
    assert list((runtime.root / "view" / "view").iterdir()) == []
    assert new_path not in Path("/proc/self/mounts").read_text()
    # exec beside the job sees its view
    s = await runtime.exec(
        "view", ["sh", "-c", f"cat {secret_dir}/key; ls {new_path}"], tty=False, stdin=False
    )
    assert await read_session(s) == b"s3cretro\nrw\n"
    assert await s.wait() == 0
    await s.close()
    await runtime.stop("view", grace=0)
    await runtime.wait("view")


async def test_a_missing_path_under_a_host_directory_mirrors_it(
    runtime: ProcessRuntime, tmp_path: Path
) -> None:
    """The host's directory stays the host's: its files and subdirectories are written
    through; only the new mount point (and new entries beside it) stay in the job's view."""
    host = tmp_path / "project"
    (host / "results").mkdir(parents=True)
    (host / "log.txt").write_text("one\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "d.txt").write_text("data\n")
    script = (
        f"cat {host}/data/d.txt; echo two >> {host}/log.txt; echo r > {host}/results/r.txt;"
        f"echo scratch > {host}/scratch.txt; ls {host}"
    )
    await runtime.start(job("mirror", script, mounts=[(str(data), f"{host}/data", True)]))
    assert (await runtime.wait("mirror")).exit_code == 0
    assert output(runtime, "mirror").decode().splitlines() == [
        "data",
        "data",
        "log.txt",
        "results",
        "scratch.txt",
    ]
    assert (host / "log.txt").read_text() == "one\ntwo\n"
    assert (host / "results" / "r.txt").read_text() == "r\n"
    assert sorted(p.name for p in host.iterdir()) == ["log.txt", "results"]


async def test_nested_mounts_in_writable_and_read_only_volumes(
    runtime: ProcessRuntime, tmp_path: Path, new_path: str
) -> None:
    rw, ro = volume_dirs(tmp_path)
    script = (
        f"cat {new_path}/rw/k {new_path}/ro/sub/k; echo;"
        f"(echo x > {new_path}/ro/new) 2>/dev/null && echo WROTE || echo ro-refused"
    )
    await runtime.start(
        job(
            "nested",
            script,
            mounts=[(str(rw), f"{new_path}/rw", False), (str(ro), f"{new_path}/ro", True)],
            files=[(f"{new_path}/rw/k", b"A"), (f"{new_path}/ro/sub/k", b"B")],
        )
    )
    assert (await runtime.wait("nested")).exit_code == 0
    assert output(runtime, "nested") == b"AB\nro-refused\n"
    # in a writable volume the mount point is made there, as Docker does; not in a read-only one
    assert [p.name for p in rw.iterdir()] == ["k"] and (rw / "k").read_bytes() == b""
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize(
    ("mounts", "files", "message"),
    [
        ([("DIR", "/etc/hostname", False)], [], "/etc/hostname is a file on this host"),
        ([], [("/etc", b"x")], "/etc is a directory on this host"),
        ([("DIR", "/etc/hostname/x", False)], [], "/etc/hostname is not a directory on this host"),
        ([("/nonexistent-neuro-src", "/x", False)], [], "volume source for /x: No such file"),
    ],
    ids=["dir-on-file", "file-on-dir", "under-a-file", "no-source"],
)
async def test_a_volume_that_cannot_be_placed_fails_the_start(
    runtime: ProcessRuntime,
    tmp_path: Path,
    mounts: list[tuple[str, str, bool]],
    files: list[tuple[str, bytes]],
    message: str,
) -> None:
    mounts = [(str(tmp_path) if src == "DIR" else src, dst, ro) for src, dst, ro in mounts]
    with pytest.raises(RuntimeError_) as e:
        await runtime.start(job("bad", "echo RAN", mounts=mounts, files=files))
    assert str(e.value).startswith(f"cannot place the job's volumes: {message}"), str(e.value)
    assert e.value.reason == "ContainerCannotRun"
    assert b"RAN" not in output(runtime, "bad")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("link", "link: is a symbolic link"),
        ("link/data", "link: is a symbolic link"),
        ("f/x", "f: not a directory"),
        ("nope", "nope: no such file or directory"),
    ],
    ids=["link", "through-a-link", "under-a-file", "missing"],
)
async def test_a_volume_path_is_opened_beneath_its_tree_with_no_link_followed(
    runtime: ProcessRuntime, tmp_path: Path, path: str, message: str
) -> None:
    """The supervisor opens the path itself, beneath the tree's root: a link a job put there
    (to anywhere, even inside the tree) fails the start instead of being followed."""
    tree = tmp_path / "tree"
    (tree / "data").mkdir(parents=True)
    (tree / "f").write_text("file")
    (tree / "link").symlink_to(tree)
    with pytest.raises(RuntimeError_) as e:
        await runtime.start(
            dataclasses.replace(
                job("linked", "echo RAN"),
                mounts=[Mount(str(tree), "data", "/d"), Mount(str(tree), path, "/v")],
            )
        )
    assert str(e.value).startswith(
        f"cannot place the job's volumes: volume source for /v: {message}"
    ), str(e.value)
    assert b"RAN" not in output(runtime, "linked")
    await runtime.start(
        dataclasses.replace(
            job("fine", "ls /v"), mounts=[Mount(str(tree), "data", "/v/x", read_only=True)]
        )
    )
    assert (await runtime.wait("fine")).exit_code == 0 and output(runtime, "fine") == b"x\n"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user may read (tmp_path is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="neuro-userns-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


CHILD = r"""
import os, sys, warnings  # (os.execvp imports warnings: not readable once we are nobody)
sys.path.insert(0, sys.argv[1])
from neuro_server.runtime import mountns
from neuro_server.runtime.base import Mount
src, dst = sys.argv[2], sys.argv[3]
os.setgroups([]); os.setgid(65534); os.setuid(65534)
import ctypes; ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: as if started so
r, w = os.pipe()
job = os.fork()
if job == 0:
    mountns.enter_view([Mount(src, "", dst, True)], [(dst + "-key", b"K")], sys.argv[4],
                       userns=True)
    os.dup2(w, 1)
    os.execvp("sh", ["sh", "-c", f"id -u; cat {dst}/f {dst}-key; echo; "
                     f"(echo x > {dst}/f) 2>/dev/null || echo ro; exec sleep 30"])
os.close(w)
lines = ""
while lines.count("\n") < 3 and (more := os.read(r, 4096)):
    lines += more.decode()
fds = mountns.namespace_fds(job, userns=True)
beside = os.fork()
if beside == 0:
    mountns.enter(fds)
    os.execvp("sh", ["sh", "-c", f"cat {dst}-key; id -u"])
os.waitpid(beside, 0)
os.kill(job, 9)
os.waitpid(job, 0)
print("job:", lines.replace("\n", " "), flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the check as another user")
def test_a_user_namespace_when_the_supervisor_is_not_root(shared_dir: Path, new_path: str) -> None:
    """A supervisor that is not root: a user namespace mapping only its own uid (who needs
    unprivileged user namespaces); the job and exec beside it keep that uid."""
    if (
        Path("/proc/sys/kernel/unprivileged_userns_clone").exists()
        and Path("/proc/sys/kernel/unprivileged_userns_clone").read_text().strip() == "0"
    ):
        pytest.skip("unprivileged user namespaces are off (kernel.unprivileged_userns_clone)")
    src = shared_dir / "src"
    src.mkdir()
    (src / "f").write_text("file")
    src.chmod(0o755)
    (src / "f").chmod(0o644)
    staging = shared_dir / "view"
    staging.mkdir()
    staging.chmod(0o777)
    pkg = shared_dir / "pkg"
    shutil.copytree(Path(ROOT) / "neuro_server", pkg / "neuro_server")
    for p in [pkg, *pkg.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    r = subprocess.run(
        [sys.executable, "-S", "-c", CHILD, str(pkg), str(src), new_path, str(staging)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "K65534\njob: 65534 fileK ro \n", r.stdout
    assert not os.path.lexists(new_path) and (src / "f").read_text() == "file"
