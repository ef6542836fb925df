"""Command tests without a subprocess: a Deps whose client talks to the SDK's stub server
(tests/sdk/stub_server.py) and whose streams are IOStreams.test() buffers."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import AsyncIterator
from typing import Any

from neuro_cli.deps import Deps
from neuro_cli.iostreams import IOStreams
from neuro_sdk import Client
from tests.sdk.helpers import TOKEN, server_config
from tests.sdk.stub_server import StubServer


def stub_config(stub: StubServer) -> dict[str, Any]:
    """A ``GET /config`` whose cluster has its disks, secrets and storage on the stub."""
    config = server_config(str(stub.monitoring_url))
    config["clusters"][0].update(
        disks_url=str(stub.api_url / "disk"),
        secrets_url=str(stub.api_url / "secrets"),
        storage_url=str(stub.api_url / "storage"),
    )
    return config


@dataclasses.dataclass
class StubDeps(Deps):
    """Deps of a command under test: ``client()`` is a client of ``stub``."""

    stub: StubServer | None = None

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        assert self.stub is not None
        async with Client(self.stub.api_url, TOKEN, server_config=stub_config(self.stub)) as c:
            yield c

    @property
    def out(self) -> str:
        assert isinstance(self.io.stdout, io.StringIO)
        return self.io.stdout.getvalue()

    @property
    def err(self) -> str:
        assert isinstance(self.io.stderr, io.StringIO)
        return self.io.stderr.getvalue()


def stub_deps(stub: StubServer | None = None, *, tty: bool = False, stdin: str = "") -> StubDeps:
    streams = IOStreams.test(tty=tty)
    streams.stdin = io.StringIO(stdin)
    return StubDeps(io=streams, stub=stub)
