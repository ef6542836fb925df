"""The toy runtime's entry in the registry (neuro_server/runtime/registry.py): never chosen by
``auto``; it serves wherever it is asked for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from neuro_server.runtime.registry import Found, RuntimePlugin, capacity_from_config

if TYPE_CHECKING:
    from neuro_server.config import ServerConfig
    from neuro_server.runtime.base import Runtime


async def probe(config: ServerConfig, asked: bool, passed_over: Sequence[str]) -> Found:
    return Found("", "set in the server config")


def create(config: ServerConfig, found: Found) -> Runtime:
    from .runtime import ToyRuntime

    return ToyRuntime(config.jobs_dir, capacity=capacity_from_config(config))


PLUGIN = RuntimePlugin(
    name="toy",
    summary="jobs run as plain subprocesses of the server (tests)",
    config_keys=("cpu", "memory", "nvidia_gpu"),
    probe=probe,
    create=create,
    auto=False,
)
