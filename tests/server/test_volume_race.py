"""A storage volume is pinned where it was checked: a job that swaps a directory of its owner's
tree for a link (what any job with a read-write volume can do) never gets the link's target
mounted, on either runtime.

The swapper exchanges ``race/x`` (a real directory) with a link to the server's data dir
(its database, its signing key) every few milliseconds, atomically (renameat2
RENAME_EXCHANGE), while jobs with ``storage:race/x`` read-only start over and over and list what
they see (each created while ``x`` is the directory: the race is with what comes after the
server's first check).  Before the volume was pinned the engine (or the supervisor) mounted the
path string it was given, checked earlier: the data dir showed up in about half the jobs."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from neuro_server.app import make_app
from neuro_server.config import Preset, load_config
from neuro_server.handlers.common import STATE
from neuro_server.portfence import remove_chain
from neuro_server.runtime import mountns
from neuro_server.runtime.process import ProcessRuntime
from neuro_server.store import Store
from tests.conftest import kill_tree_of
from tests.server.conftest import job_uid_range

RENAME_EXCHANGE = 2
AT_FDCWD = -100
# jobs per runtime: before the fix about half of them had the data dir mounted (the first at
# try 1 to 3, in six runs); 0 of 48 would have happened there with odds of about 1e-14
TRIES = 48
BATCH = 4  # started at once
INSIDE = "inside-marker"
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Server:
    url: str
    session: aiohttp.ClientSession
    token: str
    data_dir: Path
    runtime: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _runtime(kind: str, jobs_dir: Path, instance: str) -> Any:
    if kind == "process":
        if why := mountns.why_unsupported():
            pytest.skip(why)
        return ProcessRuntime(jobs_dir, cgroup_parent=f"neuro-test-{instance}")
    from tests.server.runtime_docker.conftest import ENGINE_URL, WHY_NO_ENGINE

    if WHY_NO_ENGINE:
        pytest.skip(WHY_NO_ENGINE)
    from neuro_server.runtime.docker import DockerRuntime

    return DockerRuntime(ENGINE_URL, root=jobs_dir, instance=instance)


@pytest.fixture(params=["process", "docker"])
async def server(
    request: pytest.FixtureRequest, tmp_path: Path, homes: Path
) -> AsyncIterator[Server]:
    kind = str(request.param)
    data = tmp_path / "server"
    config = load_config(
        data,
        cpu=8.0,
        memory=16 << 30,
        nvidia_gpu=0,
        kill_grace_seconds=1.0,
        presets=(Preset("cpu-small", 0.1, 64 << 20),),
        job_uids=job_uid_range(),
        homes_dir=homes,
    )
    instance = f"t{uuid.uuid4().hex[:10]}"
    runtime = _runtime(kind, config.jobs_dir, instance)
    store = Store(config.db_path)
    app = make_app(config, store, runtime)
    http = TestServer(app, host="127.0.0.1")
    await http.start_server()
    store.add_user("alice")
    token = app[STATE].auth.issue("alice")
    try:
        async with aiohttp.ClientSession() as session:
            yield Server(str(http.make_url("/api/v1")), session, token, data, kind)
    finally:
        await http.close()
        if kind == "docker":
            from tests.server.runtime_docker.conftest import remove_containers, remove_networks

            await runtime.close()
            remove_containers(instance)
            remove_networks(instance)
        kill_tree_of(data)
        remove_chain(data)


class Swapper:
    """Exchanges ``a`` and ``b`` (a directory and a link) every ``period`` seconds, in a thread,
    as a job with the tree as a read-write volume would.  ``paused()``: ``a`` is the directory
    meanwhile (the job is created then, so the server's first check passes; the race is with
    what comes after)."""

    def __init__(self, a: Path, b: Path, period: float = 0.002) -> None:
        self.a, self.b, self.period = bytes(a), bytes(b), period
        self.swaps = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _swap(self) -> None:
        if _libc.renameat2(AT_FDCWD, self.a, AT_FDCWD, self.b, RENAME_EXCHANGE) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")
        self.swaps += 1

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            with self._lock:
                self._swap()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            if self.swaps % 2:
                self._swap()
            yield

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def race_tree(server: Server) -> Iterator[tuple[Path, Path]]:
    """alice's ``race/x`` (a directory holding a marker) and ``race/alt``: a link to the
    server's data dir."""
    from neuro_server import storage

    race = storage.user_root(server.data_dir, "alice") / "race"
    (race / "x").mkdir(parents=True)
    (race / "x" / INSIDE).write_text("in alice's storage\n")
    (race / "alt").symlink_to(server.data_dir)
    assert (server.data_dir / "neuro.db").exists()  # what a leak would show
    yield race / "x", race / "alt"


async def _job(server: Server) -> str:
    """Start a job listing its volume; its id."""
    body = {
        "image": "localhost/busybox:latest",
        "preset_name": "cpu-small",
        "command": "ls -a /mnt",
        "volumes": [{"src_storage_uri": "storage:race/x", "dst_path": "/mnt", "read_only": True}],
    }
    async with server.session.post(
        f"{server.url}/jobs?from_preset", json=body, headers=server.headers
    ) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["id"])


async def _outcome(server: Server, job: str, timeout: float = 60) -> str:
    """What the job saw in its volume (its output), once it ended; "" when it could not
    start."""
    deadline = time.monotonic() + timeout
    while True:
        async with server.session.get(f"{server.url}/jobs/{job}", headers=server.headers) as r:
            status = (await r.json())["status"]
        if status in ("succeeded", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, f"job {job} did not end: {status}"
        await asyncio.sleep(0.05)
    out = server.data_dir / "jobs" / job / "output.log"
    return out.read_text(errors="replace") if out.exists() else ""


async def test_a_volume_swapped_for_a_link_never_mounts_the_links_target(
    server: Server, race_tree: tuple[Path, Path]
) -> None:
    x, alt = race_tree
    seen: list[str] = []  # each try's outcome, in order: what the job listed ("": no start)
    with Swapper(x, alt) as swapper:
        for _ in range(TRIES // BATCH):
            with swapper.paused():
                jobs = await asyncio.gather(*(_job(server) for _ in range(BATCH)))
            seen += await asyncio.gather(*(_outcome(server, j) for j in jobs))
    leaks = [i for i, s in enumerate(seen) if "neuro.db" in s]
    assert not leaks, (
        f"{len(leaks)} of {len(seen)} jobs ({server.runtime}) had the data dir "
        f"mounted, the first at try {leaks[0] + 1}: {seen[leaks[0]]!r}"
    )
    assert swapper.swaps > 100, swapper.swaps
    # and nothing stays mounted on the host
    assert str(server.data_dir) not in Path("/proc/self/mountinfo").read_text()
    # it means something only if jobs did start with the volume (the others failed to start:
    # the link was there when the runtime opened the path)
    assert sum(INSIDE in s for s in seen) >= TRIES // 20, seen
