"""Walk the whole command tree, lazily-imported commands included.

For the generated reference (``docs``), the completion scripts and the help lint; never on
the path of a normal command (it imports every command module)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import click

WIDTH = 100  # help rendered for docs does not depend on the terminal


@dataclasses.dataclass(frozen=True)
class Node:
    path: tuple[str, ...]  # () for the root
    command: click.Command
    ctx: click.Context
    listed_help: str  # the short help the parent group lists (its SHORT_HELP entry)

    @property
    def name(self) -> str:
        return " ".join(("neuro", *self.path))

    @property
    def is_group(self) -> bool:
        return isinstance(self.command, click.Group)


def walk(root: click.Command | None = None) -> Iterator[Node]:
    """Every command and group, depth first, in the order ``--help`` lists them."""
    if root is None:
        from .main import cli

        root = cli
    ctx = click.Context(
        root,
        info_name="neuro",
        terminal_width=WIDTH,
        max_content_width=WIDTH,
        **root.context_settings,
    )
    yield from _walk(Node((), root, ctx, ""))


def _walk(node: Node) -> Iterator[Node]:
    yield node
    group = node.command
    if not isinstance(group, click.Group):
        return
    short = getattr(group, "short", {})
    for name in group.list_commands(node.ctx):
        cmd = group.get_command(node.ctx, name)
        if cmd is None or cmd.hidden:
            continue
        ctx = click.Context(cmd, info_name=name, parent=node.ctx, **cmd.context_settings)
        listed = short.get(name) or cmd.get_short_help_str(limit=200)
        yield from _walk(Node((*node.path, name), cmd, ctx, listed))
