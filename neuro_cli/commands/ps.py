"""neuro ps: list jobs (active ones by default)."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

import click

from ..deps import Deps
from ..parse import parse_date_or_delta
from ._jobs_common import run_async
from ._options import json_option, parsed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from neuro_sdk import Client, JobDescription, JobStatus

    from ..formatters.columns import Column

STATUS_CHOICES = ("pending", "suspended", "running", "succeeded", "failed", "cancelled")


@dataclasses.dataclass(frozen=True)
class Options:
    statuses: tuple[str, ...]
    all: bool
    name: str | None
    tags: tuple[str, ...]
    owners: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    recent_first: bool
    quiet: bool
    as_json: bool = False
    columns: str | None = None
    watch: bool = False
    description: str | None = None
    last: int | None = None  # the N most recent jobs only
    distinct: bool = False  # the most recent job of each name only


def _format(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        from ..formatters.columns import parse_format

        try:
            parse_format(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


def _columns(spec: str | None) -> list[Column]:
    """--format, else the user config's [job] ps-format, else the default."""
    from ..errors import CLIError, ExitCode
    from ..formatters.columns import DEFAULT_FORMAT, parse_format

    if spec is not None:
        return parse_format(spec)
    from ..user_config import load

    config = load()
    spec = config.job.get("ps-format")
    if spec is None:
        return parse_format(DEFAULT_FORMAT)
    try:
        return parse_format(spec)
    except ValueError as e:
        raise CLIError(f"{config.files[-1]}: [job] ps-format: {e}", ExitCode.CONFIG) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, short_help="List jobs")
