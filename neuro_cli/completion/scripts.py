"""Render the completion script of a shell from the live command tree."""

from __future__ import annotations

from . import bash, fish, zsh
from .spec import build

SHELLS = {"bash": bash.render, "zsh": zsh.render, "fish": fish.render}
FILES = {"bash": "neuro.bash", "zsh": "_neuro", "fish": "neuro.fish"}  # under completions/


def render(shell: str) -> str:
    return SHELLS[shell](build())
