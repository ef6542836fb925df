"""A fuzz test of every route of the API: no answer >= 500, no traceback in the server's log.

The routes come from the router of ``make_app`` itself, so a route added later is fuzzed
without editing this file (a new path parameter needs values in ``PATH_VALUES``: the test
says so).  Three parts, each against its own in-process server with the process runtime and
two users (bob's requests name alice's jobs, and alice's bob's):

- every HTTP method on every path, with each kind of caller (owner, other user, no token);
- hypothesis-generated requests: malformed and mutated JSON bodies, wrong types, huge and deep
  values, unicode (lone surrogates, NUL, RTL, long strings), wrong query parameters, clients
  that leave before the answer;
- garbage on the websocket routes after a real handshake: random frames, reserved opcodes,
  unmasked or oversized frames, raw bytes, early closes.

Deterministic (derandomized) in the suite; ``NEURO_FUZZ_EXAMPLES=N`` runs N random examples
per part instead, to look further.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import os
import re
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from neuro_server.app import make_app
from neuro_server.config import Preset, load_config
from neuro_server.handlers.common import MAX_HEADER_ERROR, STATE
from neuro_server.portfence import remove_chain
from neuro_server.runtime.process import ProcessRuntime
from neuro_server.runtime.registry import capacity_from_config
from neuro_server.store import Store
from tests.conftest import kill_tree_of
from tests.server.conftest import job_uid_range

_EXAMPLES = int(os.environ.get("NEURO_FUZZ_EXAMPLES", "0"))
# (hypothesis touches mypy_extensions when it reports a failing example)
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)


def _settings(examples: int) -> Any:
    return settings(
        max_examples=_EXAMPLES or examples,
        derandomize=not _EXAMPLES,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# -- the server under test ---------------------------------------------------------------------


class _Errors(logging.Handler):
    """Keeps every record that is an error or carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@dataclass
