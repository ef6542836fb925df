"""neuro capacity: how many more jobs of each preset fit now."""

from __future__ import annotations

import click

from ..deps import Deps
from ._jobs_common import run_async
from ._options import json_option


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Show how many jobs of each preset fit now",
)
@json_option
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """Show how many more jobs of each preset can start now.

    \b
    Examples:
      neuro capacity
      neuro capacity --json
    """
    run_async(ctx, lambda deps: run(deps, as_json))


async def run(deps: Deps, as_json: bool = False) -> int:
    async with deps.client() as client:
        cap = await client.jobs.get_capacity()
    if as_json:
        from ..formatters.json_out import capacity_dict, dumps

        deps.io.out(dumps(capacity_dict(cap)))
        return 0
    deps.io.out("PRESET\tJOBS AVAILABLE")
    for name, n in cap.items():
        deps.io.out(f"{name}\t{n}")
    return 0
