"""Run a completion in a real bash, zsh or fish, and time the completion call itself.

bash: the registered function runs as bash would run it (COMP_WORDS, COMP_CWORD).
fish: ``complete -C LINE``, fish's own completion machinery.
zsh: the ``_neuro`` function runs in a real zsh with compsys' output builtins (_describe,
compadd, ...) replaced by stubs that print what they were given; the interactive test in
test_completion_shells.py drives the real compsys through a terminal.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "bash": ROOT / "completions" / "neuro.bash",
    "zsh": ROOT / "completions" / "_neuro",
    "fish": ROOT / "completions" / "neuro.fish",
}
SHELLS = list(SCRIPTS)


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} not installed")
    return path


def neuro_bin(tmp: Path) -> Path:
    """A directory with a `neuro` that runs this checkout with this Python."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "neuro"
    exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m neuro_cli "$@"\n')
    exe.chmod(0o755)
    return bindir


@dataclasses.dataclass
class Result:
    values: list[str]
    seconds: float  # wall time of the completion call, measured inside the shell
    stderr: str


def _words(line: str) -> list[str]:
    words = shlex.split(line)
    return [*words, ""] if line.endswith(" ") or not line else words


def _bash_words(line: str) -> list[str]:
    """As bash splits them (COMP_WORDBREAKS has "="): --opt=val is --opt, =, val."""
    out: list[str] = []
    for w in _words(line):
        if w.startswith("-") and "=" in w:
            opt, val = w.split("=", 1)
            out += [opt, "=", val] if val else [opt, "="]
        else:
            out.append(w)
    return out


def _fish_quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _program(shell: str, line: str) -> list[str]:
    script = str(SCRIPTS[shell])
    if shell == "bash":
        words = " ".join(shlex.quote(w) for w in _bash_words(line))
        return [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            f"""
source {shlex.quote(script)}
COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMPREPLY=()
t0=$EPOCHREALTIME; _neuro; t1=$EPOCHREALTIME
printf 'V %s\\n' "${{COMPREPLY[@]}}"; echo "T $t0 $t1"
""",
        ]
    if shell == "zsh":
        words = " ".join(shlex.quote(w) for w in _words(line))
        return [
            "zsh",
            "-f",
            "-c",
            f"""
zmodload zsh/datetime
compdef() {{ }}
compset() {{ [[ $1 == -P ]] && PREFIX=${{cur#*=}} }}
_describe() {{ local a; for a in ${{(P)4}}; do print -r -- "V ${{a%%:*}}"; done }}
compadd() {{ [[ $1 == -a ]] && print -rl -- ${{(P)2/#/V }} || print -rl -- ${{@[2,-1]/#/V }} }}
_files() {{ print -r -- "V <files>" }}
source {shlex.quote(script)}
words=({words}); CURRENT=$#words
t0=$EPOCHREALTIME; _neuro; t1=$EPOCHREALTIME
echo "T $t0 $t1"
""",
        ]
    return [
        "fish",
        "--no-config",
        "-c",
        f"""
source {_fish_quote(script)}
set t0 (date +%s.%N); set out (complete -C {_fish_quote(line)}); set t1 (date +%s.%N)
for o in $out; echo "V "(string split -f1 \\t -- $o); end
echo "T $t0 $t1"
""",
    ]


def complete(shell: str, line: str, env: dict[str, str], tmp: Path) -> Result:
    """The values offered for ``line`` (the cursor at its end)."""
    need(shell)
    env = {**env, "PATH": f"{neuro_bin(tmp)}{os.pathsep}{env.get('PATH', os.defpath)}"}
    r = subprocess.run(
        _program(shell, line), env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert r.returncode == 0, r.stderr
    values = [ln[2:] for ln in r.stdout.splitlines() if ln.startswith("V ") and ln[2:]]
    if shell == "zsh":  # compsys matches the offers against the word, as bash and fish do
        cur = _words(line)[-1]
        cur = cur.split("=", 1)[1] if cur.startswith("--") and "=" in cur else cur
        values = [v for v in values if v.startswith(cur) or v == "<files>"]
    times = [ln.split()[1:] for ln in r.stdout.splitlines() if ln.startswith("T ")]
    assert times, r.stdout + r.stderr
    t0, t1 = (float(x) for x in times[-1])
    return Result(values, t1 - t0, r.stderr)
