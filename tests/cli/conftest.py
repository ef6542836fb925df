"""Fixtures of the command tests that need no subprocess: the SDK's stub server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sdk.stub_server import StubServer


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = StubServer()
    await server.start()
    try:
        yield server
        server.verify()
    finally:
        await server.stop()
