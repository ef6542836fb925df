"""neuro secret without a subprocess: argv -> Options (parse: VALUE, @FILE and - are read),
Options + the stub server -> output and exit code (behaviour).  tests/e2e/test_secrets.py is
the end-to-end test."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import click
import pytest

from neuro_cli.commands import secret
from neuro_cli.errors import CLIError, ExitCode, JobExit
from tests.sdk.stub_server import StubServer

from .stub_deps import stub_deps


def parse(monkeypatch: pytest.MonkeyPatch, runner: str, argv: list[str], stdin: str = "") -> Any:
    """The Options that ``neuro secret ARGV`` hands its run function."""
    seen: list[Any] = []

    async def capture(opts: Any, deps: Any) -> int:
        seen.append(opts)
        return 0

    monkeypatch.setattr(secret, runner, capture)
    secret.group.main(argv, standalone_mode=False, obj=stub_deps(stdin=stdin))
    (opts,) = seen
    return opts


def test_secret_parse_value_file_and_stdin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse(monkeypatch, "run_add", ["add", "k", "v@1"]) == secret.AddOptions("k", b"v@1")
    (tmp_path / "key.pem").write_bytes(b"\x00binary\n")
    assert parse(
        monkeypatch, "run_add", ["add", "k", f"@{tmp_path / 'key.pem'}"]
    ) == secret.AddOptions("k", b"\x00binary\n")
    assert parse(
        monkeypatch, "run_add", ["add", "k", "-"], stdin="from stdin"
    ) == secret.AddOptions("k", b"from stdin")
    assert parse(monkeypatch, "run_ls", ["ls", "--json"]) == secret.LsOptions(as_json=True)
    assert parse(monkeypatch, "run_rm", ["rm", "a", "b"]) == secret.RmOptions(("a", "b"))


def test_secret_parse_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="cannot read .*nope") as e:
        secret.group.main(
            ["add", "k", f"@{tmp_path / 'nope'}"], standalone_mode=False, obj=stub_deps()
        )
    assert e.value.code == ExitCode.USAGE


def test_secret_parse_rm_needs_a_key() -> None:
    with pytest.raises(click.UsageError):
        secret.group.main(["rm"], standalone_mode=False, obj=stub_deps())


async def test_secret_add_sends_base64(stub: StubServer) -> None:
    stub.add("POST", "/api/v1/secrets", status=201)
    deps = stub_deps(stub)
    assert await secret.run_add(secret.AddOptions("tok", b"s3cr3t\xff"), deps) == 0
    assert stub.only("POST", "/api/v1/secrets").json() == {
        "key": "tok",
        "value": base64.b64encode(b"s3cr3t\xff").decode(),
    }
    assert (deps.out, deps.err) == ("", "Secret tok saved (7 bytes)\n")


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
async def test_secret_ls(stub: StubServer, as_json: bool) -> None:
    stub.add(
        "GET",
        "/api/v1/secrets",
        json=[
            {"key": "pem", "owner": "alice", "org_name": "acme", "project_name": "beta"},
            {"key": "tok", "owner": "alice"},
        ],
    )
    deps = stub_deps(stub)
    assert await secret.run_ls(secret.LsOptions(as_json), deps) == 0
    if as_json:
        assert json.loads(deps.out) == [
            {"key": "pem", "uri": "secret://default/acme/beta/pem"},
            {"key": "tok", "uri": "secret://default/tok"},
        ]
    else:
        assert deps.out.splitlines() == [
            "KEY\tURI",
            "pem\tsecret://default/acme/beta/pem",
            "tok\tsecret://default/tok",
        ]


async def test_secret_rm_goes_on_past_a_missing_key(stub: StubServer) -> None:
    stub.add("DELETE", "/api/v1/secrets/a", status=204)
    stub.add("DELETE", "/api/v1/secrets/nope", json={"error": "no secret 'nope'"}, status=404)
    stub.add("DELETE", "/api/v1/secrets/c", status=204)
    deps = stub_deps(stub)
    assert await secret.run_rm(secret.RmOptions(("a", "nope", "c")), deps) == 1
    assert deps.out == "a\nc\n"
    assert deps.err == "ERROR: no secret 'nope'\n"


async def test_secret_rm_exit_code_through_the_command(stub: StubServer) -> None:
    """The click callback runs run_rm on an event loop of its own (here in a thread, while the
    stub serves on this one); its 1 becomes the exit code."""
    stub.add("DELETE", "/api/v1/secrets/nope", json={"error": "no secret"}, status=404)
    deps = stub_deps(stub)
    with pytest.raises(JobExit) as e:
        await asyncio.to_thread(secret.group.main, ["rm", "nope"], standalone_mode=False, obj=deps)
    assert e.value.code == 1 and deps.err == "ERROR: no secret 'nope'\n"
