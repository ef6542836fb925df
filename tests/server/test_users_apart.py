"""Users kept apart on the process runtime (neuro_server/jobusers.py): the cross-user matrix
seen from the jobs themselves.  On a root server, a job of bob's, while alice's job runs,
tries her files (the data dir, her job dir, her storage on the host), her process (/proc,
signals) and her port; every try fails.  Her own second job reaches her port and process.
Port-forwarding reaches only ports the job itself listens on.  Execs run as the job's uid
(also a user's the job is shared with); what the server makes for a user is theirs.  A
server that cannot keep users apart says so and refuses other users' jobs, unless told to."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from neuro_sdk import Client
from neuro_server import disks, jobusers
from neuro_server.app import make_app
from neuro_server.config import Preset, load_config
from neuro_server.datadir import UMASK, secure
from neuro_server.handlers.common import STATE
from neuro_server.jobusers import HomeError, JobUser, JobUsers, make_home
from neuro_server.portfence import PREFIX, FenceError, PortFence, chain_name, remove_chain
from neuro_server.runtime.process import ProcessRuntime
from neuro_server.runtime.registry import capacity_from_config
from neuro_server.store import Store
from tests.conftest import kill_tree_of
from tests.server.conftest import Api, job_uid_range
from tests.server.runtime.conftest import kill_jobs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs a root server")

TIMEOUT = 20.0

# alice's service: on 127.0.0.1 and ::1, it tells every connection her secret
SERVE = """
import socket, sys, threading
def serve(family, host, port):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        c.sendall(sys.argv[1].encode() + b"\\n")
        c.close()
port = int(sys.argv[2])
threading.Thread(target=serve, args=(socket.AF_INET6, "::1", port), daemon=True).start()
print("serving", flush=True)
serve(socket.AF_INET, "127.0.0.1", port)
"""

# a job's look at another job: what it can read, see, signal and connect to
PROBE = """
import json, os, socket, sys
a = json.loads(sys.argv[1])
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = "denied: " + (e.strerror or str(e))
def read(path):
    with open(path, "rb") as f:
        f.read(64)
def connect(host):
    with socket.create_connection((host, a["port"]), timeout=1.5) as s:
        s.settimeout(1.5)
        if not s.recv(100).startswith(b"alice-"):
            raise OSError(0, "not alice's service")
for name, path in a["read"].items():
    attempt(name, lambda path=path: read(path))
