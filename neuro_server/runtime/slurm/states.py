"""Slurm's job states and reasons, and what they are in our words: a job pending in Slurm, one
that runs, and one that ended (with how, where Slurm ended it and not the job itself)."""

from __future__ import annotations

#: states in which Slurm still holds the job (squeue lists it): it waits, runs or is ending
PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "RESV_DEL_HOLD"})
RUNNING_STATES = frozenset(
    {"RUNNING", "SUSPENDED", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}
)

#: Slurm's pending reasons (squeue's state_reason) in words; any other is said as Slurm says it
PENDING_WORDS = {
    "None": "about to be placed on a node",
    "Resources": "no node has the CPUs, memory or GPUs it asks free now",
    "Priority": "jobs of higher priority wait before it",
    "Dependency": "it waits for the jobs it depends on",
    "BeginTime": "its start time has not come yet",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionNodeLimit": "it asks more nodes than its partition allows",
    "PartitionTimeLimit": "its life span is longer than its partition allows",
    "ReqNodeNotAvail": "the nodes it may run on are not available (down, drained or reserved)",
    "NodeDown": "a node it needs is down",
    "Reservation": "it waits for its reservation",
    "JobHeldUser": "held by its user",
    "JobHeldAdmin": "held by an administrator",
    "QOSMaxJobsPerUserLimit": "its owner runs as many jobs as their QOS allows",
    "QOSMaxCpuPerUserLimit": "its owner uses as many CPUs as their QOS allows",
    "QOSGrpCpuLimit": "its QOS group uses all the CPUs it may",
    "AssocMaxJobsLimit": "its account runs as many jobs as it may",
    "AssocGrpCpuLimit": "its account uses all the CPUs it may",
    "BadConstraints": "no node can ever give what it asks",
}

#: how Slurm ended a job, in words, where the job did not end by itself
END_WORDS = {
    "CANCELLED": "Slurm cancelled the job",
    "TIMEOUT": "the job reached its time limit in Slurm",
    "NODE_FAIL": "the job's node failed (Slurm took it down)",
    "BOOT_FAIL": "the job's node could not boot",
    "PREEMPTED": "Slurm preempted the job",
    "OUT_OF_MEMORY": "the job ran out of memory (Slurm's limit)",
    "DEADLINE": "the job reached its deadline in Slurm",
    "FAILED": "the job failed in Slurm",
    "REVOKED": "Slurm revoked the job",
}


def pending_reason(reason: str) -> str:
    """The status reason of a job pending in Slurm: Slurm's own (Resources, Priority...), or
    Submitted while Slurm has none yet (its "None": placed at its next pass, within a second;
    not a queue wait, so ``run --detach`` waits it out)."""
    return reason if reason and reason != "None" else "Submitted"


def pending_words(reason: str) -> str:
    """``Pending in Slurm: <reason in words> (Reason)`` (no "(None)" while it has none)."""
    reason = reason or "None"
    words = PENDING_WORDS.get(reason)
    if reason == "None":
        return f"Pending in Slurm: {words}"
    return f"Pending in Slurm: {words} ({reason})" if words else f"Pending in Slurm: {reason}"


def end_words(state: str, reason: str = "") -> str:
    """Why the job ended, as Slurm tells it (its state and reason), in words."""
    base = state.split()[0] if state else ""
    words = END_WORDS.get(base, f"Slurm ended the job ({state or 'unknown state'})")
    if reason and reason not in ("None", ""):
        words += f": {reason}"
    return words


def exit_code(state: str, return_code: int | None, signum: int | None) -> int:
    """Our exit code (128+N when killed by signal N) of a job Slurm accounted as ``state``."""
    if signum:
        return 128 + signum
    if return_code is not None and (return_code or state == "COMPLETED"):
        return return_code
    if state.startswith(("CANCELLED", "TIMEOUT", "PREEMPTED", "DEADLINE", "NODE_FAIL")):
        return 128 + 9  # (ended by SIGKILL after Slurm's KillWait)
    if state == "OUT_OF_MEMORY":
        return 128 + 9
    return 1 if state not in ("COMPLETED", "") else 0
