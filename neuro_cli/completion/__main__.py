"""Regenerate the ready-made scripts: ``python -m neuro_cli.completion [DIR]`` (completions/)."""

from __future__ import annotations

import sys
from pathlib import Path

from .scripts import FILES, render


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "completions"
    for shell, name in FILES.items():
        (out / name).write_text(render(shell))
        print(out / name)


main(sys.argv[1:])
