"""neuro storage: your file tree on the server, which jobs mount with -v storage:PATH:/path."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from ..deps import Deps
from ..errors import CLIError, ExitCode
from ._jobs_common import run_async
from ._options import json_option

if TYPE_CHECKING:
    from neuro_sdk import Client


@dataclasses.dataclass(frozen=True)
class LsOptions:
    path: str = "storage:"
    long: bool = False
    as_json: bool = False


@dataclasses.dataclass(frozen=True)
class MkdirOptions:
    paths: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RmOptions:
    paths: tuple[str, ...]
    recursive: bool = False


@dataclasses.dataclass(frozen=True)
class CpOptions:
    src: str  # one of them storage:PATH, the other local (- is stdin or stdout)
    dst: str
    recursive: bool = False


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Manage files in your storage",
)
def group() -> None:
    """Manage files in your storage: a tree on the server that jobs mount with
    -v storage:PATH:/path[:ro]. Remote paths are written storage:PATH.

    \b
    Examples:
      neuro storage cp -r ./data storage:datasets/mnist
      neuro run -v storage:datasets/mnist:/data:ro IMAGE -- python train.py /data
      neuro storage ls storage:datasets
    """


def _is_remote(p: str) -> bool:
    return p.startswith("storage:")


@contextlib.contextmanager
def _named(path: str) -> Iterator[None]:
    """A missing path is reported as the user wrote it (storage:nope), not as the server's
    path inside the user's tree (/nope)."""
    from neuro_sdk import ResourceNotFound

    try:
        yield
    except ResourceNotFound as e:
        if "no such file or directory" not in str(e):
            raise
        raise CLIError(f"no such file or directory: {path}", ExitCode.NOT_FOUND) from None


@group.command(short_help="List a storage directory")
@click.argument("path", default="storage:")
@click.option("-l", "long", is_flag=True, help="Also show sizes and times.")
@json_option
@click.pass_context
def ls(ctx: click.Context, path: str, long: bool, as_json: bool) -> None:
    """List a directory of your storage (the top by default). `neuro ls` is the same.

    \b
    Examples:
      neuro storage ls
      neuro storage ls -l storage:datasets
    """
    opts = LsOptions(path, long, as_json)
    run_async(ctx, lambda deps: run_ls(opts, deps))


async def run_ls(opts: LsOptions, deps: Deps) -> int:
    from ..formatters.common import iso

    async with deps.client() as client:
        with _named(opts.path):
            entries = await client.storage.ls(opts.path)
    if opts.as_json:
        from ..formatters.json_out import dumps

        deps.io.out(
            dumps(
                [
                    {
                        "name": e.name,
                        "type": "directory" if e.is_dir else "file",
                        "size": e.size,
                        "modified": iso(e.modified),
                    }
                    for e in entries
                ]
            )
        )
        return 0
    for e in entries:
        name = e.name + ("/" if e.is_dir else "")
        deps.io.out(f"{e.size}\t{iso(e.modified)}\t{name}" if opts.long else name)
    return 0


@group.command(short_help="Make storage directories")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "-p",
    "--parents",
    is_flag=True,
    help="Accepted, as mkdir -p has it: parents are always made, and an existing directory is fine.",
)
@click.pass_context
def mkdir(ctx: click.Context, paths: tuple[str, ...], parents: bool) -> None:
    """Make directories in your storage, with their parents. `neuro mkdir` is the same.

    \b
    Examples:
      neuro storage mkdir storage:datasets/raw
      neuro mkdir -p storage:datasets/raw
    """
    opts = MkdirOptions(paths)
    run_async(ctx, lambda deps: run_mkdir(opts, deps))


async def run_mkdir(opts: MkdirOptions, deps: Deps) -> int:
    async with deps.client() as client:
        for p in opts.paths:
            await client.storage.mkdir(p)
    return 0


@group.command(short_help="Remove files from storage")
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Remove directories and their contents.")
@click.pass_context
def rm(ctx: click.Context, paths: tuple[str, ...], recursive: bool) -> None:
    """Remove files (and with -r, directories) from your storage. `neuro rm` is the same.

    \b
    Examples:
      neuro storage rm storage:old.csv
      neuro storage rm -r storage:runs/2024
    """
    opts = RmOptions(paths, recursive)
    run_async(ctx, lambda deps: run_rm(opts, deps))


async def run_rm(opts: RmOptions, deps: Deps) -> int:
    async with deps.client() as client:
        for p in opts.paths:
            with _named(p):
                await client.storage.rm(p, recursive=opts.recursive)
    return 0


