"""Start-up stays light (style R12): help and completion never import the network or
terminal stacks; a subprocess shows what was imported once the output was written."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

HEAVY = ("aiohttp", "rich.table", "prompt_toolkit", "neuro_sdk")

PROBE = """
import json, sys
from neuro_cli.main import main
try:
    main(sys.argv[1:], fast_exit=False)
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def probe(args: list[str], tmp: Path, env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            "HOME": str(tmp),
            "NEURO_CONFIG": str(tmp / ".neuro"),
            "PATH": "/usr/bin:/bin",
            **(env or {}),
        },
    )
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("MODULES ")]
    assert line, r.stderr
    return r.stdout, set(json.loads(line[-1][len("MODULES ") :]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def fresh_cache(tmp: Path) -> None:
    d = tmp / ".neuro" / "cache"
    d.mkdir(parents=True)
    job = {"id": "job-11111111-1111-1111-1111-111111111111", "name": "train", "status": "running"}
    (d / "completion.json").write_text(
        json.dumps(
            {"version": 1, "time": time.time(), "jobs": [job], "presets": [{"name": "cpu-small"}]}
        )
    )


@pytest.mark.parametrize(
    "args",
    [["--help"], ["ps", "--help"], ["job", "--help"], ["run", "--help"]],
    ids=["root", "ps", "job", "run"],
)
def test_startup_help_imports_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    out, modules = probe(args, tmp_path)
    assert "Usage: neuro" in out
    assert heavy(modules) == []
    if args != ["run", "--help"]:  # (run imports the terminal code of its -t option)
        assert "asyncio" not in modules  # ~17 ms: only commands that run import it


@pytest.mark.parametrize("kind", ["jobs", "presets"])
def test_startup_complete_fresh_cache_imports_nothing_heavy(kind: str, tmp_path: Path) -> None:
    fresh_cache(tmp_path)
    out, modules = probe(["__complete", kind], tmp_path)
    assert ("train" if kind == "jobs" else "cpu-small") in out
    assert heavy(modules) == []
    assert not (tmp_path / ".neuro" / "cache" / "completion.refresh").exists()


def test_startup_click_completion_fresh_cache(tmp_path: Path) -> None:
    """click's own protocol (_NEURO_COMPLETE=bash_complete) works through the lazy tree."""
    fresh_cache(tmp_path)
    env = {"_NEURO_COMPLETE": "bash_complete", "COMP_WORDS": "neuro logs tr", "COMP_CWORD": "2"}
    out, modules = probe([], tmp_path, env)
    assert out.split() == ["plain,train"]
    assert heavy(modules) == []
    env["COMP_WORDS"], env["COMP_CWORD"] = "neuro po", "1"
    out, modules = probe([], tmp_path, env)
    assert out.split() == ["plain,port-forward"]
    assert "neuro_cli.commands.port_forward" not in modules  # listed from the table
