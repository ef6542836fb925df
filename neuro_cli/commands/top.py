"""neuro top: live CPU, memory and GPU use of jobs."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..completion.types import JOB
from ..deps import Deps
from ..errors import CLIError, ExitCode
from ..parse import parse_date_or_delta
from ._jobs_common import not_running_text, resolve_job, run_async
from ._options import json_option, parsed

if TYPE_CHECKING:
    from neuro_sdk import Client, JobDescription, JobTelemetry


def _sort(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from ..formatters.top import sort_rows

    try:
        sort_rows([], value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Show live CPU, memory and GPU use of jobs",
)
@click.argument("jobs", nargs=-1, type=JOB)
@click.option("-n", "--name", help="Only jobs with this name.")
@click.option("-t", "--tag", "tags", multiple=True, help="Only jobs with all these tags.")
@click.option("-o", "--owner", "owners", multiple=True, help="Only jobs of this owner (ME is you).")
@click.option(
    "--since",
    callback=parsed(parse_date_or_delta),
    metavar="DATE_OR_TIMEDELTA",
    help="Only jobs created since.",
)
@click.option(
    "--until",
    callback=parsed(parse_date_or_delta),
    metavar="DATE_OR_TIMEDELTA",
    help="Only jobs created until.",
)
@click.option(
    "--sort",
    default="cpu",
    show_default=True,
    callback=_sort,
    help="Sort by cpu, memory, gpu, gpu_memory, id, name or when (comma list; -KEY reverses).",
)
@click.option("--no-stream", is_flag=True, help="Print one sample of each job and exit.")
@click.option(
    "--timeout",
    type=float,
    default=0,
    show_default=True,
    help="Stop after this many seconds (0: never).",
)
@json_option
@click.pass_context
def command(
    ctx: click.Context,
    jobs: tuple[str, ...],
    name: str | None,
    tags: tuple[str, ...],
    owners: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    sort: str,
    no_stream: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Show live CPU, memory and GPU use of running jobs: the given ones, or all of yours
    (new jobs join the table as they start).

    On a terminal the table redraws in place; piped, each sample is a tab-separated line.

    \b
    Examples:
      neuro top
      neuro top --sort memory train
      neuro top --no-stream --tag nightly
    """
    if jobs and (name or owners or since or until):
        raise click.UsageError("give JOBS or filters (--name, --owner, --since, --until), not both")
    run_async(
        ctx,
        lambda deps: run(
            jobs, name, tags, owners, since, until, sort, no_stream, timeout, deps, as_json
        ),
    )


