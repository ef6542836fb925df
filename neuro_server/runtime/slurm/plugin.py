"""The slurm runtime's entry in the registry (registry.py): never chosen by ``runtime =
"auto"``; ``--runtime slurm`` / ``runtime = "slurm"`` asks for it.  It serves where ``sinfo``
answers (SLURM_CONF from the server config's ``slurm_conf``, else the environment)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..registry import Found, RuntimePlugin, Unavailable

if TYPE_CHECKING:
    from ...config import ServerConfig
    from ..base import Runtime


def slurm_env(config: ServerConfig) -> dict[str, str]:
    """The environment of the Slurm commands: SLURM_CONF as the config says, if it does."""
    conf = getattr(config, "slurm_conf", None)
    return {"SLURM_CONF": str(conf)} if conf else {}


async def probe(config: ServerConfig, asked: bool, passed_over: Sequence[str]) -> Found:
    env = {**os.environ, **slurm_env(config)}
    where = env.get("SLURM_CONF", "the default slurm.conf")
    try:
        proc = await asyncio.create_subprocess_exec(
            "sinfo",
            "-h",
            "-o",
            "%n",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    except FileNotFoundError:
        raise Unavailable("slurm: sinfo not found (the Slurm client commands)") from None
    except TimeoutError:
        proc.kill()
        raise Unavailable(f"slurm: sinfo did not answer within 15 s ({where})") from None
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines() or [f"exit {proc.returncode}"]
        raise Unavailable(f"slurm: sinfo failed ({where}): {lines[-1]}")
    nodes = sorted(set(out.decode().split()))
    return Found(where, f"Slurm answers ({len(nodes)} nodes: {', '.join(nodes)})")


def create(config: ServerConfig, found: Found) -> Runtime:
    from .runtime import SlurmRuntime

    return SlurmRuntime(
        config.jobs_dir,
        env=slurm_env(config),
        partitions={p.name: p.partition for p in config.presets if p.partition},
        output_limit=config.job_output_limit,
    )


PLUGIN = RuntimePlugin(
    name="slurm",
    summary="jobs run on a Slurm cluster's nodes, one Slurm job each (the image is not used)",
    config_keys=("slurm_conf", "job_output_limit", "presets"),
    probe=probe,
    create=create,
    auto=False,
)
