"""neuro job browse: open a job's HTTP port in the browser, logged in."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ._jobs_common import resolve_job, run_async


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Open a job's HTTP URL in a browser",
)
@click.argument("job", type=JOB)
@click.option("--no-browser", is_flag=True, help="Print the URLs instead of opening a browser.")
@click.pass_context
def command(ctx: click.Context, job: str, no_browser: bool) -> None:
    """Open the HTTP port of JOB (run with --http-port) in a browser.

    The browser is logged in through a one-time link (valid for two minutes), so a job that
    requires authentication opens without a token prompt. Prints the job's URL.

    \b
    Examples:
      neuro run -n notebook --http-port 8888 --detach jupyter/base-notebook
      neuro job browse notebook
    """
    run_async(ctx, lambda deps: run(job, no_browser, deps))


async def run(ref: str, no_browser: bool, deps: Deps) -> int:
    async with deps.client() as client:
        url, login = await client.jobs.browse_urls(await resolve_job(client, ref))
    deps.io.out(str(url))
    if no_browser:
        deps.io.err(f"One-time login link (2 minutes): {login}")
        return 0
    import webbrowser

    if not webbrowser.open(str(login)):
        deps.io.err(f"No browser found: open {login}")
    return 0