class _Watch:
    """The jobs on screen and the latest sample of each, one `top` stream per job."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.jobs: dict[str, JobDescription] = {}
        self.samples: dict[str, JobTelemetry] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.changed = asyncio.Event()

    def add(self, job: JobDescription) -> None:
        if job.id in self.tasks or not job.status.is_running:
            return
        self.jobs[job.id] = job
        self.tasks[job.id] = asyncio.create_task(self._follow(job.id))

    async def _follow(self, job_id: str) -> None:
        try:
            async for t in self.client.jobs.top(job_id):
                self.samples[job_id] = t
                self.changed.set()
        except Exception:  # noqa: BLE001 - a sampler that fails stops quietly
            pass
        self.jobs.pop(job_id, None)
        self.samples.pop(job_id, None)
        self.changed.set()

    async def close(self) -> None:
        for t in self.tasks.values():
            t.cancel()
        for t in self.tasks.values():
            with contextlib.suppress(BaseException):
                await t

    def rows(self, sort: str) -> list[dict[str, Any]]:
        from ..formatters.top import sort_rows, top_values

        return sort_rows([top_values(j, self.samples.get(i)) for i, j in self.jobs.items()], sort)


async def run(
    refs: tuple[str, ...],
    name: str | None,
    tags: tuple[str, ...],
    owners: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    sort: str,
    no_stream: bool,
    timeout: float,
    deps: Deps,
    as_json: bool = False,
) -> int:
    from neuro_sdk import JobStatus

    async with deps.client() as client:
        watch = _Watch(client)
        owner_set = {client.username if o == "ME" else o for o in owners}

        async def refresh() -> None:
            if refs:
                return
            async for job in client.jobs.list(
                statuses={JobStatus.RUNNING},
                name=name,
                tags=tags,
                owners=owner_set,
                since=since,
                until=until,
            ):
                watch.add(job)

        if refs:
            for ref in refs:
                job = await client.jobs.status(await resolve_job(client, ref))
                if not job.status.is_running:
                    raise CLIError(
                        f"job {job.id} is not running: {not_running_text(job)}", ExitCode.BAD_INPUT
                    )
                watch.add(job)
        else:
            await refresh()
        try:
            if no_stream:
                return await _one_shot(watch, sort, deps, as_json)
            return await _live(watch, refresh, sort, timeout, deps, as_json)
        finally:
            await watch.close()


def _json_rows(watch: _Watch, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from ..formatters.json_out import top_dict

    return [
        top_dict(watch.jobs[r["id"]], watch.samples[r["id"]])
        for r in rows
        if r["id"] in watch.samples and r["id"] in watch.jobs
    ]


async def _one_shot(watch: _Watch, sort: str, deps: Deps, as_json: bool = False) -> int:
    from ..formatters.top import COLUMNS, row_cells, top_table

    deadline = asyncio.get_running_loop().time() + 5
    while set(watch.samples) < set(watch.jobs):
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        watch.changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(watch.changed.wait(), left)
    now = deps.now()
    rows = watch.rows(sort)
    if as_json:
        from ..formatters.json_out import dumps

        deps.io.out(dumps(_json_rows(watch, rows)))
    elif deps.io.stdout_tty:
        deps.io.console().print(top_table(rows, now))
    else:
        deps.io.out("\t".join(COLUMNS))
        for r in rows:
            deps.io.out("\t".join(row_cells(r, now, False)))
    return 0


async def _live(
    watch: _Watch, refresh: Any, sort: str, timeout: float, deps: Deps, as_json: bool = False
) -> int:
    from ..formatters.top import COLUMNS, row_cells, top_table

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout if timeout > 0 else None
    next_list = loop.time() + 3
    io = deps.io
    live = None
    printed: dict[str, float] = {}  # piped: the time of the last sample printed per job
    if as_json:
        pass  # one JSON array per refresh that brought new samples
    elif io.stdout_tty:
        from rich.live import Live

        console = io.console()
        live = Live(console=console, auto_refresh=False, transient=False, screen=False)
        live.start()
    else:
        io.out("\t".join(("TIME", *COLUMNS)))
    try:
        while end is None or loop.time() < end:
            watch.changed.clear()
            wait = 0.5 if end is None else max(0.0, min(0.5, end - loop.time()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(watch.changed.wait(), wait)
            now = deps.now()
            rows = watch.rows(sort)
            if as_json:
                fresh = {i: t.timestamp for i, t in watch.samples.items()}
                if fresh != printed and fresh:
                    from ..formatters.json_out import dumps

                    io.out(dumps(_json_rows(watch, rows), compact=True))
                    printed = fresh
            elif live is not None:
                height = live.console.size.height
                live.update(top_table(rows, now, max_rows=max(1, height - 5)), refresh=True)
            else:
                for r in rows:
                    sample = watch.samples.get(r["id"])
                    if sample is None or printed.get(r["id"]) == sample.timestamp:
                        continue
                    printed[r["id"]] = sample.timestamp
                    stamp = datetime.fromtimestamp(sample.timestamp, UTC)
                    io.out(
                        "\t".join((stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), *row_cells(r, now, False)))
                    )
            if loop.time() >= next_list:
                await refresh()
                next_list = loop.time() + 3
    finally:  # (Ctrl-C ends it as it ends `logs`: interrupted, 130)
        if live is not None:
            live.stop()
    return 0
