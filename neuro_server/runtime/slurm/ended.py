"""How a job ended that Slurm ended, where its supervisor could not say it (a node failure, a
hard cancel, the time limit): Slurm's own account (sacct, else squeue), in words."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..jobdir import EXIT, exit_record, iso_now, read_json, write_record
from . import states
from .commands import Slurm, SlurmJob
from .script import tail

log = logging.getLogger(__name__)


async def _account(slurm: Slurm, slurm_id: int, job: SlurmJob | None) -> tuple[str, str, int]:
    """(Slurm's state, its reason, our exit code) of an ended job."""
    acc = await slurm.sacct(slurm_id)
    if acc is not None:
        code = states.exit_code(acc.state, acc.return_code, acc.signal)
        return acc.state, acc.reason, code
    state = job.state if job is not None else ""
    return state, job.reason if job is not None else "", states.exit_code(state, None, None)


async def record_lost(
    slurm: Slurm, d: Path, slurm_id: int, job: SlurmJob | None, started: dict[str, Any]
) -> dict[str, Any]:
    """Slurm ended the job and its supervisor could not record it: Slurm's account of the
    end, recorded once in exit.json (a record already there wins)."""
    state, reason, code = await _account(slurm, slurm_id, job)
    record = exit_record(
        code,
        finished_at=iso_now(),
        started_at=str(started.get("started_at") or ""),
        oom_killed=state == "OUT_OF_MEMORY",
        limits=str(started.get("limits") or ""),
        lost=states.end_words(state, reason),
    )
    record["slurm_state"] = state
    if (again := read_json(str(d / EXIT))) is not None:
        return again
    write_record(str(d / EXIT), record, durable=True)
    log.warning("job %s (Slurm job %d): %s", d.name, slurm_id, record["lost"])
    return record


async def why_not_started(slurm: Slurm, d: Path, slurm_id: int, job: SlurmJob | None) -> str:
    state, reason, _ = await _account(slurm, slurm_id, job)
    return f"the job ended in Slurm before it ran: {states.end_words(state, reason)}; {tail(d)}"
