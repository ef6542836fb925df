"""neuro disk without a subprocess: argv -> Options (parse), Options + the stub server ->
output and exit code (behaviour).  tests/e2e/test_disks.py is the end-to-end test."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from neuro_cli.commands import disk
from tests.sdk.stub_server import StubServer

from .stub_deps import stub_deps

DISK = {
    "id": "disk-1",
    "storage": 32 << 20,
    "used_bytes": 1 << 20,
    "owner": "alice",
    "status": "Ready",
    "name": "cache",
    "created_at": "2024-01-02T03:04:05+00:00",
    "last_usage": None,
}


def parse(monkeypatch: pytest.MonkeyPatch, runner: str, argv: list[str]) -> Any:
    """The Options that ``neuro disk ARGV`` hands its run function."""
    seen: list[Any] = []

    async def capture(opts: Any, deps: Any) -> int:
        seen.append(opts)
        return 0

    monkeypatch.setattr(disk, runner, capture)
    disk.group.main(argv, standalone_mode=False, obj=stub_deps())
    (opts,) = seen
    return opts


@pytest.mark.parametrize(
    ("argv", "runner", "expected"),
    [
        (["create", "20G"], "run_create", disk.CreateOptions(20 << 30)),
        (
            ["create", "512M", "--name", "cache"],
            "run_create",
            disk.CreateOptions(512 << 20, "cache"),
        ),
        (["create", "1.5Ti"], "run_create", disk.CreateOptions(int(1.5 * (1 << 40)))),
        (["ls"], "run_ls", disk.LsOptions()),
        (["ls", "--json"], "run_ls", disk.LsOptions(as_json=True)),
        (["rm", "a", "b"], "run_rm", disk.RmOptions(("a", "b"))),
    ],
    ids=["size", "name", "fraction", "ls", "ls-json", "rm"],
)
def test_disk_parse(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], runner: str, expected: Any
) -> None:
    assert parse(monkeypatch, runner, argv) == expected


@pytest.mark.parametrize(
    "argv", [["create", "lots"], ["create"], ["rm"]], ids=["bad-size", "no-size", "no-disk"]
)
def test_disk_parse_usage_errors(argv: list[str]) -> None:
    import click

    with pytest.raises(click.UsageError):
        disk.group.main(argv, standalone_mode=False, obj=stub_deps())


async def test_disk_create(stub: StubServer) -> None:
    stub.add("POST", "/api/v1/disk", json=DISK)
    deps = stub_deps(stub)
    assert await disk.run_create(disk.CreateOptions(32 << 20, "cache"), deps) == 0
    assert stub.only("POST", "/api/v1/disk").json() == {"storage": 32 << 20, "name": "cache"}
    assert deps.out == "disk-1\n"
    assert deps.err == f"Created disk cache ({32 << 20} bytes): -v disk:cache:/path\n"


async def test_disk_ls_table_and_json(stub: StubServer) -> None:
    stub.add("GET", "/api/v1/disk", json=[DISK])
    deps = stub_deps(stub)
    assert await disk.run_ls(disk.LsOptions(), deps) == 0
    assert deps.out.splitlines() == [
        "ID\tNAME\tSIZE\tUSED\tCREATED",
        "disk-1\tcache\t32.0 MiB\t1.0 MiB\t2024-01-02T03:04:05Z",
    ]
    deps = stub_deps(stub)
    assert await disk.run_ls(disk.LsOptions(as_json=True), deps) == 0
    assert json.loads(deps.out) == [
        {
            "id": "disk-1",
            "name": "cache",
            "storage": 32 << 20,
            "used_bytes": 1 << 20,
            "created_at": "2024-01-02T03:04:05Z",
            "last_usage": None,
        }
    ]


async def test_disk_rm_stops_at_the_first_refusal(stub: StubServer) -> None:
    from neuro_sdk import ClientError

    stub.add("DELETE", "/api/v1/disk/a", status=204)

    async def in_use(request: web.Request) -> web.Response:
        return web.json_response({"error": "disk b is in use by job-1"}, status=409)

    stub.add("DELETE", "/api/v1/disk/b", in_use)
    deps = stub_deps(stub)
    with pytest.raises(ClientError, match="in use by job-1"):
        await disk.run_rm(disk.RmOptions(("a", "b", "c")), deps)
    assert deps.out == "a\n"