class Fuzz:
    app: web.Application
    host: str
    port: int
    session: aiohttp.ClientSession
    tokens: dict[str, str]
    ids: dict[str, str]  # "<alice_run>" -> the job id
    errors: _Errors
    echo_port: int

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def headers(self, user: str | None) -> dict[str, str]:
        if user is None:
            return {}
        if user == "forged":
            return {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJpZGVudGl0eSI6ImFsaWNlIn0.x"}
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def check_log(self, what: str) -> None:
        assert not self.errors.records, (
            f"the server logged an error after {what}:\n{self.errors.text()}"
        )


async def _until(pred: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def _start_job(fuzz_app: web.Application, owner: str, command: str, want: set[str]) -> str:
    from neuro_server.validation import parse_start

    state = fuzz_app[STATE]
    new = parse_start(
        {
            "image": "ubuntu",
            "command": command,
            "preset_name": "cpu-small",
            "max_run_time_minutes": 60,
        },
        state.config,
        capacity=state.runtime.capacity(),
    )
    job = state.scheduler.create(owner, new)
    await _until(
        lambda: (j := state.store.get_job(job.id)) and j.status in want,
        f"job {job.id} to be {want}",
    )
    return str(job.id)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    writer.close()


def _handler_tasks() -> set[asyncio.Task[Any]]:
    """The server's tasks that serve a connection (aiohttp's RequestHandler.start)."""
    return {
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "RequestHandler.start"
    }


@pytest.fixture
async def fuzz(tmp_path: Path, homes: Path) -> AsyncIterator[Fuzz]:
    data = tmp_path / "server"
    config = load_config(
        data,
        cpu=8.0,
        memory=16 << 30,
        nvidia_gpu=0,
        kill_grace_seconds=1.0,
        job_uids=job_uid_range(),
        homes_dir=homes,  # (alice's and bob's jobs apart)
        presets=(
            Preset("cpu-small", 0.5, 256 << 20),
            Preset("cpu-large", 4.0, 8 << 30),
            Preset("gpu-small", 1.0, 1 << 30, nvidia_gpu=1, nvidia_gpu_model="nvidia-gpu"),
        ),
        # one running job each: the fuzzed creations are validated in full and then refused
        # (or queued), so no command of theirs ever runs
        max_body_bytes=64 * 1024,
        max_running_jobs=1,
    )
    store = Store(config.db_path)
    runtime = ProcessRuntime(
        config.jobs_dir,
        cgroup_parent=f"neuro-test-{uuid.uuid4().hex[:8]}",
        capacity=capacity_from_config(config),
    )
    app = make_app(config, store, runtime)
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    # served as `neuro-server serve` does (aiohttp's TestServer cancels a handler whose client
    # left, which the real server does not: a handler that lingers would go unseen)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        state = app[STATE]
        tokens = {}
        for user in ("alice", "bob"):
            store.add_user(user)
            tokens[user] = state.auth.issue(user)
        store.put_secret("alice", "K", b"v")
        ids = {"<alice_done>": await _start_job(app, "alice", "echo done", {"succeeded"})}
        ids["<alice_run>"] = await _start_job(app, "alice", "sleep 600", {"running"})
        ids["<bob_run>"] = await _start_job(app, "bob", "sleep 600", {"running"})
        store.share(ids["<alice_done>"], "bob", "read")
        async with aiohttp.ClientSession() as session:
            yield Fuzz(
                app,
                "127.0.0.1",
                port,
                session,
                tokens,
                ids,
                errors,
                echo.sockets[0].getsockname()[1],
            )
            # every handler ends once its client has left
            await session.close()
        await _until(
            lambda: not (_handler_tasks() - {asyncio.current_task()}),
            "the server's request handlers to end after their clients left",
            10.0,
        )
        assert not errors.records, f"the server logged errors:\n{errors.text()}"
    finally:
        logging.getLogger().removeHandler(errors)
        echo.close()
        await runner.cleanup()
        kill_tree_of(data)
        remove_chain(data)


# -- the routes --------------------------------------------------------------------------------


def routes(app: web.Application) -> list[tuple[str, frozenset[str]]]:
    """Every path of the router with the methods registered on it ("*": any)."""
    found: dict[str, set[str]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert path, f"a route of an unexpected kind: {route!r}"
        found.setdefault(path, set()).add(route.method)
    return sorted((p, frozenset(m)) for p, m in found.items())


PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::[^}]*)?\}")
# values of each path parameter, the first a good one (drawn most often): "<alice_run>" and
# friends are the fixture's jobs, "<own_run>" the caller's running one, "<other>" the other user
PATH_VALUES: dict[str, list[str]] = {
    "job_id": [
        "<own_run>",
        "<alice_run>",
        "<alice_done>",
        "<bob_run>",
        "job-nope",
        "job-" + "x" * 300,
        "job-\u202eevil",
        "..",
        "job%00",
        "job-\ud800",
    ],
    "user": ["<other>", "alice", "bob", "nobody", "Alice", "a" * 300, "bob\n", "\ud800"],
    "path": ["", "dir", "dir/file", "a/../b", "../x", "%2e%2e/x", "x" * 300, "f\x00", "\ud800"],
    "disk": ["disk-nope", "d1", "x" * 300, "\ud800"],
    "key": ["K", "NOPE", "bad key", "x" * 300, "K\n", "\ud800"],
    "exec_id": ["e" * 32, "nope", "\ud800"],
    "port": ["<echo>", "1", "0", "65536", "-1", "http", "1" * 30],
}
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO")
QUERY_KEYS = (
    "from_preset",
    "status",
    "owner",
    "limit",
    "name",
    "tag",
    "since",
    "until",
    "reverse",
    "cluster_name",
    "org_name",
    "project_name",
    "timestamps",
    "debug",
    "tty",
    "stdin",
    "stdout",
    "stderr",
    "logs",
    "offset",
    "cmd",
    "resume",
    "resumable",
    "h",
    "w",
    "signal",
    "uri",
    "op",
    "recursive",
)
WEIRD = [
    "",
    " ",
    "\n",
    "\x00",
    "\ud800",
    "\udfff\ud800",
    "\u202e",
    "\ufeff",
    "😀",
    "x" * 70_000,
    "a" * 300,
    "..",
    "../../etc/passwd",
    "%",
    "%00",
    "true",
    "false",
    "-1",
    "0",
    "1e400",
    "nan",
    "inf",
    "9" * 30,
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "2024-01-01T00:00:00Z",
    "end",
    "USR1",
    "KILL",
    "running",
    "storage:x",
    "job:x",
    "secret:K",
    "disk:d",
    "LIST_STATUS",
    "MKDIRS",
    "CREATE",
    "DELETE",
    "OPEN",
    "GET_FILE_STATUS",
]
GOOD_QUERY = {
    "status": "running",
    "owner": "alice",
    "limit": "3",
    "name": "fz-1",
    "tag": "a",
    "since": "2024-01-01T00:00:00Z",
    "until": "2999-01-01T00:00:00+01:00",
    "reverse": "1",
    "cluster_name": "local",
    "org_name": "local",
    "project_name": "default",
    "timestamps": "true",
    "debug": "0",
    "tty": "1",
    "stdin": "1",
    "stdout": "1",
    "stderr": "1",
    "logs": "1",
    "offset": "0",
    "cmd": "true",
    "resume": "e" * 32,
    "resumable": "1",
    "h": "24",
    "w": "80",
    "signal": "USR1",
    "uri": "job:<alice_done>",
    "op": "LIST_STATUS",
    "recursive": "true",
}
# commands a fuzzed request may run in a job: harmless ones, and ones that cannot run
SAFE_COMMANDS = ("true", "cat", "'unclosed", "", "/nonexistent/x", "a\x00b", "a\ud800b")


