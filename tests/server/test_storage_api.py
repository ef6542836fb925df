"""The storage API at the HTTP edge: a user's tree cannot be left (.., encoded separators,
absolute paths, symlinks), another user's tree cannot be reached, bad ops are 4xx."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import Api


async def test_storage_ops_and_escapes(api: Api) -> None:
    s, h = api.session, api.headers()
    url = f"{api.url}/storage"
    async with s.put(f"{url}/a/b", params={"op": "MKDIRS"}, headers=h) as r:
        assert r.status == 201
    async with s.put(
        f"{url}/a/b/f.txt", params={"op": "CREATE"}, data=io.BytesIO(b"x" * 3_000_000), headers=h
    ) as r:
        assert r.status == 201
    async with s.get(f"{url}/a/b/f.txt", params={"op": "OPEN"}, headers=h) as r:
        assert r.status == 200 and await r.read() == b"x" * 3_000_000
    async with s.get(f"{url}/a", params={"op": "LIST_STATUS"}, headers=h) as r:
        items = (await r.json())["FileStatuses"]["FileStatus"]
        assert [(i["path"], i["type"]) for i in items] == [("b", "DIRECTORY")]
    async with s.get(f"{url}/a/b/f.txt", params={"op": "GET_FILE_STATUS"}, headers=h) as r:
        assert (await r.json())["FileStatus"]["length"] == 3_000_000
    # escapes
    root = api.data_dir / "storage" / "alice"
    outside = api.data_dir / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    os.symlink(outside, root / "link-out")
    os.symlink(outside / "secret.txt", root / "file-out")
    for path in (
        "../outside/secret.txt",
        "a/../../outside/secret.txt",
        "%2e%2e/outside/secret.txt",
        "a%2f..%2f..%2foutside%2fsecret.txt",
        "link-out/secret.txt",
        "file-out",
        "..%5coutside",
        "a/b/%00x",
    ):
        async with s.get(f"{url}/{path}", params={"op": "OPEN"}, headers=h) as r:
            assert r.status in (400, 403, 404), (path, r.status)
            assert b"not yours" not in await r.read()
    async with s.put(f"{url}/link-out/new.txt", params={"op": "CREATE"}, data=b"x", headers=h) as r:
        assert r.status == 403
    assert not (outside / "new.txt").exists()
    async with s.delete(f"{url}/link-out/secret.txt", params={"op": "DELETE"}, headers=h) as r:
        assert r.status == 403
    assert (outside / "secret.txt").exists()
    async with s.get(url, params={"op": "LIST_STATUS"}, headers=h) as r:  # links out are not listed
        assert [i["path"] for i in (await r.json())["FileStatuses"]["FileStatus"]] == ["a"]
    # bob's tree is his own
    async with s.get(f"{url}/a/b/f.txt", params={"op": "OPEN"}, headers=api.headers("bob")) as r:
        assert r.status == 404
    # semantics
    async with s.delete(f"{url}/a", params={"op": "DELETE"}, headers=h) as r:
        assert r.status == 409 and "not empty" in await r.text()
    async with s.put(f"{url}/a/b", params={"op": "CREATE"}, data=b"x", headers=h) as r:
        assert r.status == 409
    async with s.put(f"{url}/nodir/f", params={"op": "CREATE"}, data=b"x", headers=h) as r:
        assert r.status == 404
    async with s.get(f"{url}/a", params={"op": "BOGUS"}, headers=h) as r:
        assert r.status == 400
    async with s.delete(url, params={"op": "DELETE", "recursive": "true"}, headers=h) as r:
        assert r.status == 400
    async with s.delete(f"{url}/a", params={"op": "DELETE", "recursive": "true"}, headers=h) as r:
        assert r.status == 204
    async with s.get(f"{url}/a", params={"op": "LIST_STATUS"}, headers=h) as r:
        assert r.status == 404


# -- special files: refused, never blocking -------------------------------------------------------


def _tree(api: Api, user: str = "alice") -> Path:
    root = api.data_dir / "storage" / user
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _unblocking(fifo: Path, after: float) -> Iterator[None]:
    """Before the fix the server opened a FIFO on its event loop and waited there for a writer
    (in-process, the test's own client froze with it): after ``after`` seconds this thread
    plays the writer, so that a failing test fails instead of hanging."""
    stop = threading.Event()

    def writer() -> None:
        if stop.wait(after):
            return
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader waits
                stop.wait(0.05)
                continue
            os.close(fd)
            return

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _mknod(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        os.mknod(path, stat.S_IFSOCK | 0o600)
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's
        except PermissionError:
            pytest.skip("no CAP_MKNOD here")


@pytest.mark.parametrize(
    ("kind", "what"),
    [("fifo", "a FIFO"), ("socket", "a socket"), ("device", "a device")],
    ids=["fifo", "socket", "device"],
)
async def test_storage_special_files_are_refused_without_blocking(
    api: Api, kind: str, what: str
) -> None:
    s, h, url = api.session, api.headers(), f"{api.url}/storage"
    root = _tree(api)
    _mknod(root / "special", kind)
    (root / "plain.txt").write_text("plain")
    t0 = time.monotonic()
    with _unblocking(root / "special", after=3.0):

        async def read() -> tuple[int, str]:
            async with s.get(f"{url}/special", params={"op": "OPEN"}, headers=h) as r:
                return r.status, await r.text()

        async def ping() -> float:
            async with s.get(f"{api.url}/ping") as r:
                assert r.status == 200
            return time.monotonic() - t0

        (status, text), pinged = await asyncio.gather(read(), ping())
    took = time.monotonic() - t0
    assert (status, took < 2.0, pinged < 2.0) == (400, True, True), (status, text, took)
    assert f"/special is {what}, not a regular file" in json.loads(text)["error"]
    async with s.get(f"{url}/special", params={"op": "GET_FILE_STATUS"}, headers=h) as r:
        assert r.status == 400 and what in await r.text()
    async with s.get(url, params={"op": "LIST_STATUS"}, headers=h) as r:  # left out
        assert [i["path"] for i in (await r.json())["FileStatuses"]["FileStatus"]] == ["plain.txt"]
    async with s.delete(f"{url}/special", params={"op": "DELETE"}, headers=h) as r:
        assert r.status == 204
    assert not os.path.lexists(root / "special")


# -- client mistakes: each a clear 4xx, never a 500 ---------------------------------------------

LONG = "x" * 256
DEEP = "/".join(["abcdefgh"] * 500)  # 4,500 bytes
MISTAKES = [
    ("GET", LONG, "OPEN", 400, "at most 255 bytes a name"),
    ("GET", f"a/{LONG}", "LIST_STATUS", 400, "at most 255 bytes a name"),
    ("PUT", LONG, "CREATE", 400, "at most 255 bytes a name"),
    ("PUT", f"d/{LONG}/e", "MKDIRS", 400, "at most 255 bytes a name"),
    ("DELETE", LONG, "DELETE", 400, "at most 255 bytes a name"),
    ("GET", DEEP, "GET_FILE_STATUS", 400, "longer than 4096 bytes"),
    ("PUT", "f", "MKDIRS", 409, "'f' exists and is a file"),
    ("PUT", "f/sub/deeper", "MKDIRS", 409, "'f' exists and is a file"),
    ("PUT", "f/x", "CREATE", 409, "'f' exists and is a file"),
    ("GET", "f/x", "OPEN", 409, "'f' exists and is a file"),
    ("GET", "f/x", "GET_FILE_STATUS", 409, "'f' exists and is a file"),
    ("DELETE", "f/x", "DELETE", 409, "'f' exists and is a file"),
    ("GET", "dangling", "OPEN", 404, "no such file or directory: /dangling"),
    ("GET", "dangling", "GET_FILE_STATUS", 404, "no such file or directory"),
    ("GET", "dangling/x", "LIST_STATUS", 404, "no such file or directory"),
    ("PUT", "dangling/x", "CREATE", 404, "no such file or directory"),
    ("DELETE", "dangling/x", "DELETE", 404, "no such file or directory"),
    ("GET", "loop", "OPEN", 409, "more than 40 symbolic links"),
    ("PUT", "loop/x", "CREATE", 409, "more than 40 symbolic links"),
    ("GET", "climbs/etc/passwd", "OPEN", 403, "leads out of your storage"),
    ("GET", "absolute", "OPEN", 403, "leads out of your storage"),
    ("PUT", "absolute/x", "CREATE", 403, "leads out of your storage"),
    ("PUT", "absolute/x", "MKDIRS", 403, "leads out of your storage"),
    ("GET", "", "OPEN", 400, "/ is a directory"),
    ("GET", "real", "OPEN", 400, "/real is a directory"),
    ("PUT", "", "CREATE", 409, "/ is a directory"),
    ("PUT", "real", "CREATE", 409, "/real is a directory"),
    ("DELETE", "real", "DELETE", 409, "/real is a directory that is not empty"),
    ("DELETE", "", "DELETE", 400, "the root of your storage cannot be removed"),
]


def _links(root: Path) -> None:
    (root / "f").write_text("a file")
    (root / "real").mkdir()
    (root / "real" / "inner.txt").write_text("inner")
    os.symlink("real", root / "latest")  # in the tree: followed
    os.symlink("nowhere", root / "dangling")
    os.symlink("loop", root / "loop")
    os.symlink("../..", root / "climbs")  # relative, but out of the tree
    os.symlink("/", root / "absolute")


@pytest.mark.parametrize(
    ("method", "path", "op", "status", "message"),
    MISTAKES,
    ids=[f"{m} {p[:20]} {o}" for m, p, o, _, _ in MISTAKES],
)
async def test_storage_client_mistakes_are_4xx(
    api: Api, method: str, path: str, op: str, status: int, message: str
) -> None:
    root = _tree(api)
    _links(root)
    before = sorted(os.listdir(root))
    async with api.session.request(
        method,
        f"{api.url}/storage/{path}",
        params={"op": op},
        data=b"x" if op == "CREATE" else None,
        headers=api.headers(),
    ) as r:
        text = await r.text()
    assert r.status == status, text
    error = json.loads(text)["error"]
    assert message in error and "\n" not in error and len(error) < 300, error
    assert sorted(os.listdir(root)) == before  # nothing made, nothing left behind
    assert not os.path.lexists("/x") and sorted(os.listdir(root / "real")) == ["inner.txt"]


async def test_storage_links_inside_the_tree_are_followed(api: Api) -> None:
    s, h, url = api.session, api.headers(), f"{api.url}/storage"
    root = _tree(api)
    _links(root)
    async with s.get(f"{url}/latest/inner.txt", params={"op": "OPEN"}, headers=h) as r:
        assert (r.status, await r.read()) == (200, b"inner")
    async with s.get(f"{url}/latest", params={"op": "GET_FILE_STATUS"}, headers=h) as r:
        assert (await r.json())["FileStatus"]["type"] == "DIRECTORY"
    async with s.get(url, params={"op": "LIST_STATUS"}, headers=h) as r:  # the rest left out
        items = (await r.json())["FileStatuses"]["FileStatus"]
    assert [(i["path"], i["type"]) for i in items] == [
        ("f", "FILE"),
        ("latest", "DIRECTORY"),
        ("real", "DIRECTORY"),
    ]
    async with s.put(f"{url}/latest/new.txt", params={"op": "CREATE"}, data=b"n", headers=h) as r:
        assert r.status == 201
    assert (root / "real" / "new.txt").read_bytes() == b"n"
    async with s.put(f"{url}/latest/sub", params={"op": "MKDIRS"}, headers=h) as r:
        assert r.status == 201
    assert (root / "real" / "sub").is_dir()
    for link in ("latest", "dangling", "loop", "absolute"):  # DELETE removes the link itself
        async with s.delete(f"{url}/{link}", params={"op": "DELETE"}, headers=h) as r:
            assert r.status == 204, link
        assert not os.path.lexists(root / link)
    assert (root / "real" / "inner.txt").exists() and os.path.isdir("/etc")
    # CREATE over a link replaces the link, not what it points to
    os.symlink("real/inner.txt", root / "to-inner")
    async with s.put(f"{url}/to-inner", params={"op": "CREATE"}, data=b"own", headers=h) as r:
        assert r.status == 201
    assert not (root / "to-inner").is_symlink() and (root / "to-inner").read_bytes() == b"own"
    assert (root / "real" / "inner.txt").read_bytes() == b"inner"


# -- quota and a full disk: 507, and nothing partial kept -------------------------------------

QUOTA = {"storage_quota": 1 << 20}


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def _chunked(size: int, gate: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """A body without Content-Length (as the SDK streams one): the quota is seen mid-way."""
    for i in range(0, size, 100_000):
        yield b"y" * min(100_000, size - i)
        if gate is not None:
            await gate.wait()


@pytest.mark.parametrize("server_options", [QUOTA])
async def test_storage_quota_refuses_with_507(api: Api) -> None:
    s, h, url = api.session, api.headers(), f"{api.url}/storage"
    root = _tree(api)

    async def create(path: str, data: Any, user: str = "alice") -> tuple[int, str]:
        async with s.put(
            f"{url}/{path}", params={"op": "CREATE"}, data=data, headers=api.headers(user)
        ) as r:
            return r.status, await r.text()

    assert (await create("a", b"a" * 600_000))[0] == 201
    status, text = await create("b", b"b" * 600_000)  # with a Content-Length: refused at once
    assert (status, json.loads(text)["error"]) == (
        507,
        (
            "storage quota of 1.0 MiB exceeded: 585.9 KiB used; remove files (neuro rm) or ask "
            "the admin for more"
        ),
    )
    status, text = await create("c", _chunked(600_000))  # streamed: refused as it goes over
    assert status == 507 and "storage quota of 1.0 MiB exceeded" in text
    assert _files(root) == ["a"]  # no partial file
    assert (await create("a", b"A" * 1_000_000))[0] == 201  # replacing counts the difference
    assert (await create("bob-has-his-own", b"b" * 600_000, user="bob"))[0] == 201
    async with s.delete(f"{url}/a", params={"op": "DELETE"}, headers=h) as r:
        assert r.status == 204
    assert (await create("d/full", io.BytesIO(b"d" * (1 << 20))))[0] == 404  # no directory d
    assert (await create("full", io.BytesIO(b"d" * (1 << 20))))[0] == 201  # the whole quota
    assert (await create("empty-is-fine", b""))[0] == 201
    assert (await create("one-more", b"x"))[0] == 507
    assert _files(root) == ["empty-is-fine", "full"]


@pytest.mark.parametrize("server_options", [QUOTA])
async def test_storage_quota_holds_for_concurrent_uploads(api: Api) -> None:
    """Each upload reserves what it has received: two that each fit alone cannot both land."""
    gate = asyncio.Event()

    async def create(path: str) -> int:
        async with api.session.put(
            f"{api.url}/storage/{path}",
            params={"op": "CREATE"},
            data=_chunked(700_000, gate),
            headers=api.headers(),
        ) as r:
            return r.status

    root = _tree(api)
    both = asyncio.gather(create("one"), create("two"))
    deadline = time.monotonic() + 10
    while len([p for p in root.glob(".neuro-upload-*") if p.stat().st_size]) < 2:
        assert time.monotonic() < deadline, "the uploads did not start"
        await asyncio.sleep(0.02)  # poll: both have their first chunk in, then run freely
    gate.set()
    assert sorted(await both) == [201, 507]
    assert len(_files(root)) == 1


@pytest.mark.parametrize("server_options", [QUOTA])
async def test_storage_quota_counts_what_jobs_wrote(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuro_server import storage

    monkeypatch.setattr(storage.Usage, "REFRESH", 0.0)  # walk the tree on every write
    root = _tree(api)
    (root / "from-a-job").write_bytes(b"j" * 900_000)  # as a job's volume would
    async with api.session.put(
        f"{api.url}/storage/more",
        params={"op": "CREATE"},
        data=b"m" * 200_000,
        headers=api.headers(),
    ) as r:
        assert r.status == 507 and "878.9 KiB used" in await r.text()


def test_storage_quota_from_server_toml(tmp_path: Path) -> None:
    from neuro_server.config import ConfigError, load_config

    (tmp_path / "server.toml").write_text('[server]\nstorage_quota = "10GiB"\n')
    assert load_config(tmp_path).storage_quota == 10 << 30
    (tmp_path / "server.toml").write_text("")
    assert load_config(tmp_path).storage_quota == 0  # no limit
    (tmp_path / "server.toml").write_text('[server]\nstorage_quota = "lots"\n')
    with pytest.raises(ConfigError, match="invalid size"):
        load_config(tmp_path)


@contextlib.contextmanager
def _tiny_disk(path: Path) -> Iterator[None]:
    """A 1 MiB tmpfs mounted at ``path`` (root only), unmounted at the end."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


async def test_storage_full_disk_is_507(api: Api) -> None:
    s, h, url = api.session, api.headers(), f"{api.url}/storage"
    root = api.data_dir / "storage" / "alice"
    with _tiny_disk(root):
        for body in (io.BytesIO(b"z" * 2_000_000), _chunked(2_000_000)):
            async with s.put(f"{url}/big", params={"op": "CREATE"}, data=body, headers=h) as r:
                text = await r.text()
            assert r.status == 507, text
            assert json.loads(text)["error"] == "the server's disk is full: /big was not written"
            assert _files(root) == []  # the partial file is gone, the space back
        async with s.put(
            f"{url}/small", params={"op": "CREATE"}, data=b"s" * 500_000, headers=h
        ) as r:
            assert r.status == 201


# -- a refused job leaves no storage directory behind ------------------------------------------


async def test_refused_job_creation_leaves_no_storage_dirs(api: Api) -> None:
    s, h = api.session, api.headers()
    root = _tree(api)
    (root / "f").write_text("a file")

    def job(volume: str, **extra: Any) -> dict[str, Any]:
        return {
            "container": {
                "image": "ubuntu",
                "command": "sleep 30",
                "resources": {"cpu": 0.1, "memory": 1 << 26},
                "volumes": [{"src_storage_uri": volume, "dst_path": "/v", "read_only": False}],
                **extra,
            }
        }

    async with s.post(
        f"{api.url}/jobs",
        headers=h,
        json=job(
            "storage:fresh/sub", disk_volumes=[{"src_disk_uri": "disk:nope", "dst_path": "/d"}]
        ),
    ) as r:
        assert r.status == 400 and "no disk 'nope'" in await r.text()
    async with s.post(
        f"{api.url}/jobs", headers=h, json={**job("storage:kept"), "name": "same"}
    ) as r:
        assert r.status == 202
        kept = (await r.json())["id"]
    async with s.post(
        f"{api.url}/jobs", headers=h, json={**job("storage:fresh/sub2"), "name": "same"}
    ) as r:
        assert r.status == 409 and "already active" in await r.text()
    assert _files(root) == ["f", "kept"]
    async with s.post(f"{api.url}/jobs", headers=h, json=job("storage:f/sub")) as r:
        assert r.status == 400 and "f: not a directory" in await r.text()
    async with s.delete(f"{api.url}/jobs/{kept}", headers=h) as r:
        assert r.status == 204


# -- a tree that changes under the server: never a way out ------------------------------------


class _Swapper(threading.Thread):
    """Exchanges two names atomically (renameat2 RENAME_EXCHANGE), over and over, as a job
    with a read-write volume can: ``race/x`` is a real directory one moment, a link out of the
    tree the next."""

    def __init__(self, a: Path, b: Path) -> None:
        super().__init__(daemon=True)
        self.a, self.b = bytes(a), bytes(b)
        self.stop = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        while not self.stop.is_set():
            if libc.renameat2(-100, self.a, -100, self.b, 2) != 0:
                raise OSError(ctypes.get_errno(), "renameat2")
            self.swaps += 1


async def test_storage_api_never_leaves_the_tree_while_it_changes(api: Api) -> None:
    root = _tree(api)
    outside = api.data_dir / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET")
    (outside / "outside-only").write_text("")
    (root / "race" / "x").mkdir(parents=True)
    (root / "race" / "x" / "secret.txt").write_text("inside")
    os.symlink(outside, root / "race" / "lnk")
    swapper = _Swapper(root / "race" / "x", root / "race" / "lnk")
    swapper.start()
    seen: dict[tuple[int, str], int] = {}

    async def one(op: str) -> None:
        path = "race/x/secret.txt" if op == "OPEN" else "race/x"
        async with api.session.get(
            f"{api.url}/storage/{path}", params={"op": op}, headers=api.headers()
        ) as r:
            body = await r.text()
        leaked = "SECRET" in body or "outside-only" in body
        key = (r.status, "LEAKED" if leaked else body[:20] if r.status == 200 else body)
        seen[key] = seen.get(key, 0) + 1

    try:
        for _ in range(250):  # before the fix: ~15 leaks in 450 requests
            await asyncio.gather(one("OPEN"), one("OPEN"), one("LIST_STATUS"))
    finally:
        swapper.stop.set()
        swapper.join()
    assert swapper.swaps > 1000
    assert not [k for k in seen if k[1] == "LEAKED"], seen
    # inside, or refused (a link out; or, rarely, 'kept changing': 8 lookups lost the race)
    assert {
        k
        for k in seen
        if k[0] != 200 and "leads out of your storage" not in k[1] and "kept changing" not in k[1]
    } == set(), seen
