"""neuro login / logout: switch between a remote server and the embedded local one."""

from __future__ import annotations

import click

from ..completion.cache import forget as forget_completion_cache
from ..deps import Deps
from ._jobs_common import run_async


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               short_help="Log in to a neuro server")
@click.argument("url")
@click.option("--token", required=True, envvar="NEURO_TOKEN",
              help="API token (e.g. from `neuro-server add-user NAME`) [env: NEURO_TOKEN].")
@click.pass_context
def login(ctx: click.Context, url: str, token: str) -> None:
    """Log in to a neuro (or Neu.ro/Apolo-compatible) server with a token.

    URL is the API URL, e.g. http://head-node:8080/api/v1.

    \b
    Examples:
      neuro login http://head-node:8080/api/v1 --token $TOKEN
    """

    async def run(deps: Deps) -> int:
        from neuro_sdk import Factory

        from ..embedded import config_dir

        api = url.rstrip("/")
        if not api.endswith("/api/v1"):
            api += "/api/v1"
        factory = Factory(config_dir())
        await factory.login_with_token(token, api)
        forget_completion_cache()  # it lists the jobs of the previous server
        client = await factory.get()
        try:
            deps.io.out(f"Logged into {api} as {client.username}")
        finally:
            await client.close()
        return 0

    run_async(ctx, run)


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               short_help="Log out and go back to the local server")
@click.pass_context
def logout(ctx: click.Context) -> None:
    """Log out: forget the server and token; later commands use the local server.

    \b
    Examples:
      neuro logout
    """

    async def run(deps: Deps) -> int:
        from neuro_sdk import Factory

        from ..embedded import config_dir

        factory = Factory(config_dir())
        if not factory.is_logged_in():
            deps.io.out("Not logged in: commands use the local server")
            return 0
        await factory.logout()
        forget_completion_cache()
        deps.io.out("Logged out: commands now use the local server")
        return 0

    run_async(ctx, run)
