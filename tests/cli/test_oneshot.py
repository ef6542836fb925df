"""The one-shot commands (ps, status, kill, job tags, config show) run without an event loop:
their plain requests go through the SDK's light transport, so neither asyncio nor aiohttp nor
ssl is imported (issue 14).  A loopback HTTP server in a thread stands in for the platform."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from neuro_sdk._wire import SERVER_DIR, SERVER_INFO_FILE, ServerInfo, server_info_json
from tests.sdk.helpers import TOKEN, job_json, server_config

JOB = "job-11111111-2222-3333-4444-555555555555"
NOT_LOADED = ("asyncio", "aiohttp", "ssl", "rich")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str]
    stall = False  # GET /api/v1/tags waits for `release` (and sets `stalled`)
    stalled: threading.Event
    release: threading.Event

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path.split('?')[0]}")
        assert self.headers["Authorization"] == f"Bearer {TOKEN}"
        path = self.path.split("?")[0]
        job = json.dumps(job_json(JOB, status="running", name="train")).encode()
        if path == "/api/v1/jobs":
            self.answer(200, job + b"\n", "application/x-ndjson")
        elif path == f"/api/v1/jobs/{JOB}":
            self.answer(200, job)
        elif path == "/api/v1/tags" and self.stall:
            self.stalled.set()
            self.release.wait(30)
        elif path == "/api/v1/tags":
            self.answer(200, b'{"tags": ["nightly", "gpu"]}')
        elif path == "/api/v1/jobs/capacity":
            self.answer(200, b'{"cpu-small": 7}')
        else:
            self.answer(404, b'{"error": "nope"}')

    def do_DELETE(self) -> None:
        self.seen.append(f"DELETE {self.path}")
        self.answer(204)


PROBE = """
import json, sys
from neuro_cli.main import main
try:
    main(sys.argv[1:], fast_exit=False)
except SystemExit as e:
    code = e.code
sys.stdout.flush()
sys.stderr.write("MODULES " + json.dumps([code, sorted(sys.modules)]) + "\\n")
"""


def probe(args: list[str], home: Path) -> tuple[int, str, str, set[str]]:
    """Exit code, stdout, stderr and the modules imported by `neuro ARGS`."""
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HOME": str(home), "NEURO_CONFIG": str(home / ".neuro"), "PATH": "/usr/bin:/bin"},
    )
    lines = r.stderr.splitlines()
    assert lines and lines[-1].startswith("MODULES "), r.stderr
    code, modules = json.loads(lines[-1][len("MODULES ") :])
    return code, r.stdout, "\n".join(lines[:-1]), set(modules)


@dataclass
class Platform:
    home: Path  # with a config dir whose local server info points at the platform
    seen: list[str]  # the requests, "METHOD PATH"
    handler: type[Handler]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A platform on loopback, in a thread of the test."""
    seen: list[str] = []
    release = threading.Event()
    handler = type(
        "H", (Handler,), {"seen": seen, "stalled": threading.Event(), "release": release}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    d = tmp_path / ".neuro" / SERVER_DIR
    d.mkdir(parents=True)
    (d / "token").write_text(TOKEN)
    os.chmod(d / "token", 0o600)
    config = server_config(f"{url}/api/v1/jobs")
    (d / SERVER_INFO_FILE).write_text(
        server_info_json(
            ServerInfo(
                url=f"{url}/api/v1",
                pid=os.getpid(),
                token_file=str(d / "token"),
                server_config=config,
            )
        )
    )
    try:
        yield Platform(tmp_path, seen, handler)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize(
    ("args", "expected", "requests"),
    [
        (["ps"], f"{JOB}\ttrain\trunning", ["GET /api/v1/jobs"]),
        (["ps", "-a", "-q"], JOB, ["GET /api/v1/jobs"]),
        (["status", JOB], f"Job: {JOB}", [f"GET /api/v1/jobs/{JOB}"]),
        (["kill", JOB], JOB, [f"GET /api/v1/jobs/{JOB}", f"DELETE /api/v1/jobs/{JOB}"]),
        (["job", "tags"], "nightly\ngpu", ["GET /api/v1/tags"]),
        (["config", "show"], "cpu-small", ["GET /api/v1/jobs/capacity"]),
    ],
    ids=["ps", "ps-all-quiet", "status", "kill", "tags", "config-show"],
)
def test_oneshot_commands_import_no_event_loop(
    platform: Platform, args: list[str], expected: str, requests: list[str]
) -> None:
    code, out, err, modules = probe(args, platform.home)
    assert (code, err) == (0, "")
    assert expected in out
    assert platform.seen == requests
    loaded = sorted(m for m in modules if m.split(".")[0] in NOT_LOADED)
    assert loaded == []


def test_oneshot_error_exit_code_without_a_loop(platform: Platform) -> None:
    code, out, err, modules = probe(
        ["status", "job-00000000-0000-0000-0000-000000000000"], platform.home
    )
    assert platform.seen == ["GET /api/v1/jobs/job-00000000-0000-0000-0000-000000000000"]
    assert (code, out) == (72, "") and err.startswith("ERROR: nope")
    assert "aiohttp" not in modules


def test_oneshot_ctrl_c_while_waiting_for_the_server(platform: Platform) -> None:
    """A blocking request (no event loop) still ends at Ctrl-C, as an interruption."""
    handler, home = platform.handler, platform.home
    handler.stall = True
    env = {"HOME": str(home), "NEURO_CONFIG": str(home / ".neuro"), "PATH": "/usr/bin:/bin"}
    p = subprocess.Popen(
        [sys.executable, "-m", "neuro_cli", "job", "tags"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert handler.stalled.wait(30), "the request never came"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode in (130, -signal.SIGINT)
    assert "Interrupted" in err and "Traceback" not in err
