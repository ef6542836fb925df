"""An in-process server on a loopback port with the real process runtime."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from neuro_server.app import make_app
from neuro_server.config import Preset, load_config
from neuro_server.handlers.common import STATE
from neuro_server.portfence import remove_chain
from neuro_server.runtime import cgroups
from neuro_server.runtime.process import ProcessRuntime
from neuro_server.runtime.registry import capacity_from_config
from neuro_server.store import Store
from tests.conftest import kill_tree_of


@dataclass
class Api:
    url: str
    session: aiohttp.ClientSession
    tokens: dict[str, str]
    data_dir: Path

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture
def machine_gpus() -> int:
    """GPUs the test server believes the machine has (tests override it: the scheduler's
    assignment does not need real ones)."""
    return 0


@pytest.fixture
def server_options() -> dict[str, Any]:
    """More ServerConfig keys for the test server (tests override it, e.g. a storage quota)."""
    return {}


def job_uid_range() -> str:
    """A block of job uids of a test's own (jobusers.py), far from the default range, so that
    tests in parallel never share a uid."""
    base = 100_000_000 + (uuid.uuid4().int % 1_000_000) * 1000
    return f"{base}-{base + 999}"


@pytest.fixture
def homes() -> Iterator[Path]:
    """A homes_dir for users' jobs: open to their uids (0711) on its way from / (pytest's
    tmp_path is not), removed at the end."""
    d = Path(tempfile.mkdtemp(prefix="neuro-homes-"))
    d.chmod(0o711)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def api(
    tmp_path: Path, machine_gpus: int, server_options: dict[str, Any], homes: Path
) -> AsyncIterator[Api]:
    data = tmp_path / "server"
    config = load_config(
        data,
        cpu=8.0,
        memory=16 << 30,
        nvidia_gpu=machine_gpus,
        kill_grace_seconds=2.0,
        presets=(
            Preset("cpu-small", 0.5, 256 << 20),
            Preset("cpu-large", 4.0, 8 << 30),
            Preset("gpu-small", 1.0, 1 << 30, nvidia_gpu=1, nvidia_gpu_model="nvidia-gpu"),
        ),
        max_body_bytes=64 * 1024,
        **{"job_uids": job_uid_range(), "homes_dir": homes, **server_options},
    )
    store = Store(config.db_path)
    runtime = ProcessRuntime(
        config.jobs_dir,
        cgroup_parent=f"neuro-test-{uuid.uuid4().hex[:8]}",
        capacity=capacity_from_config(config),
    )
    app = make_app(config, store, runtime)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    auth = app[STATE].auth
    tokens = {}
    for user in ("alice", "bob"):
        store.add_user(user)
        tokens[user] = auth.issue(user)
    async with aiohttp.ClientSession() as session:
        yield Api(str(server.make_url("/api/v1")), session, tokens, data)
    await server.close()
    kill_tree_of(data)
    cgroups.remove_parent(runtime.cgroup_parent)
    remove_chain(data)  # (kept while jobs ran: they outlive the server)
