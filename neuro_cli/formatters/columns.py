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
from typing import TYPE_CHECKING, Any, Literal

from .common import duration, when

if TYPE_CHECKING:
    from neuro_sdk import JobDescription

DEFAULT_FORMAT = "id/name status/when image/preset command"

Getter = Callable[["JobDescription", datetime, bool], str]


def when_time(job: JobDescription) -> datetime | None:
    """Created for pending, started for running or suspended, finished for finished jobs."""
    h = job.history
    if job.status.is_finished:
        return h.finished_at
    if job.status.is_running or job.status.value == "suspended":
        return h.started_at
    return h.created_at


def command_of(job: JobDescription) -> str:
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
    "exit_code": (
        "EXIT",
        lambda j, now, tty: "" if j.history.exit_code is None else str(j.history.exit_code),
    ),
    "reason": ("REASON", lambda j, now, tty: j.history.reason or ""),
}
# cell limits of the default table (the id never cut)
_LIMITS: dict[str, dict[str, int]] = {
    "id": {"min": 40},
    "status": {"min": 14},
    "when": {"min": 14},
    "created": {"min": 14},
    "started": {"min": 14},
    "finished": {"min": 14},
    "image": {"min": 12},
    "command": {"min": 10},
    "preset": {"min": 9},
}


@dataclasses.dataclass(frozen=True)
class Column:
    fields: tuple[str, ...]  # one, or two stacked
    title: str
    align: Literal["left", "right", "center"] = "left"
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


def line(job: JobDescription, columns: Iterable[Column], now: datetime) -> str:
    return "\t".join(
        FIELDS[f][1](job, now, False).replace("\t", " ").replace("\n", " ")
        for c in columns
        for f in c.fields
    )


STATUS_STYLE = {
    "pending": "cyan",
    "suspended": "magenta",
    "running": "blue",
    "succeeded": "green",
    "cancelled": "yellow",
    "failed": "red",
}


def render_table(jobs: Iterable[JobDescription], columns: list[Column], now: datetime) -> Any:
    """A rich renderable: the jobs' table, the first column bold, statuses coloured, stacked
    values in italics, laid out for the width it is drawn at (see :class:`JobsTable`)."""
    from rich.text import Text

    rows = []
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
        rows.append(cells)
    return JobsTable(columns, rows)


# the long fields: their columns give way when the terminal is narrow
_GROW = ("image", "command", "description")


class JobsTable:
    """The jobs table, laid out when it is drawn, for the width it gets: the other columns
    keep their width (the id is never cut), the long ones (image, command, description) share
    what is left and are cut with an ellipsis, and the gaps between columns narrow from 3 to 2
    before a header would be cut (at 80 columns the default table fits, header and all)."""

    def __init__(self, columns: list[Column], rows: list[list[Any]]) -> None:
        self.columns = columns
        self.rows = rows

    def widths(self, width: int) -> tuple[list[int], int]:
        """(the width of each column, the gap between columns) for a total ``width``."""
        least, natural = [], []
        for i, c in enumerate(self.columns):
            lo = max(c.min or 0, len(c.title))  # a header is never cut
            cells = [line for row in self.rows for line in row[i].plain.split("\n")]
            hi = max([lo, *(len(line) for line in cells)])
            if c.max is not None:
                lo, hi = min(lo, c.max), min(hi, c.max)
            if c.width is not None:
                lo = hi = c.width
            least.append(lo)
            natural.append(hi)
        grow = [i for i, c in enumerate(self.columns) if c.fields[0] in _GROW and c.width is None]
        fixed = sum(natural[i] for i in range(len(self.columns)) if i not in grow)
        gaps = len(self.columns) - 1
        gap = 3
        if width - fixed - gap * gaps < sum(least[i] for i in grow):
            gap = 2
        room = width - fixed - gap * gaps
        if room < sum(least[i] for i in grow):  # narrower still: down to their titles
            least = [len(c.title) if i in grow else least[i] for i, c in enumerate(self.columns)]
        sizes = list(natural)
        if grow and sum(natural[i] for i in grow) > room:
            # the widest give way first: each long column gets an equal share, or less when
            # it needs less (what it leaves goes to the others), never below its least
            left, todo = room, sorted(grow, key=lambda i: natural[i])
            while todo:
                share = left // len(todo)
                i = todo.pop(0)
                sizes[i] = max(least[i], min(natural[i], share))
                left -= sizes[i]
        return sizes, gap

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich import box
        from rich.table import Table

        sizes, gap = self.widths(options.max_width)
        table = Table(
            box=box.SIMPLE_HEAVY,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1) if gap == 3 else (0, 1, 0, 0),
        )
        for c, w in zip(self.columns, sizes, strict=False):
            table.add_column(
                c.title,
                justify=c.align,
                width=w,
                no_wrap=True,
                overflow="ellipsis",
            )
        for cells in self.rows:
            table.add_row(*cells)
        yield table
