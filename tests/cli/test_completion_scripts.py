"""The ready-made scripts in completions/ are current, and commands, options and choices
complete in each real shell straight from the script (no Python runs for them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from neuro_cli.completion.scripts import FILES, render
from tests.cli.shells import ROOT, SHELLS, complete


@pytest.mark.parametrize("shell", SHELLS)
def test_scripts_current(shell: str) -> None:
    path = ROOT / "completions" / FILES[shell]
    assert path.read_text() == render(shell), (
        f"{path} is stale: run `python -m neuro_cli.completion`"
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_scripts_printed_by_neuro_completion(shell: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "neuro_cli", "completion", shell],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT / "completions" / FILES[shell]).read_text()


def test_scripts_unknown_shell(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "neuro_cli", "completion", "tcsh"],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert r.returncode == 2


# (line, what must be offered, what must not be)
STATIC = [
    ("neuro lo", {"login", "logout", "logs"}, {"ps"}),
    ("neuro ", {"run", "ps", "job", "completion", "port-forward"}, {"--help"}),
    ("neuro ps --re", {"--recent-first", "--recent-last"}, {"--status"}),
    ("neuro ps -s r", {"running"}, {"pending"}),
    ("neuro ps --status=fa", {"failed"}, set()),
    ("neuro --color al", {"always"}, {"auto"}),
    ("neuro -v --color never job l", {"logs", "ls"}, {"kill"}),
    ("neuro job ls --st", {"--status"}, set()),
    ("neuro job bump-life-span -", {"--help", "-h"}, set()),
    ("neuro config sh", {"show", "show-token"}, set()),
    ("neuro completion ", {"bash", "zsh", "fish"}, set()),
    ("neuro run --tag x -", {"--preset", "--detach", "--tty", "-t"}, {"--status"}),
    ("neuro run ubuntu -- -", set(), {"--preset"}),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("line", "want", "unwanted"), STATIC, ids=[c[0] for c in STATIC])
def test_scripts_static(
    shell: str, line: str, want: set[str], unwanted: set[str], tmp_path: Path
) -> None:
    env = {"HOME": str(tmp_path), "NEURO_CONFIG": str(tmp_path / ".neuro"), "PATH": "/usr/bin:/bin"}
    got = set(complete(shell, line, env, tmp_path).values)
    if shell == "fish" and "=" in line:  # fish offers the whole word back
        got = {v.split("=", 1)[1] for v in got}
    assert want <= got, got
    assert not unwanted & got, got
