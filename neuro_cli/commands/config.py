"""neuro config: show the configuration, the presets with capacity, and the token."""

from __future__ import annotations

import click

from ..deps import Deps
from ._jobs_common import run_async
from ._options import json_option


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Show the client configuration",
)
def group() -> None:
    """Show the client configuration.

    Which server commands go to (a server you logged in to, or the local one), as which user,
    the presets jobs can run on, and the API token for other clients.

    \b
    Examples:
      neuro config show
      neuro config show-token
    """


@group.command(short_help="Show server, user and presets")
@json_option
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """Show the server, the user, and the presets with how many jobs of each fit now.

    \b
    Examples:
      neuro config show
      neuro config show --json
    """
    run_async(ctx, lambda deps: _show(deps, as_json), loop=False)


async def _show(deps: Deps, as_json: bool = False) -> int:
    from neuro_sdk import Factory

    from ..embedded import config_dir, server_dir
    from ..formatters.common import size

    io = deps.io
    async with deps.client() as client:
        cfg = await client.get_server_config()
        cap = await client.jobs.get_capacity()
    embedded_mode = not Factory(config_dir()).is_logged_in()
    cluster = cfg.clusters.get(client.cluster_name or "")
    presets = list(cluster.presets.values()) if cluster else []
    rt = cfg.runtime
    if as_json:
        from ..formatters.json_out import dumps

        io.out(
            dumps(
                {
                    "user": client.username,
                    "url": str(client.url),
                    "embedded": embedded_mode,
                    "cluster_name": client.cluster_name,
                    "runtime": {
                        k: rt.get(k)
                        for k in ("name", "reason", "image_used", "limits", "users", "ports")
                    }
                    if rt
                    else None,
                    "presets": [
                        {
                            "name": p.name,
                            "cpu": p.cpu,
                            "memory": int(p.memory),
                            "nvidia_gpu": int(p.nvidia_gpu or 0),
                            "nvidia_gpu_model": p.nvidia_gpu_model,
                            "available": int(cap.get(p.name, 0)),
                        }
                        for p in presets
                    ],
                }
            )
        )
        return 0
    io.out(f"User: {client.username}")
    io.out(f"API URL: {client.url}")
    io.out(
        f"Server: {'embedded local server (' + str(server_dir()) + ')' if embedded_mode else 'remote'}"
    )
    io.out(f"Cluster: {client.cluster_name}")
    if rt:
        io.out(f"Runtime: {rt.get('name')}" + (f" ({rt['reason']})" if rt.get("reason") else ""))
        if not rt.get("image_used", True):
            io.out(f"  {rt.get('note') or 'the image is not used'}")
        if rt.get("limits"):
            io.out(f"  limits: {rt['limits']}")
        if rt.get("volumes"):
            io.out(f"  volumes and secret files: {rt['volumes']}")
        for key in ("users", "ports"):  # whether the runtime keeps users' jobs apart
            if rt.get(key):
                io.out(f"  {key}: {rt[key]}")
    io.out("Presets:")
    rows: list[tuple[str, ...]] = [("NAME", "CPU", "MEMORY", "GPU", "JOBS AVAILABLE")]
    for p in presets:
        gpu = f"{p.nvidia_gpu} x {p.nvidia_gpu_model or 'nvidia'}" if p.nvidia_gpu else "-"
        rows.append((p.name, f"{p.cpu:g}", size(p.memory), gpu, str(cap.get(p.name, 0))))
    for row in _aligned(rows) if io.stdout_tty else ("\t".join(r) for r in rows):
        io.out("  " + row)  # (piped: tab-separated, as every table in a pipe)
    return 0


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as columns padded to their widest cell (a terminal shows tabs as jumps to the
    next multiple of 8, which leaves a table ragged)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip() for r in rows
    ]


@group.command("show-token", short_help="Print the API token")
@click.pass_context
def show_token(ctx: click.Context) -> None:
    """Print the API token, so that other clients (apolo, scripts) can log in as you.

    \b
    Examples:
      apolo config login-with-token "$(neuro config show-token)" URL
    """

    async def run(deps: Deps) -> int:
        async with deps.client() as client:
            deps.io.out(client.token)
        return 0

    run_async(ctx, run, loop=False)
