"""The Slurm commands (sbatch, squeue, scontrol, scancel, sacct, sinfo) as asyncio
subprocesses, and what their output says, parsed: ``squeue --json``, ``sinfo --json`` and
``sacct --json`` where Slurm 22.05 has it, ``scontrol -o show`` (one line of KEY=VALUE) where it
has not.  The parsers are pure (tested with samples); they accept both 22.05's plain values and
the ``{"set": true, "number": N}`` / list forms of later versions."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from ..base import RuntimeError_

NAME_PREFIX = "neuro-"  # every Slurm job of ours is named neuro-<job id> ...
COMMENT_PREFIX = "neuro:"  # ... and commented neuro:<job id>: we never touch another's


class SlurmError(RuntimeError_):
    """A Slurm command failed (its stderr's last line is the message)."""


def job_name(job_id: str) -> str:
    return NAME_PREFIX + job_id


def job_comment(job_id: str) -> str:
    return COMMENT_PREFIX + job_id


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """A job as squeue shows it (only ours: named and commented by us)."""

    slurm_id: int
    job_id: str  # ours
    state: str  # PENDING, RUNNING, ...
    reason: str  # Slurm's pending reason (Resources, Priority, ...), "None" when there is none
    node: str  # the batch host ("" while pending)
    start_time: float | None = None


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    address: str
    cpus: int
    memory: int  # bytes
    gpus: int
    state: str  # idle, mixed, allocated, down, drained, ...


@dataclasses.dataclass(frozen=True)
class Accounted:
    """A job as sacct has it (finished ones too)."""

    slurm_id: int
    job_id: str
    state: str
    return_code: int | None
    signal: int | None
    reason: str
    node: str


def _value(v: Any) -> Any:
    """22.05 gives 3; later versions {"set": true, "infinite": false, "number": 3}."""
    if isinstance(v, dict) and "number" in v:
        return v["number"] if v.get("set", True) and not v.get("infinite") else None
    return v


def _text(v: Any) -> str:
    v = _value(v)
    if isinstance(v, list):
        return str(v[0]) if v else ""
    return "" if v is None else str(v)


def _int(v: Any) -> int | None:
    v = _value(v)
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _ours(name: Any, comment: Any) -> str | None:
    """Our job id when the job is named and commented as ours, else None."""
    if isinstance(comment, dict):  # sacct: {"job": ..., "administrator": ..., "system": ...}
        comment = comment.get("job")
    text, note = _text(name), _text(comment)
    if not text.startswith(NAME_PREFIX) or note != COMMENT_PREFIX + text[len(NAME_PREFIX) :]:
        return None
    return text[len(NAME_PREFIX) :]


def _load(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SlurmError(f"{what}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise SlurmError(f"{what}: not a JSON object")
    return data


def parse_squeue(text: str) -> list[SlurmJob]:
    """Our jobs in ``squeue --json``."""
    found = []
    for j in _load(text, "squeue --json").get("jobs") or ():
        job_id = _ours(j.get("name"), j.get("comment"))
        slurm_id = _int(j.get("job_id"))
        if job_id is None or slurm_id is None:
            continue
        start = _int(j.get("start_time"))
        state = _text(j.get("job_state"))
        found.append(
            SlurmJob(
                slurm_id=slurm_id,
                job_id=job_id,
                state=state,
                reason=_text(j.get("state_reason")) or "None",
                node=_text(j.get("batch_host")) if state != "PENDING" else "",
                start_time=float(start) if start and state != "PENDING" else None,
            )
        )
    return found


def parse_sinfo(text: str) -> list[Node]:
    """The nodes in ``sinfo --json`` (each once: sinfo lists a node per partition)."""
    nodes: dict[str, Node] = {}
    for n in _load(text, "sinfo --json").get("nodes") or ():
        name = _text(n.get("name"))
        if not name or name in nodes:
            continue
        state = _text(n.get("state")).lower()
        flags = [str(f).lower() for f in n.get("state_flags") or ()]
        nodes[name] = Node(
            name=name,
            address=_text(n.get("address")) or _text(n.get("hostname")) or name,
            cpus=_int(n.get("cpus")) or 0,
            memory=(_int(n.get("real_memory")) or 0) << 20,
            gpus=gres_gpus(_text(n.get("gres"))),
            state=" ".join([state, *flags]).strip(),
        )
    return list(nodes.values())


def gres_gpus(gres: str) -> int:
    """GPUs in a GRES string: ``gpu:2``, ``gpu:a100:4(S:0-1)``, ``gpu:1,shard:4`` -> 2, 4, 1."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) > 1:
            count = _int(parts[-1])
            total += count if count is not None else 0
    return total


def parse_sacct(text: str) -> list[Accounted]:
    """Our jobs in ``sacct --json`` (the allocations, not their steps)."""
    found = []
    for j in _load(text, "sacct --json").get("jobs") or ():
        job_id = _ours(j.get("name"), j.get("comment"))
        slurm_id = _int(j.get("job_id"))
        if job_id is None or slurm_id is None:
            continue
        state = j.get("state") or {}
        if isinstance(state, dict):
            current, reason = _text(state.get("current")), _text(state.get("reason"))
        else:
            current, reason = _text(state), ""
        code = j.get("exit_code") or {}
        signal = code.get("signal") or {} if isinstance(code, dict) else {}
        found.append(
            Accounted(
                slurm_id=slurm_id,
                job_id=job_id,
                state=current,
                return_code=_int(code.get("return_code")) if isinstance(code, dict) else None,
                signal=_int(signal.get("signal_id") if isinstance(signal, dict) else None),
                reason=reason,
                node=_text(j.get("nodes")),
            )
        )
    return found


def parse_oneline(text: str) -> dict[str, str]:
    """``scontrol -o show job N`` / ``show node X``: one line of KEY=VALUE (values may hold
    spaces only in the last keys; good enough for the keys read here)."""
    out: dict[str, str] = {}
    for item in text.strip().split(" "):
        key, sep, value = item.partition("=")
        if sep:
            out[key] = value
    return out


class Slurm:
    """Runs the Slurm commands with ``env`` (SLURM_CONF...) over the server's environment."""

    def __init__(self, env: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
        self.env = {**os.environ, **(env or {})}
        self.timeout = timeout

    async def run(self, *argv: str, check: bool = True) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
        except OSError as e:
            raise SlurmError(f"{argv[0]}: {e.strerror or e}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SlurmError(f"{argv[0]} did not answer within {self.timeout:g} s") from None
        if check and proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines() or [f"exit {proc.returncode}"]
            raise SlurmError(f"{' '.join(argv[:2])}: {lines[-1]}")
        return out.decode(errors="replace")

    async def squeue(self) -> list[SlurmJob]:
        return parse_squeue(await self.run("squeue", "--json"))

    async def sinfo(self) -> list[Node]:
        return parse_sinfo(await self.run("sinfo", "--json"))

    async def sacct(self, slurm_id: int) -> Accounted | None:
        """The accounting of job ``slurm_id`` (None without slurmdbd, or not yet there)."""
        try:
            text = await self.run("sacct", "--json", "-j", str(slurm_id))
        except SlurmError:
            return None
        found = [a for a in parse_sacct(text) if a.slurm_id == slurm_id]
        return found[0] if found else None

    async def scancel(self, slurm_id: int, *options: str) -> None:
        await self.run("scancel", *options, str(slurm_id), check=False)