def tokens(fuzz: Fuzz, user: str | None) -> dict[str, str]:
    """What the placeholders of PATH_VALUES, GOOD_QUERY and TEMPLATES stand for."""
    own = "<bob_run>" if user == "bob" else "<alice_run>"
    return {
        **fuzz.ids,
        "<own_run>": fuzz.ids[own],
        "<echo>": str(fuzz.echo_port),
        "<other>": "alice" if user == "bob" else "bob",
    }


def substitute(fuzz: Fuzz, user: str | None, text: str) -> str:
    for token, value in tokens(fuzz, user).items():
        text = text.replace(token, value)
    return text


def resolve_path(
    fuzz: Fuzz, template: str, values: dict[str, str], user: str | None = "alice"
) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        value = substitute(fuzz, user, values.get(name, PATH_VALUES[name][0]))
        return quote(value, safe="/" if name == "path" else "", errors="surrogatepass")

    return PLACEHOLDER.sub(sub, template)


def _query_string(query: list[tuple[str, str]]) -> str:
    return "&".join(
        quote(k, safe="", errors="surrogatepass") + "=" + quote(v, safe="", errors="surrogatepass")
        for k, v in query
    )


def _guard(
    fuzz: Fuzz,
    template: str,
    method: str,
    user: str | None,
    values: dict[str, str],
    query: list[tuple[str, str]],
) -> None:
    """Keep the fixture's running jobs running and their commands harmless: a request that
    would kill or signal a job of its caller names a finished one instead; a command to run
    is one of SAFE_COMMANDS."""
    destructive = (method == "DELETE" and template.endswith("{job_id}")) or template.endswith(
        "/kill"
    )
    own_running = {"alice": "<alice_run>", "bob": "<bob_run>"}.get(user or "")
    if destructive and values.get("job_id") in (own_running, "<own_run>"):
        values["job_id"] = "<alice_done>"
    for i, (k, v) in enumerate(query):
        if k == "cmd" and v not in SAFE_COMMANDS:
            query[i] = (k, SAFE_COMMANDS[len(v) % len(SAFE_COMMANDS)])


def _safe_body(body: Any) -> Any:
    """No command of a fuzzed job or exec is anything but SAFE_COMMANDS."""
    if isinstance(body, dict):
        for key in ("command", "entrypoint"):
            if isinstance(body.get(key), str) and body[key] not in SAFE_COMMANDS:
                body[key] = "true"
        for v in body.values():
            _safe_body(v)
    elif isinstance(body, list):
        for v in body:
            _safe_body(v)
    return body


def describe(method: str, url: str, user: str | None, body: bytes | None) -> str:
    shown = body if body is None or len(body) < 300 else body[:300] + b"..."
    return f"{method} {url[:500]} as {user} with body {shown!r}"


ANSWER_WITHIN = 20.0  # seconds (a long poll waits 30 s at most, but only when asked to)


