"""neuro secret: add, list and remove the secrets jobs use (-e VAR=secret:KEY, -v secret:KEY:PATH)."""

from __future__ import annotations

import dataclasses
from typing import IO

import click

from ..deps import Deps
from ..errors import CLIError, ExitCode
from ._jobs_common import run_async
from ._options import json_option


@dataclasses.dataclass(frozen=True)
class AddOptions:
    key: str
    value: bytes  # VALUE, read: from the file of @FILE, from standard input for -


@dataclasses.dataclass(frozen=True)
class LsOptions:
    as_json: bool = False


@dataclasses.dataclass(frozen=True)
class RmOptions:
    keys: tuple[str, ...]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, short_help="Manage secrets")
def group() -> None:
    """Manage secrets: named values that jobs get as environment variables or files, without
    the values ever appearing in a job's description, its status or the server's log.

    Only you can list, read or use your secrets.

    \b
    Examples:
      neuro secret add hf-token hf_0123456789
      neuro secret add ssh-key @~/.ssh/id_ed25519
      neuro run -e HF_TOKEN=secret:hf-token -v secret:ssh-key:/root/.ssh/id_ed25519 IMAGE -- CMD
      neuro secret ls
    """


def _value(text: str, stdin: IO[str]) -> bytes:
    """VALUE, or the bytes of a file for @FILE, or standard input for -."""
    if text == "-":
        buffer = getattr(stdin, "buffer", None)
        return buffer.read() if buffer is not None else stdin.read().encode()
    if text.startswith("@"):
        import os

        path = os.path.expanduser(text[1:])
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            # a local file named on the command line: a usage error, as --env-file's (not 65,
            # which says the server refused the request)
            raise CLIError(f"cannot read {path}: {e.strerror}", ExitCode.USAGE) from None
    return text.encode()


@group.command(short_help="Add a secret or replace its value")
@click.argument("key")
@click.argument("value")
@click.pass_context
def add(ctx: click.Context, key: str, value: str) -> None:
    """Add the secret KEY, or replace its value.

    VALUE is the value itself, @FILE for a file's bytes, or - to read standard input (which
    keeps the value out of your shell history).

    \b
    Examples:
      neuro secret add db-password s3cr3t
      neuro secret add kubeconfig @~/.kube/config
      pass show db | neuro secret add db-password -
    """
    deps: Deps = ctx.find_root().obj
    # read here, before the event loop runs: Ctrl-C stops a read of the terminal at once
    opts = AddOptions(key, _value(value, deps.io.stdin))
    run_async(ctx, lambda deps: run_add(opts, deps))


async def run_add(opts: AddOptions, deps: Deps) -> int:
    async with deps.client() as client:
        await client.secrets.add(opts.key, opts.value)
    deps.io.err(f"Secret {opts.key} saved ({len(opts.value)} bytes)")
    return 0


@group.command(short_help="List your secrets")
@json_option
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List your secrets: their keys and URIs, never their values.

    \b
    Examples:
      neuro secret ls
    """
    opts = LsOptions(as_json)
    run_async(ctx, lambda deps: run_ls(opts, deps))


async def run_ls(opts: LsOptions, deps: Deps) -> int:
    async with deps.client() as client:
        secrets = await client.secrets.list()
    if opts.as_json:
        from ..formatters.json_out import dumps

        deps.io.out(dumps([{"key": s.key, "uri": str(s.uri)} for s in secrets]))
        return 0
    deps.io.out("KEY\tURI")
    for s in secrets:
        deps.io.out(f"{s.key}\t{s.uri}")
    return 0


@group.command(short_help="Remove secrets")
@click.argument("keys", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, keys: tuple[str, ...]) -> None:
    """Remove secrets. Jobs that already run keep what they got; jobs not yet started fail.

    \b
    Examples:
      neuro secret rm db-password
    """
    opts = RmOptions(keys)
    run_async(ctx, lambda deps: run_rm(opts, deps))


async def run_rm(opts: RmOptions, deps: Deps) -> int:
    from neuro_sdk import ResourceNotFound

    failed = 0
    async with deps.client() as client:
        for key in opts.keys:
            try:
                await client.secrets.rm(key)
                deps.io.out(key)
            except ResourceNotFound:
                deps.io.err(f"ERROR: no secret {key!r}")
                failed += 1
    return 1 if failed else 0
