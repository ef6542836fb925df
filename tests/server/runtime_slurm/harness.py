"""The slurm runtime's tests find the cluster through the CLUSTER fixtures (tests/slurm_cluster.py,
from .ci/slurm-setup.sh's env file) and cancel every Slurm job a test's job dirs name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.slurm_cluster import SKIP_REASON as NO_CLUSTER


def cluster_env() -> dict[str, str] | None:
    """The cluster's env lines (SLURM_CONF...) when its sinfo answers, else None."""
    from tests.slurm_cluster import find_cluster

    found = find_cluster()
    return None if found is None else dict(found.env)


def cluster_or_skip() -> dict[str, str]:
    env = cluster_env()
    if env is None:
        pytest.skip(NO_CLUSTER)
    return env


def cancel_jobs(root: Path, env: dict[str, str]) -> None:
    """scancel the Slurm job of every job dir under ``root`` (its slurm.json)."""
    import json

    ids = []
    for record in root.glob("*/slurm.json"):
        try:
            ids.append(str(json.loads(record.read_text())["slurm_id"]))
        except (OSError, ValueError, KeyError):
            continue
    if ids:
        subprocess.run(
            ["scancel", *ids], env={**os.environ, **env}, capture_output=True, timeout=30
        )
