"""Deps: what a command may use, as lazy providers (no network or heavy import until asked)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .iostreams import IOStreams

if TYPE_CHECKING:
    from neuro_sdk import Client


def _now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class Deps:
    io: IOStreams
    verbose: int = 0
    now: Callable[[], datetime] = _now
    # the command's own SIGINT handler (set by run_async); code that takes SIGINT over for a
    # while (the Ctrl-C dialog) puts it back afterwards
    on_sigint: Callable[[], None] | None = None

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        """A client for the logged-in server, else for the embedded local server (started on
        first use)."""
        from neuro_sdk import Factory

        from . import embedded

        factory = Factory(embedded.config_dir())
        if not factory.is_logged_in() and factory.passed_config() is None:
            embedded.ensure_started()
        client = await factory.get()
        try:
            yield client
        finally:
            await client.close()
