"""The completion cache: what a TAB offers from it, and when it asks for a refresh."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from neuro_cli.completion import cache

JOBS = [
    {"id": "job-11111111-1111-1111-1111-111111111111", "name": "train", "status": "running"},
    {"id": "job-22222222-2222-2222-2222-222222222222", "name": None, "status": "pending"},
    {"id": "job-33333333-3333-3333-3333-333333333333", "name": "train", "status": "running"},
]
PRESETS = [{"name": "cpu-small", "help": "0.5 CPU, 1.0 GiB"}]


@pytest.fixture
def spawned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """NEURO_CONFIG in tmp_path; records refreshes instead of starting them."""
    monkeypatch.setenv("NEURO_CONFIG", str(tmp_path / ".neuro"))
    calls: list[list[str]] = []

    def popen(args: list[str], **kw: Any) -> None:
        calls.append(args)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return calls


def write_cache(age: float, **extra: Any) -> None:
    cache.cache_dir().mkdir(parents=True, exist_ok=True)
    data = {"version": 1, "time": time.time() - age, "jobs": JOBS, "presets": PRESETS, **extra}
    cache.cache_file().write_text(json.dumps(data))


def test_cache_fresh_offers_ids_and_names(spawned: list[list[str]]) -> None:
    write_cache(age=1)
    got = cache.values("jobs")
    assert [v for v, _ in got] == [JOBS[0]["id"], "train", JOBS[1]["id"], JOBS[2]["id"]]
    assert dict(got)["train"] == f"{JOBS[0]['id']} (running)"  # the most recent one
    assert cache.values("presets") == [("cpu-small", "0.5 CPU, 1.0 GiB")]
    assert spawned == []


@pytest.mark.parametrize(
    ("age", "offered"),
    [(cache.TTL + 5, True), (cache.MAX_AGE + 5, False)],
    ids=["stale", "too-old"],
)
def test_cache_stale_refreshes_in_background(
    spawned: list[list[str]], age: float, offered: bool
) -> None:
    write_cache(age=age)
    assert bool(cache.values("jobs")) is offered
    assert len(spawned) == 1 and spawned[0][1:] == ["-m", "neuro_cli.completion.refresh"]
    cache.values("jobs")  # a second TAB right after: no second refresh
    assert len(spawned) == 1


def test_cache_missing_refreshes_again_after_retry(spawned: list[list[str]]) -> None:
    assert cache.values("jobs") == []
    marker = cache.cache_dir() / "completion.refresh"
    old = time.time() - cache.RETRY - 1
    os.utime(marker, (old, old))
    assert cache.values("presets") == []
    assert len(spawned) == 2


def test_cache_broken_file_counts_as_missing(spawned: list[list[str]]) -> None:
    cache.cache_dir().mkdir(parents=True)
    cache.cache_file().write_text("{not json")
    assert cache.values("jobs") == []
    assert len(spawned) == 1


def test_cache_forget(spawned: list[list[str]]) -> None:
    write_cache(age=1)
    cache.forget()
    cache.forget()  # twice is fine
    assert not cache.cache_file().exists()


@pytest.mark.parametrize(
    ("args", "code", "out"),
    [
        (["jobs"], 0, f"{JOBS[0]['id']}\ttrain (running)\n"),
        (["presets"], 0, "cpu-small\t0.5 CPU, 1.0 GiB\n"),
        (["nope"], 2, ""),
        ([], 2, ""),
    ],
    ids=["jobs", "presets", "unknown", "none"],
)
def test_cache_main(
    spawned: list[list[str]],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    out: str,
) -> None:
    write_cache(age=1)
    assert cache.main(args) == code
    assert capsys.readouterr().out.startswith(out)


def test_cache_refresh_never_starts_a_server(spawned: list[list[str]]) -> None:
    from neuro_cli.completion.refresh import refresh

    assert refresh(wait=True) is False  # no login, no local server: nothing to ask
    assert not cache.cache_file().exists()
    assert not (cache.cache_dir().parent / "server" / "server.json").exists()
