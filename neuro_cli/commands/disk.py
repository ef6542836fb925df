"""neuro disk: persistent disks of a fixed size that jobs mount with -v disk:NAME:/path."""

from __future__ import annotations

import dataclasses
import re

import click

from ..deps import Deps
from ._jobs_common import run_async
from ._options import json_option


@dataclasses.dataclass(frozen=True)
class CreateOptions:
    size: int  # bytes
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class LsOptions:
    as_json: bool = False


@dataclasses.dataclass(frozen=True)
class RmOptions:
    disks: tuple[str, ...]


UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'10G', '512M', '1.5Ti', '1024' (bytes) -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B?)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"invalid size {text!r}: use e.g. 512M, 10G, 1T")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]}, short_help="Manage persistent disks"
)
def group() -> None:
    """Manage persistent disks: filesystems of a fixed size that outlive jobs. A job mounts one
    with -v disk:NAME:/path[:ro]; one job writes to a disk at a time (others wait, with
    reason DiskUnavailable), readers share it.

    \b
    Examples:
      neuro disk create 20G --name cache
      neuro run -v disk:cache:/cache IMAGE -- python prepare.py
      neuro disk ls
    """


@group.command(short_help="Create a disk")
@click.argument("size", callback=_size)
@click.option("--name", help="A name to use instead of its id (3-40 letters, digits, dashes).")
@click.pass_context
def create(ctx: click.Context, size: int, name: str | None) -> None:
    """Create a disk of SIZE (e.g. 512M, 20G, 1T; at least 16M).

    \b
    Examples:
      neuro disk create 20G --name cache
    """
    opts = CreateOptions(size, name)
    run_async(ctx, lambda deps: run_create(opts, deps))


async def run_create(opts: CreateOptions, deps: Deps) -> int:
    async with deps.client() as client:
        disk = await client.disks.create(opts.size, name=opts.name)
    deps.io.out(disk.id)
    deps.io.err(f"Created disk {disk.name or disk.id} ({opts.size} bytes): -v {disk.uri}:/path")
    return 0


@group.command(short_help="List your disks")
@json_option
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List your disks with their size and how much is used.

    \b
    Examples:
      neuro disk ls
    """
    opts = LsOptions(as_json)
    run_async(ctx, lambda deps: run_ls(opts, deps))


async def run_ls(opts: LsOptions, deps: Deps) -> int:
    from ..formatters.common import iso, size

    async with deps.client() as client:
        disks = await client.disks.list()
    if opts.as_json:
        from ..formatters.json_out import dumps

        deps.io.out(
            dumps(
                [
                    {
                        "id": d.id,
                        "name": d.name,
                        "storage": d.storage,
                        "used_bytes": d.used_bytes,
                        "created_at": iso(d.created_at),
                        "last_usage": iso(d.last_usage) or None,
                    }
                    for d in disks
                ]
            )
        )
        return 0
    deps.io.out("ID\tNAME\tSIZE\tUSED\tCREATED")
    for d in disks:
        deps.io.out(
            f"{d.id}\t{d.name or ''}\t{size(d.storage)}\t{size(d.used_bytes)}\t{iso(d.created_at)}"
        )
    return 0


@group.command(short_help="Remove disks")
@click.argument("disks", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, disks: tuple[str, ...]) -> None:
    """Remove disks (by id or name) and everything on them; not while a job uses one.

    \b
    Examples:
      neuro disk rm cache
    """
    opts = RmOptions(disks)
    run_async(ctx, lambda deps: run_rm(opts, deps))


async def run_rm(opts: RmOptions, deps: Deps) -> int:
    async with deps.client() as client:
        for d in opts.disks:
            await client.disks.rm(d)
            deps.io.out(d)
    return 0
