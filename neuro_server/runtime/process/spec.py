"""What the process runtime writes for a job's supervisor (spec.json, read by
supervisor/job.py): the JobSpec, the runtime's settings, and the environment the job gets from
the server's."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ..base import JobSpec
from ..jobdir import iso_now

# what a job of the process runtime inherits from the server's environment, as srun passes
# the submitter's (`-e` wins): the language and time zone for every job; where programs are,
# who the user is and their own tools (a virtualenv, conda) for the server's own user's jobs
# only (the embedded server has its user's environment; a job of a uid of its own has its own
# HOME and the standard PATH: the server's may name directories that uid cannot enter)
HOST_ENV = ("LANG", "LANGUAGE", "TZ")
OWN_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "XDG_CACHE_HOME",
    "HF_HOME",
    "TORCH_HOME",
)


def job_environment(own_user: bool, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a job gets from the server's environment (see HOST_ENV, OWN_ENV)."""
    environ = os.environ if environ is None else environ
    names = HOST_ENV + OWN_ENV if own_user else HOST_ENV
    return {
        k: v
        for k, v in environ.items()
        if k in names or k.startswith("LC_") or (own_user and k.startswith("NVIDIA_"))
    }


def spec_record(
    spec: JobSpec,
    *,
    cgroup_parent: str,
    cgroup_root: str,
    attach_max_lag: int | None,
    pids_limit: int,
    output_limit: int,
) -> dict[str, Any]:
    """spec.json of the job ``spec``."""
    return {
        "job_id": spec.job_id,
        "argv": list(spec.argv),
        "env": {**job_environment(spec.uid is None), **spec.env},
        "working_dir": spec.working_dir,
        "cpu": spec.cpu,
        "memory": spec.memory,
        "tty": spec.tty,
        "image": spec.image,
        "owner": spec.owner,
        # who the job and its execs run as (None: the server's user), and its home
        "uid": spec.uid,
        "gid": spec.gid,
        "home": spec.home,
        "cgroup_parent": cgroup_parent,
        "cgroup_root": cgroup_root,
        "attach_max_lag": attach_max_lag,
        "pids_limit": pids_limit,
        "output_limit": output_limit,
        # volumes and secret files, placed in the job's own mount namespace
        # (each a tree's root and a path beneath it: the supervisor opens the path
        # beneath the root itself, no link followed, when it mounts it)
        "mounts": [dataclasses.asdict(m) for m in spec.mounts],
        "files": [[dst, base64.b64encode(data).decode()] for dst, data in spec.files],
        "created_at": iso_now(),
    }