async def send(
    fuzz: Fuzz,
    method: str,
    template: str,
    *,
    user: str | None,
    values: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    leave_after: float = 2.0,
) -> int:
    """One request; its answer's status.  A streaming answer is read for ``leave_after``
    seconds at most, then the client leaves (as a client that gives up does)."""
    values = dict(values or {})
    query = list(query or [])
    _guard(fuzz, template, method, user, values, query)
    # (aiohttp refuses a request line over 8 KiB before routing, and its client cannot
    # read that answer: the URL's values stay shorter, the body's need not)
    values = {k: v[:2000] for k, v in values.items()}
    query = [(k[:2000], v[:2000]) for k, v in query]
    path = resolve_path(fuzz, template, values, user)
    qs = _query_string([(k, substitute(fuzz, user, v)) for k, v in query])
    if body is not None:
        body = substitute(fuzz, user, body.decode("utf-8", "surrogateescape")).encode(
            "utf-8", "surrogateescape"
        )
    url = fuzz.base.rstrip("/") + path + (f"?{qs}" if qs else "")
    what = describe(method, url, user, body)
    hdrs = {**fuzz.headers(user), **(headers or {})}
    try:
        r = await asyncio.wait_for(
            fuzz.session.request(method, URL(url, encoded=True), data=body, headers=hdrs),
            ANSWER_WITHIN,
        )
    except TimeoutError:
        pytest.fail(f"no answer within {ANSWER_WITHIN} s to {what}")
    async with r:
        status = r.status
        x_error = r.headers.get("X-Error", "")
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            await asyncio.wait_for(r.read(), leave_after)
        r.close()
    assert status < 500, f"{status} for {what}"
    assert len(x_error) <= MAX_HEADER_ERROR, f"an X-Error of {len(x_error)} bytes for {what}"
    fuzz.check_log(what)
    return status


# -- part 1: every method on every path --------------------------------------------------------


async def test_fuzz_every_method_on_every_route(fuzz: Fuzz) -> None:
    table = routes(fuzz.app)
    paths = {p for p, _ in table}  # the router's own, with what was added since
    assert {"/ping", "/api/v1/jobs/{job_id}/attach", "/api/v1/storage/{path}"} <= paths, paths
    for template, _ in table:
        for name in PLACEHOLDER.findall(template):
            assert name in PATH_VALUES, (
                f"a new path parameter {{{name}}} in {template}: give it values in PATH_VALUES"
            )
    job_values = ["<alice_run>", "<bob_run>", "job-nope"]
    for template, _ in table:
        for method in METHODS:
            for user in ("alice", "bob", None):
                for job in job_values if "{job_id}" in template else job_values[:1]:
                    await send(
                        fuzz,
                        method,
                        template,
                        user=user,
                        values={"job_id": job},
                        body=b"{}",
                        leave_after=0.3,
                    )


# -- part 2: hypothesis-generated requests -----------------------------------------------------


texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(WEIRD),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.text(st.sampled_from("\x00\n\r\t\u202e\u200b\ufeff/.%'\"\\ "), max_size=6),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -1, 1, 2**63, -(2**63) - 1, 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(texts, c, max_size=4),
    max_leaves=10,
)

# a good body of each POST/PUT route with one: fuzzing one field of it reaches deep checks
JOB = {
    "image": "ubuntu",
    "command": "true",
    "preset_name": "cpu-small",
    "name": "fz-1",
    "tags": ["a"],
    "env": {"A": "1"},
    "description": "d",
    "working_dir": "/tmp",
    "volumes": [{"src_storage_uri": "storage:v", "dst_path": "/v", "read_only": False}],
    "secret_env": {"S": "secret:K"},
    "secret_volumes": [{"src_secret_uri": "secret:K", "dst_path": "/s"}],
    "disk_volumes": [{"src_disk_uri": "disk:d1", "dst_path": "/d", "read_only": True}],
    "http": {"port": 80, "requires_auth": True, "health_check_path": "/"},
    "max_run_time_minutes": 5,
    "schedule_timeout": 60,
    "restart_policy": "never",
    "priority": "normal",
    "tty": False,
    "pass_config": False,
    "wait_for_jobs_quota": False,
    "life_span_signal": {"signal": "USR1", "seconds_before": 60},
    "cluster_name": "local",
    "org_name": "local",
    "project_name": "default",
    "entrypoint": "true",
}
RUN = {
    "container": {
        "image": "ubuntu",
        "command": "true",
        "resources": {
            "cpu": 0.5,
            "memory": 64 << 20,
            "nvidia_gpu": 0,
            "shm": False,
            "memory_mb": 64,
        },
        "env": {},
        "volumes": [],
    },
    "name": "fz-2",
    "tags": ["b"],
    "max_run_time_minutes": 5,
}
TEMPLATES: dict[tuple[str, str], list[Any]] = {
    ("POST", "/api/v1/jobs"): [JOB, RUN],
    ("POST", "/api/v1/users/{user}/permissions"): [[{"uri": "job:<alice_done>", "action": "read"}]],
    ("POST", "/api/v1/disk"): [{"storage": 16 << 20, "name": "d2"}],
    ("POST", "/api/v1/secrets"): [{"key": "K2", "value": base64.b64encode(b"x").decode()}],
    ("PUT", "/api/v1/jobs/{job_id}/max_run_time_minutes"): [
        {"additional_max_run_time_minutes": 1},
        {"additional_max_run_time_seconds": 1.5},
    ],
    ("POST", "/api/v1/jobs/{job_id}/exec_create"): [
        {"command": "true", "tty": False, "stdin": False}
    ],
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


# a value of the wrong type, size or text, in place of a good one
wrong = st.one_of(
    st.sampled_from(
        [
            [],
            {},
            None,
            True,
            False,
            0,
            -1,
            0.5,
            1e308,
            -1e308,
            float("nan"),
            "",
            "x",
            [1],
            ["a", "b"],
            {"a": 1},
            [[]],
            [{}],
            10**30,
            2**63,
            "\x00",
            "\ud800",
            "a\n",
            "a" * 70_000,
        ]
    ),
    json_values,
).map(copy.deepcopy)  # (a body may be changed further: never a shared one)


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> Any:
    """The template with one to three values somewhere in it replaced (or removed)."""
    body = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(body))))
        if not path:
            return draw(wrong)
        parent = body
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.integers(0, 9)) == 0:
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(wrong)
    return body