@group.command(short_help="Copy files to or from storage")
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recursive", is_flag=True, help="Copy directories and their contents.")
@click.pass_context
def cp(ctx: click.Context, src: str, dst: str, recursive: bool) -> None:
    """Copy SRC to DST: one of them local, the other storage:PATH. A DST ending in / (or an
    existing directory) receives SRC under its own name; DST's directories are made as
    needed. A local - is stdin or stdout.
    `neuro cp` is the same.

    \b
    Examples:
      neuro storage cp model.pt storage:models/
      neuro storage cp storage:results/metrics.json .
      neuro storage cp -r ./data storage:datasets/mnist
      neuro storage cp storage:results/metrics.json - | jq .loss
      tar c runs | neuro storage cp - storage:backup/runs.tar
    """
    if _is_remote(src) == _is_remote(dst):
        raise click.UsageError("one of SRC and DST must be storage:PATH, the other local")
    if "-" in (src, dst):
        if recursive:
            raise click.UsageError("-r does not go with - (stdin or stdout carries one file)")
        remote = dst if src == "-" else src
        if remote.endswith(("/", ":")):
            raise click.UsageError(f"{remote} is a directory: - needs a file's path")
    opts = CpOptions(src, dst, recursive)
    run_async(ctx, lambda deps: run_cp(opts, deps))


async def run_cp(opts: CpOptions, deps: Deps) -> int:
    src, dst = opts.src, opts.dst
    async with deps.client() as client:
        if src == "-":
            await _make_parent(client, dst)
            await client.storage.create(dst, _stdin_chunks(deps.io.stdin))
            return 0
        if dst == "-":
            with _named(src):
                is_dir = (await client.storage.stat(src)).is_dir
            if is_dir:
                raise CLIError(f"{src} is a directory: - carries one file", ExitCode.BAD_INPUT)
            async with client.storage.open(src) as chunks:
                async for data in chunks:
                    deps.io.write_bytes(data)
            return 0
        if _is_remote(dst):
            n = await _upload(client, Path(src), dst, opts.recursive)
        else:
            with _named(src):
                n = await _download(client, src, Path(dst), opts.recursive)
    deps.io.err(f"Copied {n} file{'s' if n != 1 else ''}")
    return 0


async def _stdin_chunks(stdin: IO[str]) -> AsyncIterator[bytes]:
    """Local stdin in chunks as they come (a thread reads: file, pipe or terminal)."""
    import asyncio
    import os

    loop = asyncio.get_running_loop()
    fd = stdin.fileno()
    while data := await loop.run_in_executor(None, os.read, fd, 1 << 20):
        yield data


async def _upload(client: Client, local: Path, dst: str, recursive: bool) -> int:
    if not local.exists():  # noqa: ASYNC240 - a local file named on the command line: a usage error
        raise CLIError(f"no such file or directory: {local}", ExitCode.USAGE)
    from neuro_sdk import ResourceNotFound

    target = dst.rstrip("/")
    if dst.endswith(("/", ":")):
        target = f"{target}/{local.name}" if not target.endswith(":") else f"{target}{local.name}"
    else:
        try:
            if (await client.storage.stat(dst)).is_dir:
                target = f"{target}/{local.name}"
        except ResourceNotFound:
            pass
    if local.is_dir():  # noqa: ASYNC240 - local files, named on the command line
        if not recursive:
            raise CLIError(f"{local} is a directory: use -r", ExitCode.BAD_INPUT)
        count = 0
        await client.storage.mkdir(target)
        for p in sorted(local.rglob("*")):  # noqa: ASYNC240 - local files, named on the command line
            rel = p.relative_to(local).as_posix()
            if p.is_dir():
                await client.storage.mkdir(f"{target}/{rel}")
            elif p.is_file():
                await client.storage.upload(p, f"{target}/{rel}")
                count += 1
        return count
    await _make_parent(client, target)
    await client.storage.upload(local, target)
    return 1


async def _make_parent(client: Client, target: str) -> None:
    """A file's directories are made as it is copied in (as object stores do)."""
    parent, sep, _name = target.rstrip("/").rpartition("/")
    if sep and parent.rstrip("/") not in ("storage:", "storage:/"):
        await client.storage.mkdir(parent)  # storage:a/b, or a storage://... URI's


async def _download(
    client: Client, src: str, local: Path, recursive: bool, exact: bool = False
) -> int:
    status = await client.storage.stat(src)
    name = src.rstrip("/").rsplit("/", 1)[-1].removeprefix("storage:")
    target = local / name if local.is_dir() and not exact else local  # noqa: ASYNC240 - a local path
    if not status.is_dir:
        await client.storage.download(src, target)
        return 1
    if not recursive:
        raise CLIError(f"{src} is a directory: use -r", ExitCode.BAD_INPUT)
    count = 0
    target.mkdir(parents=True, exist_ok=True)
    for e in await client.storage.ls(src):
        child = f"{src.rstrip('/')}/{e.name}"
        if e.is_dir:
            count += await _download(client, child, target / e.name, True, exact=True)
        else:
            await client.storage.download(child, target / e.name)
            count += 1
    return count
