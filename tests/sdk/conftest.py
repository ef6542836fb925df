from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from neuro_sdk import Client

from .helpers import TOKEN, server_config
from .stub_server import StubServer


@pytest.fixture(autouse=True)
def clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("NEURO_", "APOLO_")):
            monkeypatch.delenv(name)
    # never touch the real ~/.neuro
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    yield


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = StubServer()
    await server.start()
    try:
        yield server
        server.verify()
    finally:
        await server.stop()


@pytest.fixture
def raw_config(stub: StubServer) -> dict:
    return server_config(str(stub.monitoring_url))


@pytest.fixture
async def client(stub: StubServer, raw_config: dict) -> AsyncIterator[Client]:
    async with Client(stub.api_url, TOKEN, server_config=raw_config) as client:
        yield client