def _deep(n: int, kind: str) -> bytes:
    return {
        "list": b"[" * n + b"]" * n,
        "object": b'{"a":' * n + b"1" + b"}" * n,
        "open": b"[" * n,
    }[kind]


raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"{",
            b"nul",
            b"\xff\xfe",
            b"\xef\xbb\xbf{}",
            b'"\\ud800"',
            b'{"a": NaN}',
            b"[1e999]",
            b'{"a":1,"a":2}',
            b"9" * 5000,
            b"x" * (70 * 1024),
        ]
    ),
    st.builds(
        _deep, st.sampled_from([100, 1000, 20_000]), st.sampled_from(["list", "object", "open"])
    ),
)


@st.composite
def requests(draw: st.DrawFn, table: list[tuple[str, frozenset[str]]]) -> dict[str, Any]:
    with_bodies = [(t, m) for t, m in table if any((x, t) in TEMPLATES for x in m)]
    template, methods = draw(
        st.sampled_from(table) if draw(st.booleans()) else st.sampled_from(with_bodies)
    )
    method = draw(
        st.sampled_from(sorted(methods - {"*"}) or ["GET"])
        if draw(st.integers(0, 9))
        else st.sampled_from(METHODS)
    )
    values = {
        name: draw(
            st.just(PATH_VALUES[name][0])
            if draw(st.integers(0, 9)) < 6
            else st.sampled_from(PATH_VALUES[name]) | texts
        )
        for name in PLACEHOLDER.findall(template)
    }
    query = []
    for key in draw(st.lists(st.sampled_from(QUERY_KEYS) | texts, max_size=4)):
        good = GOOD_QUERY.get(key)
        query.append((key, good if good is not None and draw(st.booleans()) else draw(texts)))
    if template == "/api/v1/jobs" and draw(st.booleans()):
        query.append(("from_preset", ""))
    kind = draw(st.integers(0, 9))
    body: bytes | None
    if kind < 7 and (method, template) in TEMPLATES:
        value = draw(st.sampled_from(TEMPLATES[(method, template)]).flatmap(mutated))
        body = json.dumps(_safe_body(value)).encode()
    elif kind < 8:
        body = json.dumps(_safe_body(draw(json_values))).encode()
    elif kind < 9:
        body = draw(raw_bodies)
    else:
        body = None
    headers = draw(
        st.dictionaries(
            st.sampled_from(["Content-Type", "Accept", "Prefer", "If-None-Match"]),
            st.sampled_from(
                [
                    "application/json",
                    "application/x-ndjson",
                    "text/plain",
                    "wait=1",
                    '"x"',
                    "*",
                    "wait=nan",
                    "wait=-5",
                ]
            ),
            max_size=2,
        )
    )
    user = draw(st.sampled_from(["alice"] * 6 + ["bob"] * 3 + [None, "forged"]))
    return {
        "method": method,
        "template": template,
        "values": values,
        "query": query,
        "body": body,
        "headers": headers,
        "user": user,
    }


@given(data=st.data())
@_settings(1000)
async def test_fuzz_requests(fuzz: Fuzz, data: st.DataObject) -> None:
    req = data.draw(requests(routes(fuzz.app)), label="request")
    await send(
        fuzz,
        req["method"],
        req["template"],
        user=req["user"],
        values=req["values"],
        query=req["query"],
        body=req["body"],
        headers=req["headers"],
        leave_after=0.2,
    )


