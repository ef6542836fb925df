"""`ps --format`: the official client's column spec, parsed and rendered (pure, no I/O).

A spec is columns separated by spaces or commas.  A column is one field or two stacked with
``/`` (the second in italics on the next line of the cell, and its own column in a pipe), or
``{field[/field];align=left|right|center;min=N;max=N;width=N;TITLE}`` with options.  A field
may be given by a unique prefix (``stat`` is status).  Fields: see ``FIELDS``.

    cols = parse_format("id/name {status;width=10} image")
    table = render_table(jobs, cols, now)         # rich Table for a terminal
    lines = [header(cols), *(line(j, cols, now) for j in jobs)]   # tab-separated, for pipes
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .common import duration, when

if TYPE_CHECKING:
    from neuro_sdk import JobDescription

DEFAULT_FORMAT = "id/name status/when image/preset command"

Getter = Callable[["JobDescription", datetime, bool], str]


def when_time(job: "JobDescription") -> datetime | None:
    """Created for pending, started for running or suspended, finished for finished jobs."""
    h = job.history
    if job.status.is_finished:
        return h.finished_at
    if job.status.is_running or job.status.value == "suspended":
        return h.started_at
    return h.created_at


def command_of(job: "JobDescription") -> str:
    c = job.container
    return " ".join(p for p in (c.entrypoint, c.command) if p)


# field -> (title, getter(job, now, tty)); the order is the documented one
FIELDS: dict[str, tuple[str, Getter]] = {
    "id": ("ID", lambda j, now, tty: j.id),
    "name": ("NAME", lambda j, now, tty: j.name or ""),
    "tags": ("TAGS", lambda j, now, tty: ",".join(j.tags)),
    "status": ("STATUS", lambda j, now, tty: j.status.value),
    "when": ("WHEN", lambda j, now, tty: when(when_time(j), now, tty)),
    "created": ("CREATED", lambda j, now, tty: when(j.history.created_at, now, tty)),
    "started": ("STARTED", lambda j, now, tty: when(j.history.started_at, now, tty)),
    "finished": ("FINISHED", lambda j, now, tty: when(j.history.finished_at, now, tty)),
    "image": ("IMAGE", lambda j, now, tty: str(j.container.image)),
    "owner": ("OWNER", lambda j, now, tty: j.owner),
    "cluster_name": ("CLUSTER", lambda j, now, tty: j.cluster_name),
    "org_name": ("ORG", lambda j, now, tty: j.org_name or ""),
    "project_name": ("PROJECT", lambda j, now, tty: j.project_name or ""),
    "description": ("DESCRIPTION", lambda j, now, tty: j.description or ""),
    "command": ("COMMAND", lambda j, now, tty: command_of(j)),
    "life_span": ("LIFE-SPAN", lambda j, now, tty: duration(j.life_span) if j.life_span else ""),
    "workdir": ("WORKDIR", lambda j, now, tty: j.container.working_dir or ""),
    "preset": ("PRESET", lambda j, now, tty: j.preset_name or ""),
    "exit_code": ("EXIT", lambda j, now, tty: "" if j.history.exit_code is None
                  else str(j.history.exit_code)),
    "reason": ("REASON", lambda j, now, tty: j.history.reason or ""),
}
# cell limits of the default table (the id never cut)
_LIMITS: dict[str, dict[str, int]] = {
    "id": {"min": 40}, "status": {"min": 14}, "when": {"min": 14},
    "created": {"min": 14}, "started": {"min": 14}, "finished": {"min": 14},
    "image": {"min": 12}, "command": {"min": 10}, "preset": {"min": 9},
}


@dataclasses.dataclass(frozen=True)
class Column:
    fields: tuple[str, ...]  # one, or two stacked
    title: str
    align: str = "left"
    min: int | None = None
    max: int | None = None
    width: int | None = None


_OPTION = re.compile(r"(align|min|max|width)=(.*)")


def _field(name: str) -> str:
    name = name.strip().lower()
    if name in FIELDS:
        return name
    found = [f for f in FIELDS if f.startswith(name)] if name else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"unknown column {name!r}: use {', '.join(FIELDS)}")
    raise ValueError(f"ambiguous column {name!r}: {', '.join(found)}")


def _tokens(spec: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in spec:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced '}}' in format {spec!r}")
        if depth == 0 and ch in " ,\t":
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise ValueError(f"unclosed '{{' in format {spec!r}")
    if cur:
        out.append(cur)
    return out


def parse_format(spec: str) -> list[Column]:
    """Columns of a spec; ValueError with a one-line reason for a bad one."""
    columns = []
    for token in _tokens(spec):
        opts: dict[str, Any] = {}
        title = None
        if token.startswith("{"):
            parts = token[1:-1].split(";")
            names = parts[0]
            for part in parts[1:]:
                m = _OPTION.fullmatch(part.strip())
                if m is None:
                    if title is not None:
                        raise ValueError(f"bad column option {part!r} in {token!r}")
                    title = part.strip()
                    continue
                key, value = m.groups()
                if key == "align":
                    if value not in ("left", "right", "center"):
                        raise ValueError(f"bad align {value!r}: left, right or center")
                    opts["align"] = value
                else:
                    if not value.isdigit() or int(value) < 1:
                        raise ValueError(f"bad {key} {value!r} in {token!r}: a positive number")
                    opts[key] = int(value)
        else:
            names = token
        fields = tuple(_field(n) for n in names.split("/"))
        if len(fields) > 2:
            raise ValueError(f"at most two fields stack in a column: {names!r}")
        if title is None:
            title = "/".join(FIELDS[f][0] for f in fields)
        for f in fields:  # the defaults of the fields, where the spec sets none
            for key, value in _LIMITS.get(f, {}).items():
                if key == "min":
                    opts.setdefault("min", max(value, opts.get("min", 0)))
                elif key not in opts:
                    opts[key] = value
        columns.append(Column(fields, title, **opts))
    if not columns:
        raise ValueError("the format names no column")
    return columns


def header(columns: Iterable[Column]) -> str:
    """Piped output: one tab-separated title per field (stacked fields are columns of their own)."""
    return "\t".join(FIELDS[f][0] for c in columns for f in c.fields)


def line(job: "JobDescription", columns: Iterable[Column], now: datetime) -> str:
    return "\t".join(
        FIELDS[f][1](job, now, False).replace("\t", " ").replace("\n", " ")
        for c in columns for f in c.fields
    )


STATUS_STYLE = {
    "pending": "cyan", "suspended": "magenta", "running": "blue",
    "succeeded": "green", "cancelled": "yellow", "failed": "red",
}


def render_table(jobs: Iterable["JobDescription"], columns: list[Column], now: datetime) -> Any:
    """A rich table: the first column bold, statuses coloured, stacked values in italics."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAVY, show_edge=False, pad_edge=False)
    for c in columns:
        grow = c.fields[0] in ("image", "command", "description")
        # a header is never cut: at least as wide as its longest title
        least = max([c.min or 0, *(len(t) for t in c.title.split("/"))])
        if c.max is not None:
            least = min(least, c.max)
        # the long fields (image, command...) give way when the terminal is narrow: their
        # columns count as wrapable, so rich narrows them first, and their cells are cut with
        # an ellipsis rather than wrapped; the others keep their width
        table.add_column(c.title, justify=c.align, min_width=least, max_width=c.max,  # type: ignore[arg-type]
                         width=c.width, no_wrap=not grow, overflow="ellipsis")
    for job in jobs:
        cells = []
        for i, c in enumerate(columns):
            text = Text(no_wrap=True, overflow="ellipsis")
            for k, f in enumerate(c.fields):
                value = FIELDS[f][1](job, now, True)
                style = STATUS_STYLE.get(value, "") if f == "status" else ""
                if i == 0 and k == 0:
                    style = (style + " bold").strip()
                if k:
                    text.append("\n")
                    style = (style + " italic").strip()
                text.append(value, style=style)
            cells.append(text)
        table.add_row(*cells)
    return table
