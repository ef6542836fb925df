"""`neuro top` rows: pure functions from jobs and their latest telemetry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .columns import when_time
from .common import iso, when

if TYPE_CHECKING:
    from neuro_sdk import JobDescription, JobTelemetry

COLUMNS = ("ID", "NAME", "WHEN", "CPU", "MEMORY (MiB)", "GPU (%)", "GPU MEMORY (MiB)")
SORT_KEYS = ("cpu", "memory", "gpu", "gpu_memory", "id", "name", "when")
DESCENDING = {"cpu", "memory", "gpu", "gpu_memory"}


def _mib(n: int | float | None) -> str:
    if n is None:
        return ""
    mib = n / (1 << 20)
    return f"{mib:.1f}" if mib < 100 else f"{mib:.0f}"


def top_values(job: JobDescription, t: JobTelemetry | None) -> dict[str, Any]:
    mem = getattr(t, "memory_bytes", None) if t else None
    if t is not None and mem is None:
        mem = int(t.memory * (1 << 20))
    gpu_mem = getattr(t, "gpu_memory_bytes", None) if t else None
    return {
        "id": job.id,
        "name": job.name or "",
        "when": when_time(job),
        "cpu": t.cpu if t else None,
        "memory": mem,
        "gpu": t.gpu_duty_cycle if t else None,
        "gpu_memory": gpu_mem,
    }


def sort_rows(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    """``spec``: comma-separated keys; telemetry keys sort high to low, others low to high;
    a leading '-' reverses one."""
    for key in reversed([k.strip() for k in spec.split(",") if k.strip()]):
        rev = key.startswith("-")
        name = key.lstrip("-")
        if name not in SORT_KEYS:
            raise ValueError(f"unknown sort key {name!r}: one of {', '.join(SORT_KEYS)}")
        desc = (name in DESCENDING) != rev
        present = [r for r in rows if r[name] is not None]
        missing = [r for r in rows if r[name] is None]
        rows = sorted(present, key=lambda r: r[name], reverse=desc) + missing
    return rows


def row_cells(r: Mapping[str, Any], now: datetime, tty: bool) -> tuple[str, ...]:
    return (
        r["id"],
        r["name"],
        when(r["when"], now, tty) if tty else iso(r["when"]),
        "" if r["cpu"] is None else f"{r['cpu']:.3f}",
        _mib(r["memory"]),
        "" if r["gpu"] is None else str(r["gpu"]),
        _mib(r["gpu_memory"]),
    )


def top_table(rows: Sequence[Mapping[str, Any]], now: datetime, max_rows: int | None = None) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAVY, show_edge=False, pad_edge=False)
    # GPU columns only when some job has a GPU: the id and the figures get the room
    with_gpu = any(r["gpu"] is not None or r["gpu_memory"] is not None for r in rows)
    ncols = len(COLUMNS) if with_gpu else len(COLUMNS) - 2
    for col in COLUMNS[:ncols]:
        numeric = col not in ("ID", "NAME", "WHEN")
        table.add_column(
            col,
            justify="right" if numeric else "left",
            no_wrap=True,
            style="bold" if col == "ID" else None,
            min_width=40 if col == "ID" else None,
            overflow="ellipsis",
        )
    shown = rows if max_rows is None else rows[:max_rows]
    for r in shown:
        table.add_row(*row_cells(r, now, True)[:ncols])
    if max_rows is not None and len(rows) > max_rows:
        table.caption = f"{len(rows) - max_rows} more jobs not shown"
    return table
