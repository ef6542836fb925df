"""Generate the command reference from the command tree: ``python -m neuro_cli.docs > docs/cli.md``.

A test fails when docs/cli.md is stale, so help text changes land together with it."""

from __future__ import annotations

import re
import sys

from .cmdtree import Node, walk

HEAD = """\
# neuro command reference

Generated from the command tree by `python -m neuro_cli.docs > docs/cli.md`: do not edit by
hand. The same text is what `neuro COMMAND --help` prints.
"""


def anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def render(nodes: list[Node] | None = None) -> str:
    nodes = list(walk()) if nodes is None else nodes
    out = [HEAD, "## Commands", ""]
    for node in nodes[1:]:
        indent = "  " * (len(node.path) - 1)
        out.append(f"{indent}- [`{node.name}`](#{anchor(node.name)}): {node.listed_help}")
    out.append("")
    first: dict[int, Node] = {}
    for node in nodes:
        out += [f"## {node.name}", ""]
        same = first.setdefault(id(node.command), node)
        if same is not node:
            out += [f"The same command as [`{same.name}`](#{anchor(same.name)}).", ""]
            continue
        if node.listed_help:
            out += [node.listed_help, ""]
        out += ["```text", node.command.get_help(node.ctx).rstrip(), "```", ""]
    out += columns_section()
    out += json_section()
    out += user_config_section()
    return "\n".join(out)


def columns_section() -> list[str]:
    from .formatters import columns

    out = [
        "## ps columns",
        "",
        "`neuro ps --format COLUMNS` (default `" + columns.DEFAULT_FORMAT + "`, or `ps-format` "
        "in the user config): columns separated by spaces or commas. `a/b` stacks two fields "
        "in one cell (each is a column of its own when piped). "
        "`{field;align=left|right|center;min=N;max=N;width=N;TITLE}` sets a column's "
        "options and title. A unique prefix names a field (`stat` is status).",
        "",
        "| field | title |",
        "|---|---|",
    ]
    out += [f"| `{name}` | {title} |" for name, (title, _get) in columns.FIELDS.items()]
    out.append("")
    return out


def user_config_section() -> list[str]:
    from . import user_config

    doc = user_config.__doc__ or ""
    example = doc[doc.index("[job]") : doc.index("Loaded only")].rstrip()
    return [
        "## User config",
        "",
        "`~/.neuro/user.toml` (`$NEURO_CONFIG/user.toml`), overridden key by key by the "
        "project's `.neuro.toml` (in the working directory or the nearest parent). An error "
        "in either is a one-line message naming the file, exit code 70.",
        "",
        "```toml",
        *[line[4:] if line.startswith("    ") else line for line in example.splitlines()],
        "```",
        "",
    ]


def json_section() -> list[str]:
    """The fields of each command's ``--json`` output (from formatters/json_out.py)."""
    from .formatters import json_out

    out = ["## JSON output", "", *json_out.USER_DOC.splitlines(), ""]
    for command, (shape, fields) in json_out.SCHEMAS.items():
        out += [
            f"### neuro {command} --json",
            "",
            f"An {shape}:" if shape[0] in "ao" else shape,
            "",
            "| field | type | meaning |",
            "|---|---|---|",
        ]
        out += [
            f"| `{k}` | {t.rstrip('?')}{' or null' if t.endswith('?') else ''} | {m} |"
            for k, (t, m) in fields.items()
        ]
        out.append("")
    return out


if __name__ == "__main__":
    sys.stdout.write(render())
