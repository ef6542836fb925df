"""neuro login / logout: switch between a remote server and the embedded local one."""

from __future__ import annotations

import click

from ..completion.cache import forget as forget_completion_cache
from ..deps import Deps
from ._jobs_common import run_async


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]}, short_help="Log in to a neuro server"
)
@click.argument("url")
@click.option(
    "--token",
    required=True,
    envvar="NEURO_TOKEN",
    help="API token (e.g. from `neuro-server add-user NAME`) [env: NEURO_TOKEN].",
)
@click.pass_context
def login(ctx: click.Context, url: str, token: str) -> None:
    """Log in to a neuro (or Neu.ro/Apolo-compatible) server with a token.

    URL is the API URL, e.g. http://head-node:8080/api/v1.

    \b
    Examples:
      neuro login http://head-node:8080/api/v1 --token $TOKEN
    """

    api = _api_url(url)

    async def run(deps: Deps) -> int:
        from neuro_sdk import AuthError, Factory, ResourceNotFound, ServerUnreachable

        from ..embedded import config_dir
        from ..errors import CLIError, ExitCode, unreachable_reason

        factory = Factory(config_dir())
        try:
            await factory.login_with_token(token, api)
        except ServerUnreachable as e:
            raise CLIError(
                f"cannot reach {api}: {unreachable_reason(e)}",
                ExitCode.UNREACHABLE,
                hint="check the URL, and that the server (`neuro-server serve`) "
                "runs there and can be reached from here",
            ) from None
        except ResourceNotFound as e:
            raise CLIError(
                f"no neuro server API at {api}: it answered {e}",
                ExitCode.NOT_FOUND,
                hint="check the URL: the API URL of a server, e.g. http://head-node:8080/api/v1",
            ) from None
        except AuthError as e:
            why = str(e).removesuffix(": log in again (neuro login)")
            raise CLIError(
                f"the server at {api} refused the token: {why}",
                ExitCode.AUTH,
                hint="check the token; on the server, `neuro-server token USER` prints a new one",
            ) from None
        forget_completion_cache()  # it lists the jobs of the previous server
        client = await factory.get()
        try:
            deps.io.out(f"Logged into {api} as {client.username}")
        finally:
            await client.close()
        return 0

    run_async(ctx, run)


def _api_url(url: str) -> str:
    """The API URL of a server: URL, with /api/v1 added when it is missing; a usage error when
    URL is not an http(s) URL with a host."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{url!r} is not a server URL: use http(s)://HOST[:PORT]/api/v1, e.g. "
            "http://head-node:8080/api/v1",
            param_hint="URL",
        )
    api = url.rstrip("/")
    return api if api.endswith("/api/v1") else api + "/api/v1"


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Log out and go back to the local server",
)
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
