"""The storage API at the HTTP edge: a user's tree cannot be left (.., encoded separators,
absolute paths, symlinks), another user's tree cannot be reached, bad ops are 4xx."""

from __future__ import annotations

import io
import os

from tests.server.conftest import Api


async def test_storage_ops_and_escapes(api: Api) -> None:
    s, h = api.session, api.headers()
    url = f"{api.url}/storage"
    async with s.put(f"{url}/a/b", params={"op": "MKDIRS"}, headers=h) as r:
        assert r.status == 201
    async with s.put(f"{url}/a/b/f.txt", params={"op": "CREATE"}, data=io.BytesIO(b"x" * 3_000_000), headers=h) as r:
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
    for path in ("../outside/secret.txt", "a/../../outside/secret.txt", "%2e%2e/outside/secret.txt",
                 "a%2f..%2f..%2foutside%2fsecret.txt", "link-out/secret.txt", "file-out",
                 "..%5coutside", "a/b/%00x"):
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
