"""Options shared by the commands: TTY, detach keys, port forwards, JSON, parsed values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..parse import DEFAULT_DETACH_KEYS, parse_detach_keys


def parsed(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback: the value through ``parse`` (None stays None); its ValueError is the
    option's usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return callback


def parse_port_pair(value: str) -> tuple[int, int]:
    """'8888:8888' -> (8888, 8888); ports must be 1-65535."""
    parts = value.split(":")
    if len(parts) != 2:
        raise ValueError(f"invalid port forward {value!r}: use LOCAL:REMOTE, e.g. 8888:8888")
    try:
        local, remote = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"invalid port forward {value!r}: ports are numbers") from None
    for p in (local, remote):
        if not 1 <= p <= 65535:
            raise ValueError(f"invalid port {p} in {value!r}: use 1-65535")
    return local, remote


def _ports(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(parse_port_pair(v) for v in values)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _keys(ctx: click.Context, param: click.Parameter, value: str) -> bytes:
    try:
        return parse_detach_keys(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def port_forward_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--port-forward",
        "port_forwards",
        multiple=True,
        metavar="LOCAL:REMOTE",
        callback=_ports,
        help="Forward a local port to the job's port while attached (repeatable).",
    )(f)


def detach_keys_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--detach-keys",
        default=DEFAULT_DETACH_KEYS,
        show_default=True,
        callback=_keys,
        help="Key sequence that detaches from a TTY session ('' disables it).",
    )(f)


def tty_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-t/-T",
        "--tty/--no-tty",
        default=None,
        help="Allocate a TTY [default: when stdin, stdout and stderr are all terminals].",
    )(f)


def keys_text(keys: bytes) -> str:
    names = []
    for b in keys:
        names.append(f"Ctrl-{chr(b + 64)}" if b < 32 else chr(b))
    return " ".join(names) or "nothing"


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: the command prints JSON, with the fields documented in docs/cli.md."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (fields: docs/cli.md, JSON output)."
    )(fn)
