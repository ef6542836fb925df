"""The process runtime's entry in the registry (registry.py): it can always serve (the last
resort of ``runtime = "auto"``), and reads the config's pids_limit, job_output_limit and
[resources]."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..registry import Found, RuntimePlugin, capacity_from_config

if TYPE_CHECKING:
    from ...config import ServerConfig
    from ..base import Runtime


async def probe(config: ServerConfig, asked: bool, passed_over: Sequence[str]) -> Found:
    if asked:
        return Found("", "set in the server config")
    return Found(
        "",
        ", ".join(passed_over) + ", so jobs run as local processes"
        if passed_over
        else "jobs run as local processes",
    )


def create(config: ServerConfig, found: Found) -> Runtime:
    from .runtime import ProcessRuntime

    return ProcessRuntime(
        config.jobs_dir,
        pids_limit=config.pids_limit,
        output_limit=config.job_output_limit,
        capacity=capacity_from_config(config),
    )


PLUGIN = RuntimePlugin(
    name="process",
    summary="jobs run as local processes on this host (the image is not used)",
    config_keys=("pids_limit", "job_output_limit", "cpu", "memory", "nvidia_gpu"),
    probe=probe,
    create=create,
)
