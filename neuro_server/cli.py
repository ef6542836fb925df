"""``neuro-server``: run the platform server, manage users and tokens."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .config import ConfigError, ServerConfig, load_config
from .runtime import registry

if TYPE_CHECKING:
    import ssl

    from .store import Store


def default_data_dir() -> Path:
    return Path(os.environ.get("NEURO_SERVER_DATA", "~/.neuro/server")).expanduser()


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the database, secrets and job output live [default: ~/.neuro/server].",
)
config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Server config file (TOML) [default: DATA_DIR/server.toml].",
)


def _load(data_dir: Path | None, config_file: Path | None, **kw: Any) -> ServerConfig:
    """The config, with its data dir made private first (datadir.py): every command reads or
    writes secrets there."""
    from .datadir import DataDirError, secure

    path = (data_dir or default_data_dir()).expanduser().resolve()
    try:
        tightened = secure(path)
    except (DataDirError, OSError) as e:
        raise click.ClickException(f"cannot use the data dir: {e}") from None
    for what in tightened:
        click.echo(f"made private (only its owner may read it): {what}", err=True)
    try:
        return registry.check(load_config(path, config_file, **kw))
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def write_private(path: Path, data: str) -> None:
    """Write a file readable by its owner only, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@click.group()
def main() -> None:
    """Run the neuro platform server and manage its users."""
    from .datadir import UMASK

    os.umask(UMASK)  # the database, keys, tokens and job files: the server's user's only


@main.command()
@data_dir_option
@config_option
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on (0: any free port).")
@click.option(
    "--runtime",
    type=click.Choice(["auto", *registry.names()]),
    default=None,
    help="How jobs run: docker (Docker/Podman), process, or auto [default: auto].",
)
@click.option(
    "--docker-host",
    default=None,
    help="Docker Engine API of the docker runtime (unix:///path or tcp://host:port).",
)
@click.option(
    "--embedded",
    is_flag=True,
    hidden=True,
    help="Run as the CLI's local server: create the local user and publish server.json.",
)
def serve(
    data_dir: Path | None,
    config_file: Path | None,
    host: str | None,
    port: int | None,
    runtime: str | None,
    docker_host: str | None,
    embedded: bool,
) -> None:
    """Run the server until SIGTERM or Ctrl-C"""
    config = _load(
        data_dir,
        config_file,
        host=host,
        port=port,
        runtime=runtime,
        docker_host=docker_host,
        embedded=embedded,
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve(config))
    except OSError as e:
        raise click.ClickException(f"cannot start the server: {e}") from None


