"""The completion cache: ids and names of active jobs, and preset names.

``$NEURO_CONFIG/cache/completion.json``.  A TAB answers from it without any network and
without importing aiohttp, rich or the SDK, so it takes the same few milliseconds whatever
state the server is in.  When the cache is older than ``TTL`` the answer still comes from it
and a detached process refreshes it (``neuro_cli.completion.refresh``) for the next TAB.

``neuro __complete jobs|presets`` prints ``VALUE<TAB>DESCRIPTION`` lines for the shell
scripts; ``neuro __complete refresh`` refreshes in the foreground.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..embedded import config_dir

TTL = 10.0  # seconds the cache counts as fresh
MAX_AGE = 3600.0  # an older cache is not offered at all (it would mostly be wrong)
RETRY = 10.0  # at most one background refresh is started per this many seconds
KINDS = ("jobs", "presets")


def cache_dir() -> Path:
    return config_dir() / "cache"


def cache_file() -> Path:
    return cache_dir() / "completion.json"


def load() -> dict[str, Any] | None:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("time"), (int, float)) else None


def forget() -> None:
    """Drop the cache (after login or logout it describes another server)."""
    with contextlib.suppress(OSError):
        cache_file().unlink()


def values(kind: str, now: float | None = None) -> list[tuple[str, str]]:
    """(value, description) pairs for ``kind``; starts a background refresh when stale."""
    data = load()
    age = (time.time() if now is None else now) - data["time"] if data else float("inf")
    if age > TTL:
        request_refresh()
    if data is None or age > MAX_AGE:
        return []
    if kind == "presets":
        return [(str(p.get("name", "")), str(p.get("help", ""))) for p in data.get("presets", [])]
    if kind != "jobs":
        return []
    out: list[tuple[str, str]] = []
    names: set[str] = set()
    for job in data.get("jobs", []):
        jid, name, status = str(job.get("id", "")), job.get("name") or "", job.get("status", "")
        out.append((jid, f"{name} ({status})" if name else f"({status})"))
        if name and name not in names:
            names.add(name)
            out.append((name, f"{jid} ({status})"))
    return [(v, h) for v, h in out if v]


def request_refresh() -> bool:
    """Start a detached refresh unless one was started less than RETRY seconds ago."""
    marker = cache_dir() / "completion.refresh"
    try:
        if time.time() - marker.stat().st_mtime < RETRY:
            return False
    except OSError:
        pass
    try:
        cache_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        marker.touch(mode=0o600)
        os.utime(marker)  # touch() keeps the old time of an existing file
    except OSError:
        return False
    import subprocess

    try:
        subprocess.Popen(
            [sys.executable, "-m", "neuro_cli.completion.refresh"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError:
        return False
    return True


def main(args: list[str]) -> int:
    """``neuro __complete KIND``: the hidden entry point of the shell scripts."""
    kind = args[0] if args else ""
    if kind == "refresh":
        from .refresh import refresh

        ok = refresh(wait=True)
        if not ok:
            sys.stderr.write("neuro: completion cache not refreshed (no server to ask)\n")
        return 0 if ok else 1
    if kind not in KINDS:
        sys.stderr.write(f"usage: neuro __complete {{{'|'.join(KINDS)}|refresh}}\n")
        return 2
    sys.stdout.write("".join(f"{v}\t{h}\n" for v, h in values(kind)))
    return 0
