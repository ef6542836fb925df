"""--json on every list and detail command: valid JSON whose objects carry exactly the fields
documented in neuro_cli/formatters/json_out.py (rendered into docs/cli.md)."""

from __future__ import annotations

import json
import time

from neuro_cli.formatters.json_out import SCHEMAS, check
from tests.conftest import Neuro


def _json(neuro: Neuro, *args: str) -> object:
    out = neuro.ok(*args)
    assert "\x1b[" not in out
    return json.loads(out)


def test_json_of_every_command(neuro: Neuro) -> None:
    assert _json(neuro, "ps", "--json") == []
    busy = neuro.ok(
        "run",
        "-q",
        "--detach",
        "-n",
        "busy",
        "--tag",
        "x",
        "-e",
        "A=1",
        "ubuntu",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    ).strip()
    done = neuro.ok("run", "-q", "--detach", "ubuntu", "--", "sh", "-c", "sleep 1; exit 3").strip()
    neuro.wait_status(done, {"failed"})

    jobs = _json(neuro, "ps", "-a", "--json")
    assert isinstance(jobs, list) and [j["id"] for j in jobs] == [busy, done]
    for j in jobs:
        assert check(j, SCHEMAS["ps"][1]) == []
    assert jobs[0]["name"] == "busy" and jobs[0]["tags"] == ["x"] and jobs[0]["env"] == {"A": "1"}
    assert jobs[1]["status"] == "failed" and jobs[1]["exit_code"] == 3

    st = _json(neuro, "status", "--json", "busy")
    assert check(st, SCHEMAS["status"][1]) == []
    assert st["status"] == "running" and st["resources"]["cpu"] > 0
    assert [t["status"] for t in st["transitions"]][-1] == "running"
    assert st["created_at"].endswith("Z")

    deadline = time.monotonic() + 20
    while True:
        top = _json(neuro, "top", "--no-stream", "--json")
        if top or time.monotonic() > deadline:
            break
    assert isinstance(top, list) and [t["id"] for t in top] == [busy]
    assert check(top[0], SCHEMAS["top"][1]) == []

    cap = _json(neuro, "capacity", "--json")
    assert check(cap, SCHEMAS["capacity"][1]) == [] and cap["gpu-small"] == 0

    cfg = _json(neuro, "config", "show", "--json")
    assert check(cfg, SCHEMAS["config show"][1]) == []
    assert cfg["embedded"] is True and cfg["runtime"]["name"] == "process"
    assert {p["name"] for p in cfg["presets"]} >= {"cpu-small", "gpu-small"}
    neuro.ok("kill", busy)

    r = neuro("ps", "-q", "--json")
    assert r.returncode == 2 and "cannot be used together" in r.stderr


def test_check_finds_problems() -> None:
    fields = SCHEMAS["top"][1]
    assert check({"id": 1}, fields)  # wrong type and missing fields
    assert any("undocumented" in p for p in check({**dict.fromkeys(fields), "x": 1}, fields))


def test_json_of_secret_storage_and_disk_lists(neuro: Neuro, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import shutil

    neuro.ok("secret", "add", "k1", "v")
    secrets = _json(neuro, "secret", "ls", "--json")
    assert [s["key"] for s in secrets] == ["k1"] and "v" not in json.dumps(secrets)
    for s in secrets:
        assert check(s, SCHEMAS["secret ls"][1]) == []
    f = tmp_path / "f.txt"
    f.write_text("abc")
    neuro.ok("storage", "cp", str(f), "storage:")
    entries = _json(neuro, "storage", "ls", "--json")
    assert [(e["name"], e["type"], e["size"]) for e in entries] == [("f.txt", "file", 3)]
    for e in entries:
        assert check(e, SCHEMAS["storage ls"][1]) == []
    if shutil.which("mkfs.ext4") and os.geteuid() == 0:  # (disks: e2fsprogs and loop mounts)
        neuro.ok("disk", "create", "16M", "--name", "disk-one")
        disks = _json(neuro, "disk", "ls", "--json")
        assert [d["name"] for d in disks] == ["disk-one"]
        for d in disks:
            assert check(d, SCHEMAS["disk ls"][1]) == []
        neuro.ok("disk", "rm", "disk-one")
