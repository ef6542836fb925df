"""What the shell scripts need to know about each command: its subcommands, its options
(which take a value, and what that value completes to) and its positional arguments.

A value's *kind* is a token without spaces: ``jobs``, ``presets``, ``file``,
``=CHOICE,CHOICE`` or ``-`` (nothing to offer); a trailing ``*`` marks a variadic argument."""

from __future__ import annotations

import dataclasses
import re

import click

from ..cmdtree import Node, walk
from .types import CachedType


@dataclasses.dataclass(frozen=True)
class Option:
    names: tuple[str, ...]
    kind: str | None  # None: a flag, takes no value
    help: str


@dataclasses.dataclass(frozen=True)
class Spec:
    path: tuple[str, ...]
    commands: tuple[tuple[str, str], ...]  # (name, short help)
    options: tuple[Option, ...]
    args: tuple[str, ...]  # kinds, in order

    @property
    def key(self) -> str:
        return " ".join(self.path)

    @property
    def value_options(self) -> tuple[Option, ...]:
        return tuple(o for o in self.options if o.kind is not None)


def kind_of(param: click.Parameter) -> str:
    t = param.type
    if isinstance(t, CachedType):
        return t.kind
    if isinstance(t, click.Choice):
        choices = [str(c) for c in t.choices]
        assert all(re.fullmatch(r"[\w.-]+", c) for c in choices), choices
        return "=" + ",".join(choices)
    if isinstance(t, (click.Path, click.File)):
        return "file"
    return "-"


def first_sentence(text: str | None) -> str:
    text = re.sub(r"\s*\[[^\]]*\]", "", " ".join((text or "").split()))
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".")


def spec_of(node: Node) -> Spec:
    commands: list[tuple[str, str]] = []
    if isinstance(node.command, click.Group):
        short = getattr(node.command, "short", {})
        for name in node.command.list_commands(node.ctx):
            cmd = node.command.get_command(node.ctx, name)
            if cmd is not None and not cmd.hidden:
                commands.append((name, short.get(name) or cmd.get_short_help_str(limit=200)))
    options: list[Option] = []
    args: list[str] = []
    for p in node.command.get_params(node.ctx):
        if isinstance(p, click.Option):
            if not p.hidden:
                flag = p.is_flag or p.count
                # short names first; click keeps the help option's names in a set
                names = sorted((*p.opts, *p.secondary_opts), key=lambda n: n.startswith("--"))
                options.append(
                    Option(tuple(names), None if flag else kind_of(p), first_sentence(p.help))
                )
        elif isinstance(p, click.Argument):
            args.append(kind_of(p) + ("*" if p.nargs == -1 else ""))
    return Spec(node.path, tuple(commands), tuple(options), tuple(args))


def build() -> list[Spec]:
    return [spec_of(node) for node in walk()]
