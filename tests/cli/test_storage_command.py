"""neuro storage without a subprocess: argv -> Options (parse, with the usage errors of cp),
Options + the stub server -> requests, output and exit code (behaviour).
tests/e2e/test_storage.py is the end-to-end test (and tests/cli/test_storage_stream.py
streams a real stdin and stdout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp import web

from neuro_cli.commands import storage
from neuro_cli.errors import CLIError, ExitCode
from tests.sdk.stub_server import StubServer

from .stub_deps import stub_deps

T = 1700000000  # modificationTime of the stubbed entries: 2023-11-14T22:13:20Z


def entry(path: str, kind: str = "FILE", length: int = 0) -> dict[str, Any]:
    return {"path": path, "type": kind, "length": length, "modificationTime": T}


def listing(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"FileStatuses": {"FileStatus": list(entries)}}


def parse(monkeypatch: pytest.MonkeyPatch, runner: str, argv: list[str]) -> Any:
    """The Options that ``neuro storage ARGV`` hands its run function."""
    seen: list[Any] = []

    async def capture(opts: Any, deps: Any) -> int:
        seen.append(opts)
        return 0

    monkeypatch.setattr(storage, runner, capture)
    storage.group.main(argv, standalone_mode=False, obj=stub_deps())
    (opts,) = seen
    return opts


@pytest.mark.parametrize(
    ("argv", "runner", "expected"),
    [
        (["ls"], "run_ls", storage.LsOptions()),
        (
            ["ls", "-l", "--json", "storage:ds"],
            "run_ls",
            storage.LsOptions("storage:ds", True, True),
        ),
        (
            ["mkdir", "storage:a", "storage:b"],
            "run_mkdir",
            storage.MkdirOptions(("storage:a", "storage:b")),
        ),
        (["rm", "-r", "storage:a"], "run_rm", storage.RmOptions(("storage:a",), recursive=True)),
        (["cp", "f.txt", "storage:d/"], "run_cp", storage.CpOptions("f.txt", "storage:d/")),
        (["cp", "-r", "storage:d", "."], "run_cp", storage.CpOptions("storage:d", ".", True)),
        (["cp", "-", "storage:d/f"], "run_cp", storage.CpOptions("-", "storage:d/f")),
    ],
    ids=["ls", "ls-long-json", "mkdir", "rm-r", "cp-up", "cp-down-r", "cp-stdin"],
)
def test_storage_parse(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], runner: str, expected: Any
) -> None:
    assert parse(monkeypatch, runner, argv) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cp", "a", "b"], "one of SRC and DST must be storage:PATH"),
        (["cp", "storage:a", "storage:b"], "one of SRC and DST must be storage:PATH"),
        (["cp", "-r", "storage:d", "-"], "-r does not go with -"),
        (["cp", "-", "storage:d/"], "storage:d/ is a directory: - needs a file's path"),
        (["rm"], "Missing parameter: paths"),
    ],
    ids=["both-local", "both-remote", "dash-recursive", "dash-to-dir", "rm-nothing"],
)
def test_storage_parse_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(click.UsageError, match=message):
        storage.group.main(argv, standalone_mode=False, obj=stub_deps())


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (storage.LsOptions("storage:ds"), ["data/", "a.txt"]),
        (
            storage.LsOptions("storage:ds", long=True),
            ["0\t2023-11-14T22:13:20Z\tdata/", "5\t2023-11-14T22:13:20Z\ta.txt"],
        ),
    ],
    ids=["names", "long"],
)
async def test_storage_ls(stub: StubServer, opts: storage.LsOptions, expected: list[str]) -> None:
    stub.add(
        "GET",
        "/api/v1/storage/ds",
        json=listing(entry("/ds/data", "DIRECTORY"), entry("/ds/a.txt", length=5)),
    )
    deps = stub_deps(stub)
    assert await storage.run_ls(opts, deps) == 0
    assert deps.out.splitlines() == expected
    assert stub.only("GET", "/api/v1/storage/ds").query["op"] == "LIST_STATUS"


async def test_storage_ls_json(stub: StubServer) -> None:
    import json

    stub.add("GET", "/api/v1/storage", json=listing(entry("/out", "DIRECTORY")))
    deps = stub_deps(stub)
    assert await storage.run_ls(storage.LsOptions(as_json=True), deps) == 0
    assert json.loads(deps.out) == [
        {"name": "out", "type": "directory", "size": 0, "modified": "2023-11-14T22:13:20Z"}
    ]


async def test_storage_missing_path_is_named_as_written(stub: StubServer) -> None:
    stub.add(
        "DELETE",
        "/api/v1/storage/nope",
        json={"error": "no such file or directory: /nope"},
        status=404,
    )
    with pytest.raises(CLIError, match="^no such file or directory: storage:nope$") as e:
        await storage.run_rm(storage.RmOptions(("storage:nope",)), stub_deps(stub))
    assert e.value.code == ExitCode.NOT_FOUND


async def test_storage_mkdir_and_rm(stub: StubServer) -> None:
    stub.add("PUT", "/api/v1/storage/a/b", status=200)
    stub.add("DELETE", "/api/v1/storage/a", status=204)
    deps = stub_deps(stub)
    assert await storage.run_mkdir(storage.MkdirOptions(("storage:a/b",)), deps) == 0
    assert await storage.run_rm(storage.RmOptions(("storage:a",), recursive=True), deps) == 0
    assert stub.only("PUT", "/api/v1/storage/a/b").query["op"] == "MKDIRS"
    assert dict(stub.only("DELETE", "/api/v1/storage/a").query) == {
        "op": "DELETE",
        "recursive": "true",
    }
    assert deps.out == ""


async def test_storage_cp_upload_a_tree(stub: StubServer, tmp_path: Path) -> None:
    src = tmp_path / "data"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(b"\x00" * 10)
    for path in ("ds/data", "ds/data/sub"):
        stub.add("PUT", f"/api/v1/storage/{path}", status=200)
    for path in ("ds/data/a.txt", "ds/data/sub/b.bin"):
        stub.add("PUT", f"/api/v1/storage/{path}", status=201)
    deps = stub_deps(stub)
    assert await storage.run_cp(storage.CpOptions(str(src), "storage:ds/", True), deps) == 0
    assert deps.err == "Copied 2 files\n"
    assert stub.only("PUT", "/api/v1/storage/ds/data/a.txt").body == b"alpha\n"
    assert [(r.path, r.query["op"]) for r in stub.requests] == [
        ("/api/v1/storage/ds/data", "MKDIRS"),
        ("/api/v1/storage/ds/data/a.txt", "CREATE"),
        ("/api/v1/storage/ds/data/sub", "MKDIRS"),
        ("/api/v1/storage/ds/data/sub/b.bin", "CREATE"),
    ]


async def test_storage_cp_a_directory_needs_r(stub: StubServer, tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="is a directory: use -r") as e:
        await storage.run_cp(storage.CpOptions(str(tmp_path), "storage:d/"), stub_deps(stub))
    assert e.value.code == ExitCode.BAD_INPUT
    with pytest.raises(CLIError, match="no such file or directory") as e:
        await storage.run_cp(
            storage.CpOptions(str(tmp_path / "nope"), "storage:d/"), stub_deps(stub)
        )
    assert e.value.code == ExitCode.USAGE


async def test_storage_cp_download_and_to_stdout(stub: StubServer, tmp_path: Path) -> None:
    async def file_status(request: web.Request) -> web.StreamResponse:
        if request.query["op"] == "GET_FILE_STATUS":
            return web.json_response({"FileStatus": entry("/r/m.json", length=8)})
        return web.Response(body=b'{"a": 1}')

    stub.add("GET", "/api/v1/storage/r/m.json", file_status)
    deps = stub_deps(stub)
    assert await storage.run_cp(storage.CpOptions("storage:r/m.json", str(tmp_path)), deps) == 0
    assert (tmp_path / "m.json").read_bytes() == b'{"a": 1}'
    assert deps.err == "Copied 1 file\n"
    deps = stub_deps(stub)
    assert await storage.run_cp(storage.CpOptions("storage:r/m.json", "-"), deps) == 0
    assert (deps.out, deps.err) == ('{"a": 1}', "")