async def _serve(config: ServerConfig) -> None:
    from aiohttp import web

    from neuro_sdk._wire import SERVER_INFO_FILE, ServerInfo, server_info_json

    from .app import make_app
    from .handlers.common import STATE
    from .ingress import Ingress
    from .runtime.select import runtime_for
    from .serialize import server_config_json
    from .store import Store

    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_fd = os.open(config.data_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise click.ClickException(f"another server already uses {config.data_dir}") from None
    runtime, choice = await runtime_for(config)
    store = Store(config.db_path)
    app = make_app(config, store, runtime, runtime_reason=choice.reason)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # the embedded server comes back on the same ports, so that clients holding the old URLs
    # (a port-forward that outlived a restart, a job's http_url) reconnect
    port_file = config.data_dir / "port"

    async def start_site(port: int) -> int:
        site = web.TCPSite(runner, config.host, port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[attr-defined]
        return int(sockets[0].getsockname()[1]) if sockets else port

    port = await _on_last_port(start_site, config.port, port_file if config.embedded else None)
    host = config.host if config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    base = f"http://{host}:{port}"
    app[STATE].scheduler.api_url = f"{base}/api/v1"  # what pass_config jobs reach
    ingress: Ingress | None = None

    async def start_ingress(port: int) -> int:
        nonlocal ingress
        ingress = Ingress(
            app[STATE],
            config.host,
            port,
            config.http_domain,
            auth_url=f"{base}/oauth/authorize",
            ssl=_tls(config),
        )
        return await ingress.start()

    await _on_last_port(
        start_ingress, config.http_port, config.data_dir / "http_port" if config.embedded else None
    )
    assert ingress is not None
    app[STATE].ingress = ingress
    logging.getLogger("neuro_server").info(
        "listening on %s (runtime %s: %s)", base, runtime.info().name, choice.reason
    )
    info_path = config.data_dir / SERVER_INFO_FILE
    if config.embedded:
        user = getpass.getuser()
        store.add_user(user)
        token_file = config.data_dir / "token"
        state = app[STATE]
        token = None
        if token_file.exists():
            token = token_file.read_text().strip()
            try:
                state.auth.verify(token)
            except Exception:  # noqa: BLE001 - any bad token: mint a new one
                token = None
        if token is None:
            token = state.auth.issue(user, note="embedded")
            write_private(token_file, token)
        write_private(
            info_path,
            server_info_json(
                ServerInfo(
                    url=f"{base}/api/v1",
                    pid=os.getpid(),
                    token_file=str(token_file),
                    server_config=server_config_json(
                        config, base, user, app[STATE].runtime_info(), runtime.capacity()
                    ),
                )
            ),
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if config.embedded:
            try:
                if json.loads(info_path.read_text()).get("pid") == os.getpid():
                    info_path.unlink()
            except (OSError, ValueError):
                pass
        await ingress.close()
        await runner.cleanup()
        await runtime.close()
        os.close(lock_fd)


def _tls(config: ServerConfig) -> ssl.SSLContext | None:
    """The ingress's HTTPS context, from ``tls_cert`` and ``tls_key`` (None: plain HTTP)."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)  # (an SSLError is an OSError)
    return context


async def _on_last_port(start: Any, configured: int, remember: Path | None) -> int:
    """``start(port)`` on the port in ``remember`` (the last one used) when the configured port
    is 0 (any), falling back to ``configured`` when that one is taken; the port it got is
    remembered for the next time."""
    port = configured
    if remember is not None and configured == 0:
        try:
            port = int(remember.read_text())  # noqa: ASYNC240 - at start-up, before serving
        except (OSError, ValueError):
            port = 0
    try:
        bound = await start(port)
    except OSError:
        if port == configured:
            raise
        bound = await start(configured)
    if remember is not None:
        write_private(remember, str(bound))
    return int(bound)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from .admin import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


expires_option = click.option(
    "--expires",
    "expires_in",
    metavar="DURATION",
    callback=_duration,
    default=None,
    help="The token stops working after this long, e.g. 30d, 12h, 1w2d [default: never].",
)


@main.command("add-user")
@data_dir_option
@config_option
@expires_option
@click.argument("name")
def add_user(
    data_dir: Path | None, config_file: Path | None, expires_in: float | None, name: str
) -> None:
    """Add a user and print a token for them"""
    from .validation import NAME_RE

    if not (1 <= len(name) <= 64) or not NAME_RE.fullmatch(name):
        raise click.ClickException(
            f"invalid user name {name!r}: lower-case letters, digits and dashes"
        )
    config = _load(data_dir, config_file)
    _print_token(config, name, create=True, expires_in=expires_in, note="add-user")


@main.command()
@data_dir_option
@config_option
@expires_option
@click.argument("name")
def token(
    data_dir: Path | None, config_file: Path | None, expires_in: float | None, name: str
) -> None:
    """Print a new token for an existing user"""
    _print_token(
        _load(data_dir, config_file), name, create=False, expires_in=expires_in, note="token"
    )


def _print_token(
    config: ServerConfig, name: str, *, create: bool, expires_in: float | None, note: str
) -> None:
    from .auth import Authenticator, load_secret

    with _store(config) as store:
        if create:
            store.add_user(name)
        else:
            _require_user(store, name)
        click.echo(
            Authenticator(store, load_secret(config.data_dir)).issue(
                name, expires_in=expires_in, note=note
            )
        )


@contextlib.contextmanager
def _store(config: ServerConfig) -> Iterator[Store]:
    from .store import Store

    store = Store(config.db_path)
    try:
        yield store
    finally:
        store.close()


def _require_user(store: Store, name: str) -> None:
    if not store.user_exists(name):
        raise click.ClickException(
            f"no such user: {name} (add it with: neuro-server add-user {name})"
        )


@main.command()
@data_dir_option
@config_option
@click.argument("name")
def tokens(data_dir: Path | None, config_file: Path | None, name: str) -> None:
    """List a user's tokens (JTI, created, expiry, state)"""
    from .admin import token_table

    with _store(_load(data_dir, config_file)) as store:
        _require_user(store, name)
        for line in token_table(store.tokens(name)):
            click.echo(line)


@main.command("revoke-token")
@data_dir_option
@config_option
@click.argument("token_or_jti", metavar="TOKEN|JTI")
def revoke_token(data_dir: Path | None, config_file: Path | None, token_or_jti: str) -> None:
    """Revoke a token, given whole or by its JTI

    A running server refuses it from its next request on.  `neuro-server tokens NAME` lists
    the JTIs."""
    from .admin import looks_like_jwt, valid_jti
    from .auth import Authenticator, AuthError, load_secret

    config = _load(data_dir, config_file)
    arg = token_or_jti.strip()
    with _store(config) as store:
        if looks_like_jwt(arg):
            try:
                jti = (
                    Authenticator(store, load_secret(config.data_dir))
                    .claims(arg, verify_exp=False)
                    .jti
                )
            except AuthError:
                raise click.ClickException(
                    "not a token of this server (its signature does not verify)"
                ) from None
        elif valid_jti(arg):
            jti = arg
        else:
            raise click.ClickException(f"not a token nor a token id (32 hex digits): {arg[:40]!r}")
        record = store.token(jti)
        if record is None:
            raise click.ClickException(f"no token {jti} (or its user was removed)")
        if not store.revoke_token(jti):
            click.echo(f"Token {jti} of {record.user} was already revoked")
            return
        click.echo(f"Revoked token {jti} of {record.user}")


@main.command("remove-user")
@data_dir_option
@config_option
@click.argument("name")
def remove_user(data_dir: Path | None, config_file: Path | None, name: str) -> None:
    """Remove a user, revoke their tokens and kill their jobs

    Their tokens stop working at once (in a running server too), their active jobs are
    killed, their secrets and what others shared with them are deleted.  Their job records,
    storage and disks are kept: adding the user again gives them back."""
    from .admin import server_running, stop_jobs
    from .store import ACTIVE

    config = _load(data_dir, config_file)
    with _store(config) as store:
        _require_user(store, name)
        active = list(store.list_jobs(owners=[name], statuses=ACTIVE))
        secrets = len(store.secret_keys(name))
        live = sum(1 for t in store.tokens(name) if not t.revoked and not t.expired())
        store.remove_user(name)
        click.echo(f"Removed user {name}: {live} tokens revoked, {secrets} secrets deleted")
        if active:
            click.echo(
                f"Killing {len(active)} active jobs of {name}: " + ", ".join(j.id for j in active)
            )
            asyncio.run(stop_jobs(config, store, active))
            if not server_running(config.data_dir):
                click.echo(
                    "No server runs on this data dir: it records them as cancelled "
                    "when it next starts"
                )
    storage = config.data_dir / "storage" / name
    if storage.exists():
        click.echo(f"Kept: {name}'s storage in {storage} (delete it yourself if unwanted)")
    home = config.homes_dir / name  # (jobusers.py: their jobs' home, and their uid, stay)
    if home.exists():
        click.echo(f"Kept: {name}'s home in {home} (delete it yourself if unwanted)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