attempt("/proc/PID/environ", lambda: read("/proc/%d/environ" % a["pid"]))
attempt("/proc/PID/root", lambda: os.listdir("/proc/%d/root/" % a["pid"]))
attempt("port 127.0.0.1", lambda: connect("127.0.0.1"))
attempt("port ::1", lambda: connect("::1"))
attempt("kill -9" if a["kill"] else "kill -0", lambda: os.kill(a["pid"], 9 if a["kill"] else 0))
print("PROBE " + json.dumps(out), flush=True)
"""


@dataclass
class Shared:
    """A root server of alice's and bob's, its data dir in a directory open to everyone (so
    that only the data dir's own mode keeps their jobs out), as on a shared host."""

    api: Api
    base: Path
    app: Any
    homes: Path

    async def run(self, user: str, argv: list[str], **extra: Any) -> str:
        body = {"image": "ubuntu", "command": shlex.join(argv), "preset_name": "cpu-small", **extra}
        async with self.api.session.post(
            f"{self.api.url}/jobs?from_preset", json=body, headers=self.api.headers(user)
        ) as r:
            assert r.status == 202, await r.text()
            return str((await r.json())["id"])

    async def status(self, user: str, job: str) -> dict[str, Any]:
        async with self.api.session.get(
            f"{self.api.url}/jobs/{job}", headers=self.api.headers(user)
        ) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())

    def output(self, job: str) -> str:
        path = self.api.data_dir / "jobs" / job / "output.log"
        return path.read_text() if path.exists() else ""

    async def printed(self, user: str, job: str, text: str) -> str:
        """Wait until the job printed ``text`` (failing at once if it ended without)."""
        deadline = time.monotonic() + TIMEOUT
        while text not in (out := self.output(job)):
            if time.monotonic() > deadline:
                pytest.fail(f"job {job} did not print {text!r}: {out!r}")
            st = await self.status(user, job)
            if st["status"] in ("succeeded", "failed", "cancelled") and text not in (
                out := self.output(job)
            ):
                pytest.fail(f"job {job} ended ({st['history']}) without {text!r}: {out!r}")
            await asyncio.sleep(0.05)
        return out

    async def running(self, user: str, job: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while (st := await self.status(user, job))["status"] != "running":
            assert time.monotonic() < deadline and st["status"] == "pending", st["history"]
            await asyncio.sleep(0.05)

    async def ended(self, user: str, job: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while (st := await self.status(user, job))["status"] in ("pending", "running"):
            assert time.monotonic() < deadline, st["history"]
            await asyncio.sleep(0.05)
        return st

    def pid(self, job: str) -> int:
        started = self.api.data_dir / "jobs" / job / "started.json"
        return int(json.loads(started.read_text())["pid"])

    def uid(self, user: str) -> int:
        uid = self.app[STATE].store.job_uid(user)
        assert uid is not None
        return int(uid)


@contextlib.contextmanager
def server_umask() -> Iterator[None]:
    """The umask of `neuro-server` (077): what the server makes is its own unless it says
    otherwise, and jobs must not inherit it."""
    old = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
async def shared(server_options: dict[str, Any]) -> AsyncIterator[Shared]:
    base = Path(tempfile.mkdtemp(prefix="neuro-apart-"))
    base.chmod(0o711)
    data, homes = base / "server", base / "homes"
    cgroup_parent = f"neuro-test-{uuid.uuid4().hex[:8]}"
    with server_umask():
        secure(data)  # as every neuro-server command does
        config = load_config(
            data,
            cpu=8.0,
            memory=16 << 30,
            nvidia_gpu=0,
            kill_grace_seconds=1.0,
            presets=(Preset("cpu-small", 0.1, 128 << 20),),
            **{"job_uids": job_uid_range(), "homes_dir": homes, **server_options},
        )
        store = Store(config.db_path)
        runtime = ProcessRuntime(
            config.jobs_dir, cgroup_parent=cgroup_parent, capacity=capacity_from_config(config)
        )
        app = make_app(config, store, runtime)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            tokens = {}
            for user in ("alice", "bob"):
                store.add_user(user)
                tokens[user] = app[STATE].auth.issue(user)
            for name, text in (("serve.py", SERVE), ("probe.py", PROBE)):
                (base / name).write_text(text)
                (base / name).chmod(0o644)
            async with aiohttp.ClientSession() as session:
                api = Api(str(server.make_url("/api/v1")), session, tokens, data)
                yield Shared(api, base, app, homes)
        finally:
            await server.close()
            kill_tree_of(data)
            kill_jobs(data / "jobs", cgroup_parent)
            remove_chain(data)
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server_options() -> dict[str, Any]:
    return {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def probe(shared: Shared, user: str, target: str, port: int, *, kill: bool) -> dict[str, str]:
    """What a job of ``user`` can do to the job ``target`` (alice's) and her files."""
    data = shared.api.data_dir
    args = {
        "pid": shared.pid(target),
        "port": port,
        "kill": kill,
        "read": {
            "neuro.db": str(data / "neuro.db"),
            "the signing key": str(data / "secret"),
            "her spec.json": str(data / "jobs" / target / "spec.json"),
            "her output.log": str(data / "jobs" / target / "output.log"),
            "her storage": str(data / "storage" / "alice" / "private" / "notes.txt"),
            "her home": str(shared.homes / "alice" / "notes.txt"),
        },
    }
    job = await shared.run(user, ["python3", str(shared.base / "probe.py"), json.dumps(args)])
    out = await shared.printed(user, job, "PROBE ")
    return dict(json.loads(out.split("PROBE ", 1)[1].splitlines()[0]))


# -- the matrix ----------------------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("iptables") is None or shutil.which("ip6tables") is None,
    reason="iptables not installed (it keeps users' ports apart)",
)
async def test_a_job_of_bob_cannot_touch_alice_or_her_job(shared: Shared) -> None:
    api = shared.api
    async with api.session.put(
        f"{api.url}/storage/private", params={"op": "MKDIRS"}, headers=api.headers("alice")
    ) as r:
        assert r.status == 201
    async with api.session.put(
        f"{api.url}/storage/private/notes.txt",
        params={"op": "CREATE"},
        data=b"alice's notes",
        headers=api.headers("alice"),
    ) as r:
        assert r.status == 201, await r.text()
    port = free_port()
    alices = await shared.run(
        "alice",
        ["python3", str(shared.base / "serve.py"), "alice-says-hello", str(port)],
        env={"ALICE_SECRET": "s3cret"},
    )
    await shared.printed("alice", alices, "serving")
    home_file = await shared.run("alice", ["sh", "-c", "echo mine > $HOME/notes.txt"])
    assert (await shared.ended("alice", home_file))["status"] == "succeeded"

    bobs_view = await probe(shared, "bob", alices, port, kill=True)
    leaks = {k: v for k, v in bobs_view.items() if not v.startswith("denied")}
    assert leaks == {}, f"bob's job reached: {leaks} (all: {bobs_view})"
    assert len(bobs_view) == 11

    # her own second job reaches her port and her process; the server's files stay shut
    hers = await probe(shared, "alice", alices, port, kill=False)
    assert {k for k, v in hers.items() if v == "ok"} == {
        "port 127.0.0.1",
        "port ::1",
        "/proc/PID/environ",
        "/proc/PID/root",
        "kill -0",
        "her home",
    }, hers
    st = await shared.status("alice", alices)
    assert st["status"] == "running"  # bob's SIGKILL did not reach it
    # and the server (root) and the host reach her service as before
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert s.recv(100).startswith(b"alice-says-hello")


async def test_port_forward_reaches_only_the_jobs_own_ports(shared: Shared) -> None:
    api = shared.api
    alice_port, bob_port = free_port(), free_port()
    alices = await shared.run(
        "alice", ["python3", str(shared.base / "serve.py"), "alice-says-hi", str(alice_port)]
    )
    bobs = await shared.run(
        "bob", ["python3", str(shared.base / "serve.py"), "bob-says-hi", str(bob_port)]
    )
    await shared.printed("alice", alices, "serving")
    await shared.printed("bob", bobs, "serving")
    with socket.socket() as host:  # a port only the host listens on
        host.bind(("127.0.0.1", 0))
        host.listen()
        host_port = host.getsockname()[1]
        for port, ok in ((bob_port, True), (alice_port, False), (host_port, False)):
            url = f"{api.url}/jobs/{bobs}/port_forward/{port}"
            if ok:
                async with api.session.ws_connect(url, headers=api.headers("bob")) as ws:
                    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                    assert msg.type == aiohttp.WSMsgType.BINARY and msg.data.startswith(b"bob-")
                continue
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await api.session.ws_connect(url, headers=api.headers("bob"))
            assert e.value.status == 400 and f"Cannot connect to port {port}" in str(
                e.value.headers.get("X-Error")
            ), e.value.headers


async def test_execs_run_as_the_owner_of_the_job(shared: Shared) -> None:
    """Also those of a user the job is shared with: as docker exec into someone's
    container.  In the job's working dir (in the owner's home), on a terminal of theirs."""
    job = await shared.run("alice", ["sleep", "60"])
    await shared.running("alice", job)
    async with shared.api.session.post(
        f"{shared.api.url}/users/bob/permissions",
        json=[{"uri": f"job://local/alice/{job}", "action": "write"}],
        headers=shared.api.headers("alice"),
    ) as r:
        assert r.status in (200, 201), await r.text()
    alice_uid = shared.uid("alice")
    home = shared.homes / "alice"
    for user in ("alice", "bob"):
        async with Client(shared.api.url, shared.api.tokens[user]) as client:
            for tty in (False, True):
                got = b""
                script = "id -u; pwd; echo $HOME; [ -t 1 ] && stat -c %u $(tty) || true"
                async with client.jobs.exec(job, ["sh", "-c", script], tty=tty) as stream:
                    while msg := await asyncio.wait_for(stream.read_out(), TIMEOUT):
                        got += msg.data
                lines = got.decode().replace("\r", "").split()
                want = [str(alice_uid), f"{home}/jobs/{job}", str(home)]
                assert lines == want + ([str(alice_uid)] if tty else []), (user, tty, got)


async def test_what_the_server_makes_for_a_user_is_theirs(shared: Shared) -> None:
    """Their home (0700), their storage (API and volumes: writable by their jobs), their
    secret files (0400), with the jobs' own umask (022, not the server's 077)."""
    api = shared.api
    h = api.headers("alice")
    for path in ("made/deep", "up"):
        async with api.session.put(
            f"{api.url}/storage/{path}", params={"op": "MKDIRS"}, headers=h
        ) as r:
            assert r.status == 201
    async with api.session.put(
        f"{api.url}/storage/up/file.txt", params={"op": "CREATE"}, data=b"up", headers=h
    ) as r:
        assert r.status == 201
    async with api.session.post(
        f"{api.url}/secrets", json={"key": "K", "value": "c2VjcmV0"}, headers=h
    ) as r:
        assert r.status in (200, 201), await r.text()
    script = (
        "stat -c '%u %a' /run/k; cat /run/k; echo; id -u; echo hi > /vol/new/out; "
        "cat /vol/up/file.txt; echo; touch /vol/made/deep/x $HOME/y; "
        "stat -c %a $HOME/y; stat -c '%u %a' $HOME"
    )
    job = await shared.run(
        "alice",
        ["sh", "-c", script],
        volumes=[
            {"src_storage_uri": "storage:", "dst_path": "/vol", "read_only": False},
            {"src_storage_uri": "storage:new", "dst_path": "/vol2", "read_only": False},
        ],
        secret_volumes=[{"src_secret_uri": "secret:K", "dst_path": "/run/k"}],
    )
    st = await shared.ended("alice", job)
    uid = shared.uid("alice")
    assert st["status"] == "succeeded", (st["history"], shared.output(job))
    assert shared.output(job).split("\n") == [
        f"{uid} 400",
        "secret",
        str(uid),
        "up",
        "644",
        f"{uid} 700",
        "",
    ]
    tree = api.data_dir / "storage" / "alice"
    for path in (
        tree,
        tree / "up" / "file.txt",
        tree / "made" / "deep",
        tree / "new",
        tree / "new" / "out",
        tree / "made" / "deep" / "x",
    ):
        assert path.stat().st_uid == uid, path
    assert stat.S_IMODE((tree / "new" / "out").stat().st_mode) == 0o644


async def test_a_tree_of_before_is_made_its_users_once(shared: Shared) -> None:
    """A storage tree the server made as root (before users were kept apart) is given to
    its user when first used, but never what a link or a hard link in it leads to."""
    api = shared.api
    tree = api.data_dir / "storage" / "alice"
    (tree / "old" / "sub").mkdir(parents=True)
    (tree / "old" / "sub" / "f").write_text("old")
    outside = shared.base / "outside"
    outside.write_text("root's")
    os.link(outside, tree / "old" / "hard")
    (tree / "old" / "link").symlink_to(outside)
    job = await shared.run(
        "alice",
        ["sh", "-c", "echo more >> /vol/old/sub/f"],
        volumes=[{"src_storage_uri": "storage:", "dst_path": "/vol", "read_only": False}],
    )
    assert (await shared.ended("alice", job))["status"] == "succeeded", shared.output(job)
    uid = shared.uid("alice")
    assert [
        p.stat().st_uid
        for p in (tree, tree / "old", tree / "old" / "sub", tree / "old" / "sub" / "f")
    ] == [uid] * 4
    assert outside.stat().st_uid == 0 and (tree / "old" / "link").lstat().st_uid == 0
    assert (tree / "old" / "sub" / "f").read_text() == "oldmore\n"


@pytest.mark.skipif(bool(disks.why_unsupported()), reason=str(disks.why_unsupported()))
async def test_a_disk_is_writable_by_its_owners_jobs(shared: Shared) -> None:
    api = shared.api
    async with api.session.post(
        f"{api.url}/disk", json={"storage": 32 << 20, "name": "dsk"}, headers=api.headers("alice")
    ) as r:
        assert r.status == 201, await r.text()
    job = await shared.run(
        "alice",
        ["sh", "-c", "echo hi > /d/f && stat -c %u /d"],
        disk_volumes=[{"src_disk_uri": "disk:dsk", "dst_path": "/d", "read_only": False}],
    )
    st = await shared.ended("alice", job)
    assert st["status"] == "succeeded", (st["history"], shared.output(job))
    assert shared.output(job) == f"{shared.uid('alice')}\n"
    deadline = time.monotonic() + TIMEOUT  # (unmounted once the job has ended)
    while disks.is_mounted(
        disks.mountpoint(
            api.data_dir, st["container"]["disk_volumes"][0]["src_disk_uri"].rsplit("/", 1)[1]
        )
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


def test_a_homes_dir_others_cannot_reach_is_refused_in_words(homes: Path) -> None:
    closed = homes / "closed"  # (homes: a directory open to all, unlike pytest's tmp_path)
    closed.mkdir(mode=0o700)
    who = JobUser("alice", 123456789, 123456789, str(closed / "homes" / "alice"))
    with pytest.raises(
        HomeError,
        match=f"{closed} is not open to other users .mode 0700.: "
        "their jobs could not reach their homes",
    ):
        make_home(closed / "homes", who)
    closed.chmod(0o711)
    make_home(closed / "homes", who)
    home = closed / "homes" / "alice"
    assert (home.stat().st_uid, stat.S_IMODE(home.stat().st_mode)) == (123456789, 0o700)
    assert stat.S_IMODE((closed / "homes").stat().st_mode) == 0o711


# -- uids: allocated once, kept apart from the host's -----------------------------------------


def test_uids_are_stable_never_reused_and_skip_the_hosts(tmp_path: Path) -> None:
    store = Store(tmp_path / "neuro.db")
    taken = {100, 101, 103}
    for name in ("alice", "bob", "carol"):
        store.add_user(name)
    assert store.allocate_job_uid("alice", 100, 104, taken.__contains__) == 102
    assert store.allocate_job_uid("alice", 100, 104, taken.__contains__) == 102
    assert store.allocate_job_uid("bob", 100, 104, taken.__contains__) == 104
    assert store.allocate_job_uid("carol", 100, 104, taken.__contains__) is None  # used up
    store.remove_user("alice")
    store.add_user("alice")
    assert store.job_uid("alice") == 102  # a user given again gets theirs back
    store.close()
    store = Store(tmp_path / "neuro.db")  # and across restarts
    assert store.job_uids() == {"alice": 102, "bob": 104}
    store.close()


def test_the_hosts_accounts_groups_and_subordinate_ranges_are_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "subuid"
    sub.write_text("someone:200000:65536\nbroken line\n")
    monkeypatch.setattr(jobusers, "SUBORDINATE", (str(sub), str(tmp_path / "none")))
    taken = jobusers.host_ids()
    assert taken(0) and taken(65534)  # root, nobody
    assert taken(200000) and taken(265535) and not taken(265536) and not taken(199999)


def test_job_uids_and_homes_config(tmp_path: Path) -> None:
    from neuro_server.config import ConfigError, parse_uid_range

    assert parse_uid_range("1000000-1999999") == (1000000, 1999999)
    assert parse_uid_range("off") is None and parse_uid_range(False) is None
    for bad in ("0-10", "10-5", "x", "1-99999999999", 5):
        with pytest.raises(ConfigError, match="job_uids"):
            parse_uid_range(bad)
    default = load_config(tmp_path)
    assert (default.job_uids, default.homes_dir, default.allow_shared_uid) == (
        (1000000, 1999999),
        Path("/var/lib/neuro/homes"),
        False,
    )
    (tmp_path / "server.toml").write_text(
        '[server]\njob_uids = "off"\nhomes_dir = "/srv/h"\nallow_shared_uid = true\n'
    )
    config = load_config(tmp_path)
    assert (config.job_uids, config.homes_dir, config.allow_shared_uid) == (
        None,
        Path("/srv/h"),
        True,
    )
    (tmp_path / "server.toml").write_text('[server]\nhomes_dir = "homes"\n')
    with pytest.raises(ConfigError, match="homes_dir must be an absolute path"):
        load_config(tmp_path)


# -- where users cannot be kept apart ----------------------------------------------------------


@pytest.mark.parametrize(
    "server_options", [{}, {"allow_shared_uid": True}], ids=["refused", "allowed"]
)
async def test_a_server_that_is_not_root_says_so_and_runs_only_its_users_jobs(
    tmp_path: Path, server_options: dict[str, Any]
) -> None:
    data = tmp_path / "server"
    config = load_config(
        data,
        cpu=8.0,
        memory=16 << 30,
        nvidia_gpu=0,
        kill_grace_seconds=1.0,
        presets=(Preset("cpu-small", 0.1, 128 << 20),),
        **server_options,
    )
    store = Store(config.db_path)
    cgroup_parent = f"neuro-test-{uuid.uuid4().hex[:8]}"
    runtime = ProcessRuntime(
        config.jobs_dir, cgroup_parent=cgroup_parent, capacity=capacity_from_config(config)
    )
    # the server as alice would run it, not root (the check is the server's euid)
    users = JobUsers(config, store, host_users=True, euid=1000, server_user="alice")
    app = make_app(config, store, runtime, users=users)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        tokens = {}
        for user in ("alice", "bob"):
            store.add_user(user)
            tokens[user] = app[STATE].auth.issue(user)
        async with aiohttp.ClientSession() as session:
            url = str(server.make_url("/api/v1"))
            async with session.get(
                f"{url}/config", headers={"Authorization": f"Bearer {tokens['bob']}"}
            ) as r:
                runtime_info = (await r.json())["neuro_runtime"]
            assert runtime_info["users"] == (
                "not kept apart: every job runs as alice (the server is not root)"
            )
            assert runtime_info["ports"] == "not kept apart (the server is not root)"
            body = {"image": "ubuntu", "command": "true", "preset_name": "cpu-small"}
            for user in ("alice", "bob"):
                async with session.post(
                    f"{url}/jobs?from_preset",
                    json=body,
                    headers={"Authorization": f"Bearer {tokens[user]}"},
                ) as r:
                    if user == "bob" and not server_options:
                        assert r.status == 403
                        error = (await r.json())["error"]
                        assert error == (
                            "this server cannot keep users apart (the server is not root): it "
                            "runs only alice's jobs; its admin may run every user's jobs as "
                            "alice with allow_shared_uid = true in server.toml"
                        ), error
                    else:
                        assert r.status == 202, await r.text()
        assert store.job_uids() == {}  # nobody got a uid of their own
    finally:
        await server.close()
        kill_tree_of(data)
        kill_jobs(data / "jobs", cgroup_parent)


async def test_port_rules_stay_while_jobs_run_and_go_when_the_server_ends_idle(
    shared: Shared,
) -> None:
    chain = chain_name(shared.api.data_dir)
    assert chain.startswith(PREFIX)
    job = await shared.run("bob", ["sleep", "60"])
    await shared.running("bob", job)
    rules = _rules(chain)
    assert f"--uid-owner {shared.uid('bob')}" in rules and "DROP" in rules
    users: JobUsers = shared.app[STATE].users
    await users.close(idle=False)  # a server that ends while jobs run: they stay fenced
    assert _rules(chain)
    await users.close(idle=True)
    assert _rules(chain) == "" and chain not in _rules("OUTPUT")


def test_ports_not_kept_apart_where_iptables_cannot_and_said_so(tmp_path: Path) -> None:
    tool = tmp_path / "fake-iptables"
    tool.write_text(f"#!/bin/sh\nexit $(cat {tmp_path}/rc)\n")
    tool.chmod(0o755)
    (tmp_path / "rc").write_text("0")
    fence = PortFence("NEURO-USERS-test", tools=(str(tool),))
    fence.allow(1)
    assert fence.fenced(1) and fence.why_not is None
    (tmp_path / "rc").write_text("1")  # it worked before: it fails now, not for good
    with pytest.raises(FenceError):
        fence.allow(2)
    assert not fence.fenced(2) and fence.why_not is None
    assert fence.describe().startswith("each user's jobs reach only their own")
    (tmp_path / "rc").write_text("4")  # a busy lock: passing, also before it ever worked
    busy = PortFence("NEURO-USERS-test", tools=(str(tool),))
    with pytest.raises(FenceError) as e:
        busy.allow(1)
    assert e.value.passing and busy.why_not is None
    (tmp_path / "rc").write_text("1")  # refused from the first: for good
    refusing = PortFence("NEURO-USERS-test", tools=(str(tool),))
    with pytest.raises(FenceError):
        refusing.allow(1)
    assert refusing.describe() == f"not kept apart ({tool} refused: exit 1)"
    missing = PortFence("NEURO-USERS-test", tools=("iptables", str(tmp_path / "ip6tables")))
    assert missing.describe() == f"not kept apart (no {tmp_path / 'ip6tables'})"


async def test_a_job_whose_ports_cannot_be_fenced_runs_and_config_says_so(
    shared: Shared,
) -> None:
    users: JobUsers = shared.app[STATE].users
    users.fence = PortFence(users.fence.chain, tools=("no-such-iptables",))
    job = await shared.run("bob", ["true"])
    assert (await shared.ended("bob", job))["status"] == "succeeded"
    async with shared.api.session.get(
        f"{shared.api.url}/config", headers=shared.api.headers("bob")
    ) as r:
        info = (await r.json())["neuro_runtime"]
    assert info["ports"] == "not kept apart (no no-such-iptables)"
    assert info["users"] == "each user's jobs run as a uid of their own"


async def test_a_job_is_not_started_with_its_ports_open_where_fencing_worked_before(
    shared: Shared, tmp_path: Path
) -> None:
    tool = tmp_path / "fake-iptables"
    tool.write_text(f"#!/bin/sh\nexit $(cat {tmp_path}/rc)\n")
    tool.chmod(0o755)
    (tmp_path / "rc").write_text("0")
    users: JobUsers = shared.app[STATE].users
    users.fence = PortFence(users.fence.chain, tools=(str(tool),))
    job = await shared.run("bob", ["true"])
    assert (await shared.ended("bob", job))["status"] == "succeeded"
    (tmp_path / "rc").write_text("4")
    job = await shared.run("alice", ["true"])
    st = await shared.ended("alice", job)
    assert (st["status"], st["history"]["reason"]) == ("failed", "ContainerCannotRun")
    assert st["history"]["description"].startswith(
        f"cannot keep alice's ports apart now: {tool} refused: exit 4"
    ), st["history"]


def _rules(chain: str) -> str:
    out = []
    for tool in ("iptables", "ip6tables"):
        r = subprocess.run([tool, "-w", "-S", chain], capture_output=True, text=True, check=False)
        out.append(r.stdout if r.returncode == 0 else "")
    return "".join(out)