@click.option(
    "-s",
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUS_CHOICES),
    help="Show jobs in this status (repeatable) [default: pending, suspended, running].",
)
@click.option("-a", "--all", "all_", is_flag=True, help="Show jobs in every status.")
@click.option("-n", "--name", help="Only jobs with this name.")
@click.option("-d", "--description", help="Only jobs with this description.")
@click.option(
    "-t", "--tag", "tags", multiple=True, help="Only jobs with all these tags (repeatable)."
)
@click.option(
    "-o",
    "--owner",
    "owners",
    multiple=True,
    help="Only jobs of this owner (repeatable; ME is you).",
)
@click.option(
    "--since",
    callback=parsed(parse_date_or_delta),
    metavar="DATE_OR_TIMEDELTA",
    help="Only jobs created at or after this time (ISO date or e.g. 1h ago as 1h).",
)
@click.option(
    "--until",
    callback=parsed(parse_date_or_delta),
    metavar="DATE_OR_TIMEDELTA",
    help="Only jobs created at or before this time.",
)
@click.option(
    "--recent-first/--recent-last", default=False, help="Newest jobs first [default: oldest first]."
)
@click.option(
    "--last", type=click.IntRange(min=1), metavar="N", help="Only the N most recent jobs."
)
@click.option(
    "--distinct", is_flag=True, help="Only the most recent job of each name (unnamed: all)."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only job ids.")
@click.option(
    "--format",
    "columns",
    callback=_format,
    metavar="COLUMNS",
    help="Columns, e.g. 'id/name status/when image command' (docs/cli.md, ps columns).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep the list up to date: redrawn in place on a terminal, a line per change in a pipe.",
)
@json_option
@click.pass_context
def command(
    ctx: click.Context,
    statuses: tuple[str, ...],
    all_: bool,
    name: str | None,
    tags: tuple[str, ...],
    owners: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    recent_first: bool,
    quiet: bool,
    columns: str | None,
    watch: bool,
    as_json: bool,
    description: str | None = None,
    last: int | None = None,
    distinct: bool = False,
) -> None:
    """List jobs: the active ones unless -s or -a says otherwise.

    A table on a terminal; tab-separated lines with a header and ISO-8601 UTC times in a pipe.

    \b
    Examples:
      neuro ps
      neuro ps -a --since 1d
      neuro ps -s failed -s cancelled --tag nightly
      neuro ps -q | xargs neuro kill
      neuro ps -a --last 5 --distinct
      neuro ps --format 'id name status {command;max=30}'
      neuro ps --watch
    """
    if all_ and statuses:
        raise click.UsageError("-a/--all and -s/--status cannot be used together")
    if quiet and as_json:
        raise click.UsageError("-q/--quiet and --json cannot be used together")
    if watch and (quiet or as_json):
        raise click.UsageError("--watch cannot be used with -q/--quiet or --json")
    if watch and (last or distinct):
        raise click.UsageError("--watch cannot be used with --last or --distinct")
    opts = Options(
        statuses,
        all_,
        name,
        tags,
        owners,
        since,
        until,
        recent_first,
        quiet,
        as_json,
        columns,
        watch,
        description,
        last,
        distinct,
    )
    run_async(ctx, lambda deps: run(opts, deps), loop=watch)  # (one-shot: no event loop)


async def run(opts: Options, deps: Deps) -> int:
    from neuro_sdk import JobStatus

    from ..formatters.columns import header, line, render_table

    if opts.all:
        statuses: set[JobStatus] = set()
    elif opts.statuses:
        statuses = {JobStatus(s) for s in opts.statuses}
    else:
        statuses = JobStatus.active_items()
    io = deps.io
    columns = None if opts.quiet or opts.as_json else _columns(opts.columns)
    async with deps.client() as client:
        owners = {client.username if o == "ME" else o for o in opts.owners}
        if opts.watch:
            assert columns is not None
            return await _watch(client, opts, statuses, owners, columns, deps)
        picked = opts.last is not None or opts.distinct  # chosen from the newest: buffered
        stream = client.jobs.list(
            statuses=statuses,
            name=opts.name,
            tags=opts.tags,
            owners=owners,
            since=opts.since,
            until=opts.until,
            reverse=opts.recent_first or picked,
            limit=opts.last if picked and not (opts.distinct or opts.description) else None,
        )
        # closed however the loop ends (a reader that went away: `neuro ps | head -1`)
        async with stream as listed:
            it = _picked(listed, opts) if (picked or opts.description is not None) else listed
            if opts.quiet:
                async for job in it:
                    io.out(job.id)
                return 0
            if opts.as_json:
                from ..formatters.json_out import dumps, job_dict

                # a JSON array streamed an object per line, as the jobs arrive
                sep = "["
                async for job in it:
                    io.out(sep + dumps(job_dict(job), compact=True))
                    sep = ","
                io.out("[]" if sep == "[" else "]")
                return 0
            assert columns is not None
            now = deps.now()
            if not io.stdout_tty:
                # streamed: each job is printed as it arrives
                io.out(header(columns))
                async for job in it:
                    io.out(line(job, columns, now))
                return 0
            jobs = [job async for job in it]
    io.page(render_table(jobs, columns, now))
    return 0


async def _picked(
    jobs: AsyncIterator[JobDescription], opts: Options
) -> AsyncIterator[JobDescription]:
    """--description, --distinct and --last applied (the last two to jobs listed newest first,
    given back in the order asked for)."""
    if opts.last is None and not opts.distinct:
        async for job in jobs:
            if job.description == opts.description:
                yield job
        return
    chosen: list[JobDescription] = []
    names: set[str] = set()
    async for job in jobs:
        if opts.description is not None and job.description != opts.description:
            continue
        if opts.distinct and job.name:
            if job.name in names:
                continue
            names.add(job.name)
        chosen.append(job)
        if opts.last is not None and len(chosen) >= opts.last:
            break
    for job in chosen if opts.recent_first else reversed(chosen):
        yield job


WATCH_INTERVAL = 1.0


async def _watch(
    client: Client,
    opts: Options,
    statuses: set[JobStatus],
    owners: set[str],
    columns: list[Column],
    deps: Deps,
) -> int:
    """Re-list every second until Ctrl-C.  On a terminal the table is redrawn in place (rich
    Live); piped, the header once, then a job's line whenever it appears or changes, and its
    last line when it leaves the list (e.g. an active job that finished)."""
    import asyncio

    from ..formatters.columns import header, line, render_table

    io = deps.io
    live = None
    if io.stdout_tty:
        from rich.live import Live

        live = Live(
            console=io.console(), auto_refresh=False, transient=False, vertical_overflow="visible"
        )
        live.start()
    else:
        io.out(header(columns))
    seen: dict[str, str] = {}  # piped: the last line printed per job
    try:
        while True:
            jobs = [
                job
                async for job in client.jobs.list(
                    statuses=statuses,
                    name=opts.name,
                    tags=opts.tags,
                    owners=owners,
                    since=opts.since,
                    until=opts.until,
                    reverse=opts.recent_first,
                )
            ]
            now = deps.now()
            if live is not None:
                live.update(render_table(jobs, columns, now), refresh=True)
            else:
                listed = set()
                for job in jobs:
                    listed.add(job.id)
                    text = line(job, columns, now)
                    if seen.get(job.id) != text:
                        io.out(text)
                        seen[job.id] = text
                for gone in [i for i in seen if i not in listed]:
                    del seen[gone]
                    with contextlib.suppress(Exception):  # gone for good: nothing more to say
                        io.out(line(await client.jobs.status(gone), columns, now))
            await asyncio.sleep(WATCH_INTERVAL)
    finally:  # (Ctrl-C ends a watch as it ends `logs`: interrupted, 130)
        if live is not None:
            live.stop()
