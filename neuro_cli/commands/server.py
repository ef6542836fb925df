"""neuro server: start, stop and inspect the embedded local server."""

from __future__ import annotations

import click

from .. import embedded


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Manage the embedded local server",
)
def group() -> None:
    """Manage the embedded local server.

    With no login, the first neuro command starts a server for you on this machine (loopback
    only); jobs keep running when it stops and are picked up when it starts again.

    \b
    Examples:
      neuro server status
      neuro server stop
    """


@group.command(short_help="Start the local server")
def start() -> None:
    """Start the local server (if it is not running) and print its URL.

    \b
    Examples:
      neuro server start
    """
    info = embedded.ensure_started()
    click.echo(f"Local server running at {info['url']} (pid {info['pid']})")


@group.command(short_help="Stop the local server")
def stop() -> None:
    """Stop the local server; running jobs keep running.

    \b
    Examples:
      neuro server stop
    """
    pid = embedded.stop()
    if pid is None:
        click.echo("The local server is not running")
    else:
        click.echo(f"Stopped the local server (pid {pid}); running jobs go on")


@group.command(short_help="Show whether the local server runs")
def status() -> None:
    """Show whether the local server runs, where, and where its data lives.

    \b
    Examples:
      neuro server status
    """
    info = embedded.read_info()
    click.echo(f"Data: {embedded.server_dir()}")
    if info is None:
        click.echo("Status: stopped (it starts on the next command)")
    else:
        click.echo(f"Status: running at {info['url']} (pid {info['pid']})")