# -- part 3: websocket garbage -----------------------------------------------------------------

WS_ROUTES = {
    "attach": ("/api/v1/jobs/{job_id}/attach", "stdin=1&stdout=1&stderr=1&logs=1"),
    "exec": ("/api/v1/jobs/{job_id}/exec", "cmd=cat&stdin=1&stdout=1&stderr=1"),
    "exec_tty": ("/api/v1/jobs/{job_id}/exec", "cmd=cat&tty=1&stdin=1&stdout=1"),
    "exec_resumable": ("/api/v1/jobs/{job_id}/exec", "cmd=cat&stdin=1&stdout=1&resumable=1"),
    "log_ws": ("/api/v1/jobs/{job_id}/log_ws", ""),
    "top": ("/api/v1/jobs/{job_id}/top", ""),
    "port_forward": ("/api/v1/jobs/{job_id}/port_forward/{port}", ""),
}


def frame(fin: bool, rsv: int, opcode: int, payload: bytes, masked: bool, lie: int | None) -> bytes:
    """One websocket frame as a client would send it (or not: unmasked, reserved bits,
    reserved opcodes, a length that lies)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload) if lie is None else lie
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if masked:
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


frames = st.one_of(
    st.builds(
        frame,
        st.booleans(),
        st.sampled_from([0, 0, 0, 1, 4, 7]),
        st.sampled_from([0x0, 0x1, 0x2, 0x2, 0x2, 0x3, 0x7, 0x8, 0x9, 0xA, 0xB, 0xF]),
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [
                    b"\x00hi",
                    b"\x04{}",
                    b'\x04{"height": -1, "width": 1e9}',
                    b"\x04[1]",
                    b"\xff\x00",
                    b"\xff",
                    b"\x03",
                    b"\x05",
                    b"\x03\xe8",
                    b"\x00\x00",
                    b"\xff\xfe",
                ]
            ),
        ),
        st.booleans() | st.just(True),
        st.none() | st.sampled_from([0, 125, 1 << 20, 1 << 40]),
    ),
    st.binary(min_size=1, max_size=32),  # not a frame at all
)


@st.composite
def ws_sessions(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "route": draw(st.sampled_from(sorted(WS_ROUTES))),
        "job": draw(st.sampled_from(["<alice_run>", "<alice_run>", "<alice_done>", "<bob_run>"])),
        "frames": draw(st.lists(frames, max_size=5)),
        "protocol": draw(st.sampled_from(["", "v2.channels.neu.ro", "attach.apolo.us", "x"])),
        "linger": draw(st.sampled_from([0.0, 0.0, 0.1, 0.3])),
    }


async def ws_garbage(
    fuzz: Fuzz, route: str, job: str, raw_frames: list[bytes], protocol: str, linger: float
) -> int:
    """A websocket handshake as alice, then raw frames, then the client leaves (after a
    moment, or at once); the status of the handshake."""
    template, query = WS_ROUTES[route]
    path = resolve_path(fuzz, template, {"job_id": job, "port": "<echo>"})
    host, port = fuzz.host, fuzz.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path}?{query} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Authorization: Bearer {fuzz.tokens['alice']}",
        ]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split(b" ", 2)[1])
        if status == 101:
            for f in raw_frames:
                writer.write(f)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            if linger:
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(reader.read(1 << 16), linger)
        return status
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@given(s=ws_sessions())
@_settings(150)
async def test_fuzz_websockets(fuzz: Fuzz, s: dict[str, Any]) -> None:
    what = f"{s['route']} on {s['job']} with frames {s['frames']!r}"
    status = await ws_garbage(fuzz, s["route"], s["job"], s["frames"], s["protocol"], s["linger"])
    assert status < 500, f"{status} for {what}"
    fuzz.check_log(what)


# -- a client that leaves ----------------------------------------------------------------------


async def test_log_handler_ends_when_its_client_leaves(fuzz: Fuzz) -> None:
    """aiohttp does not cancel a handler whose client left, and the log of a job that says
    nothing has no write to fail: the handler (and its reader of the log) would linger."""
    before = _handler_tasks()
    url = f"{fuzz.base}/api/v1/jobs/{fuzz.ids['<alice_run>']}/log"
    async with fuzz.session.get(url, headers=fuzz.headers("alice")) as r:
        assert r.status == 200
        assert _handler_tasks() - before
    await fuzz.session.close()  # the client leaves
    await _until(
        lambda: not _handler_tasks(), "the /log handler to end after its client left", 10.0
    )
