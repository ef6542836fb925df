"""The help lint (style R14): every command and group of the whole tree, lazily-imported ones
included, has a short help, a description and an Examples block; docs/cli.md is current."""

from __future__ import annotations

import collections
import inspect
import re

import pytest

from neuro_cli import docs
from neuro_cli.cmdtree import Node, walk
from tests.conftest import ROOT

NODES = list(walk())
SUBCOMMANDS = [n for n in NODES if n.path]


def _help(node: Node) -> str:
    return inspect.cleandoc(node.command.help or "")


def _examples(node: Node) -> list[str]:
    text = _help(node)
    if "\b\nExamples:\n" not in text:
        return []
    block = text.split("\b\nExamples:\n", 1)[1]
    return [ln.strip() for ln in block.splitlines() if ln.startswith("  ") and ln.strip()]


def _description(node: Node) -> str:
    text = _help(node).split("\b\nExamples:", 1)[0]
    return " ".join(text.split())


def _is_imperative(phrase: str) -> bool:
    """A phrase that starts with a verb in the imperative: "List jobs", not "Lists jobs",
    "Listing jobs" or "The jobs"."""
    verb = phrase.split()[0]
    if not verb[0].isupper() or verb.lower() in {"the", "a", "an", "this", "job", "jobs"}:
        return False
    return not verb.endswith("ing") and not (verb.endswith("s") and not verb.endswith("ss"))


@pytest.mark.parametrize("node", SUBCOMMANDS, ids=[n.name for n in SUBCOMMANDS])
def test_help_short(node: Node) -> None:
    short = node.command.short_help
    assert short, f"{node.name}: no short_help"
    assert len(short) <= 45, f"{node.name}: short help over 45 chars: {short!r}"
    assert not short.endswith("."), f"{node.name}: short help ends with a period: {short!r}"
    assert _is_imperative(short), f"{node.name}: short help is not imperative: {short!r}"
    # a lazy group lists commands from its table without importing them: it must agree
    assert node.listed_help == short, f"{node.name}: listed as {node.listed_help!r}"


@pytest.mark.parametrize("node", NODES, ids=[n.name for n in NODES])
def test_help_description_and_examples(node: Node) -> None:
    description = _description(node)
    short = node.command.short_help or ""
    assert len(description) >= 30, f"{node.name}: no description: {description!r}"
    assert description.rstrip(".") != short, f"{node.name}: the description only repeats {short!r}"
    examples = _examples(node)
    assert examples, f"{node.name}: no '\\b' + 'Examples:' block"
    assert all("neuro " in ex for ex in examples), f"{node.name}: {examples}"


def test_help_short_unique_in_group() -> None:
    by_group: dict[tuple[str, ...], list[str]] = collections.defaultdict(list)
    seen: set[tuple[tuple[str, ...], int]] = set()
    for node in SUBCOMMANDS:
        key = (node.path[:-1], id(node.command))
        if key not in seen:  # the same command under two names may share its help
            seen.add(key)
            by_group[node.path[:-1]].append(node.command.short_help or "")
    dups = {g: [s for s, n in collections.Counter(v).items() if n > 1] for g, v in by_group.items()}
    assert not {g: d for g, d in dups.items() if d}


def test_help_walk_includes_lazy_commands() -> None:
    names = {n.name for n in NODES}
    assert {
        "neuro ps",
        "neuro job ls",
        "neuro job bump-life-span",
        "neuro config show-token",
        "neuro server stop",
        "neuro completion",
    } <= names


def test_docs_cli_md_is_current() -> None:
    path = ROOT / "docs" / "cli.md"
    assert path.read_text() == docs.render(NODES), (
        "docs/cli.md is stale: run `python -m neuro_cli.docs > docs/cli.md`"
    )


def test_docs_anchors_resolve() -> None:
    text = docs.render(NODES)
    headings = {docs.anchor(h) for h in re.findall(r"^## (.+)$", text, re.MULTILINE)}
    assert set(re.findall(r"\]\(#([^)]+)\)", text)) <= headings
