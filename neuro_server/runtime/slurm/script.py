"""The batch script of a neuro job and the sbatch command that submits it.

One Slurm job per neuro job: named ``neuro-<job id>`` and commented ``neuro:<job id>``
(commands.py), one task on one node, never requeued by Slurm (a job must not run twice), its
own output (the supervisor's diary: the job's output is the supervisor's output.log) in the
job dir.  The script execs the process runtime's supervisor in the foreground: Slurm's
signals, cgroups and accounting are the supervisor's and the job's."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path

from ..base import JobSpec
from ..process.supervisors import PACKAGE_PARENT
from .commands import job_comment, job_name

SCRIPT = "slurm.sh"
SLURM_OUT = "slurm.out"
#: what the supervisor passes from the batch step's environment to the job (srun in the job,
#: the GPUs Slurm gave it)
HOST_ENV_PREFIXES = ("SLURM_", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")


def batch_script(job_dir: Path, python: str = sys.executable) -> str:
    """The script: exec the supervisor of the job in ``job_dir`` (on the shared filesystem)."""
    argv = [python, "-S", "-m", "neuro_server.runtime.process.supervisor", str(job_dir)]
    return (
        "#!/bin/sh\n"
        f"# neuro job {job_dir.name}: its supervisor owns the job's process and output\n"
        f"export PYTHONPATH={shlex.quote(PACKAGE_PARENT)}\n"
        f"cd {shlex.quote(str(job_dir))} || exit 125\n"
        f"exec {shlex.join(argv)} --foreground\n"
    )


def time_limit(life_span: float | None) -> str | None:
    """sbatch's --time (whole minutes, rounded up) for a life span in seconds; None: none."""
    if life_span is None or life_span <= 0:
        return None
    return str(max(1, math.ceil(life_span / 60)))


def sbatch_argv(
    spec: JobSpec, job_dir: Path, *, partition: str = "", life_span: float | None = None
) -> list[str]:
    """``sbatch --parsable ...`` for ``spec``: its CPUs (whole ones, rounded up), memory (MiB,
    rounded up), GPUs as GRES, partition and time limit; the script is the job dir's
    ``SCRIPT`` (sbatch copies it at submission)."""
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={job_name(spec.job_id)}",
        f"--comment={job_comment(spec.job_id)}",
        "--nodes=1",
        "--ntasks=1",
        "--no-requeue",
        f"--chdir={job_dir}",
        f"--output={job_dir / SLURM_OUT}",
        "--open-mode=append",
    ]
    if spec.cpu > 0:
        argv.append(f"--cpus-per-task={max(1, math.ceil(spec.cpu - 1e-9))}")
    if spec.memory > 0:
        argv.append(f"--mem={max(1, math.ceil(spec.memory / (1 << 20)))}M")
    if spec.gpus > 0:
        argv.append(f"--gres=gpu:{spec.gpus}")
    if partition:
        argv.append(f"--partition={partition}")
    if (minutes := time_limit(life_span)) is not None:
        argv.append(f"--time={minutes}")
    argv.append(str(job_dir / SCRIPT))
    return argv


def parse_sbatch(out: str) -> int:
    """The Slurm job id ``sbatch --parsable`` printed (``N`` or ``N;cluster``)."""
    first = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        return int(first.split(";")[0])
    except ValueError:
        raise ValueError(f"sbatch printed no job id: {out.strip()!r}") from None


def tail(d: Path, size: int = 2000) -> str:
    """The end of the batch step's own output (slurm.out: the supervisor's diary)."""
    try:
        with open(d / SLURM_OUT, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - size))
            text = f.read().decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "(slurm.out is empty)"
