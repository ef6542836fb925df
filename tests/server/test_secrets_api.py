"""The secrets API at the HTTP edge: bad input is a 4xx with a message, values are the owner's."""

from __future__ import annotations

import base64

from tests.server.conftest import Api


async def test_secrets_api(api: Api) -> None:
    url = f"{api.url}/secrets"
    s = api.session
    v = base64.b64encode(b"\x00\xffbinary").decode()
    async with s.post(url, json={"key": "k1", "value": v}, headers=api.headers()) as r:
        assert r.status == 201 and (await r.json())["key"] == "k1"
    async with s.get(f"{url}/k1", headers=api.headers()) as r:
        assert base64.b64decode((await r.json())["value"]) == b"\x00\xffbinary"
    for body, why in [
        ({"key": "k2"}, "base64 string"),
        ({"key": "k2", "value": "!!"}, "not valid base64"),
        ({"key": "1bad", "value": v}, "invalid secret key"),
        ([1], "JSON object"),
        ({"key": "k" * 300, "value": v}, "invalid secret key"),
    ]:
        async with s.post(url, json=body, headers=api.headers()) as r:
            assert r.status == 400 and why in await r.text(), (body, await r.text())
    async with s.post(url, data=b"{not json", headers=api.headers()) as r:
        assert r.status == 400
    # bob sees none of alice's
    async with s.get(url, headers=api.headers("bob")) as r:
        assert await r.json() == []
    async with s.get(f"{url}/k1", headers=api.headers("bob")) as r:
        assert r.status == 404
    async with s.delete(f"{url}/k1", headers=api.headers("bob")) as r:
        assert r.status == 404
    async with s.get(url, headers=api.headers()) as r:
        assert [x["key"] for x in await r.json()] == ["k1"]
    async with s.delete(f"{url}/k1", headers=api.headers()) as r:
        assert r.status == 204
    async with s.delete(f"{url}/k1", headers=api.headers()) as r:
        assert r.status == 404
    async with s.get(url) as r:  # no token
        assert r.status == 401
    # a job naming a secret that does not exist, or a bad secret URI
    job = {"image": "ubuntu", "command": "true", "resources": {"cpu": 0.1, "memory": 1 << 26}}
    for extra, why in [
        ({"secret_env": {"A": "secret:nope"}}, "no secret 'nope'"),
        ({"secret_env": {"A": "storage:x"}}, "not a secret URI"),
        ({"secret_env": {"A": "secret://other-cluster/p/k"}}, "not a secret of cluster"),
        ({"secret_volumes": [{"src_secret_uri": "secret:k", "dst_path": "rel"}]}, "absolute"),
        ({"secret_volumes": [{"src_secret_uri": "secret:k", "dst_path": "/a/../b"}]}, "no '..'"),
    ]:
        async with s.post(
            f"{api.url}/jobs", json={"container": {**job, **extra}}, headers=api.headers()
        ) as r:
            assert r.status == 400 and why in await r.text(), (extra, await r.text())
