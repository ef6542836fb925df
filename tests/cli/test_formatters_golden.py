"""Golden files: ps (default and custom --format) and status rendered at a fixed width, on a
terminal (rich, colours off, relative times) and piped (tab-separated, ISO times).  After an
intended change: NEURO_UPDATE_GOLDEN=1 python -m pytest tests/cli/test_formatters_golden.py"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from neuro_cli.formatters import columns as cols
from neuro_cli.formatters.jobs import status_plain, status_renderable
from neuro_sdk import JobDescription
from neuro_sdk._parsing import job_description_from_api
from tests.sdk.helpers import job_json

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("NEURO_UPDATE_GOLDEN"))  # read before the env is cleaned
NOW = datetime(2024, 1, 2, 3, 14, 10, tzinfo=UTC)


def _job(job_id: str, **kw: Any) -> JobDescription:
    return job_description_from_api(job_json(job_id, **kw))


def jobs() -> list[JobDescription]:
    failed_history = {
        "status": "failed",
        "reason": "OOMKilled",
        "description": "the memory limit was hit",
        "created_at": "2024-01-01T23:00:00Z",
        "started_at": "2024-01-01T23:00:02Z",
        "finished_at": "2024-01-02T01:00:00Z",
        "exit_code": 137,
        "restarts": 0,
    }
    return [
        _job(
            "job-11111111-1111-1111-1111-111111111111",
            name="train",
            tags=["nightly", "x"],
            preset_name="cpu-small",
            description="the nightly run",
        ),
        _job(
            "job-22222222-2222-2222-2222-222222222222",
            status="failed",
            history=failed_history,
            preset_name="gpu-small",
            container={
                "image": "pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime",
                "command": "python train.py --epochs 100 --lr 0.001 --batch-size 512",
                "env": {},
                "volumes": [],
                "resources": {
                    "cpu": 4.0,
                    "memory_mb": 16384,
                    "nvidia_gpu": 1,
                    "nvidia_gpu_model": "nvidia-tesla-a100",
                    "shm": True,
                },
            },
        ),
    ]


def _render(renderable: Any, width: int = 100) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(
        file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False
    ).print(renderable)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _compare(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with NEURO_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file"


@pytest.mark.parametrize(
    "spec", [cols.DEFAULT_FORMAT, "{id;width=40} stat/when {command;max=25;CMD} exit reason tags"]
)
def test_ps_terminal_and_piped(spec: str) -> None:
    parsed = cols.parse_format(spec)
    key = "default" if spec == cols.DEFAULT_FORMAT else "custom"
    _compare(f"ps-{key}-tty.txt", _render(cols.render_table(jobs(), parsed, NOW)))
    piped = "\n".join([cols.header(parsed), *(cols.line(j, parsed, NOW) for j in jobs())]) + "\n"
    assert "\x1b" not in piped
    _compare(f"ps-{key}-piped.txt", piped)


def test_ps_narrow_terminal_keeps_the_id() -> None:
    text = _render(cols.render_table(jobs(), cols.parse_format(cols.DEFAULT_FORMAT), NOW), 80)
    assert "job-22222222-2222-2222-2222-222222222222" in text
    _compare("ps-default-tty-80.txt", text)


@pytest.mark.parametrize("width", [80, 90, 100, 120, 160])
def test_ps_table_fits_its_width_with_whole_headers(width: int) -> None:
    """At 80 columns the header was cut to `COMMA` and commands cut without an ellipsis: the
    table was wider than the terminal, and the terminal cropped it."""
    text = _render(cols.render_table(jobs(), cols.parse_format(cols.DEFAULT_FORMAT), NOW), width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), text
    assert lines[0].split() == ["ID/NAME", "STATUS/WHEN", "IMAGE/PRESET", "COMMAND"], text
    command = next(line for line in lines if "job-2222" in line).split()[-1]
    assert command.endswith("…") or "512" in text, text  # cut with an ellipsis, or whole


@pytest.mark.parametrize("which", [0, 1])
def test_status_terminal_and_piped(which: int) -> None:
    job = jobs()[which]
    _compare(f"status-{which}-tty.txt", _render(status_renderable(job, NOW)))
    _compare(f"status-{which}-piped.txt", "\n".join(status_plain(job, NOW)) + "\n")


def test_parse_format() -> None:
    c = cols.parse_format("id/na, {stat;align=right;min=8;max=12;width=10;STATE}")
    assert [x.fields for x in c] == [("id", "name"), ("status",)]
    assert c[1] == cols.Column(("status",), "STATE", "right", 8, 12, 10)
    assert c[0].title == "ID/NAME"
    for bad, why in [
        ("", "names no column"),
        ("nope", "unknown column"),
        ("st", "ambiguous"),
        ("{id", "unclosed"),
        ("id}", "unbalanced"),
        ("{id;align=up}", "bad align"),
        ("{id;min=0}", "positive"),
        ("id/name/status", "at most two"),
        ("{id;A;B}", "bad column option"),
    ]:
        with pytest.raises(ValueError, match=why):
            cols.parse_format(bad)
