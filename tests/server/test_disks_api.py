"""The disks API at the HTTP edge: bad sizes and names are 400, disks are their owner's."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.server.conftest import Api

pytestmark = [
    pytest.mark.skipif(
        shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 (e2fsprogs) not installed"
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root (the disks' mount tool)"),
]


async def test_disks_api(api: Api) -> None:
    s, h = api.session, api.headers()
    url = f"{api.url}/disk"
    for body, why in [
        ({"storage": 1}, "between"),
        ({"storage": "1G"}, "between"),
        ({"storage": True}, "between"),
        ({}, "between"),
        ({"storage": 32 << 20, "name": "Bad_Name"}, "invalid disk name"),
        ([1], "JSON object"),
    ]:
        async with s.post(url, json=body, headers=h) as r:
            assert r.status == 400 and why in await r.text(), (body, await r.text())
    async with s.post(url, json={"storage": 32 << 20, "name": "mine"}, headers=h) as r:
        assert r.status == 201
        disk = await r.json()
    assert (
        disk["id"].startswith("disk-") and disk["storage"] == 32 << 20 and disk["owner"] == "alice"
    )
    async with s.get(f"{url}/mine", headers=h) as r:
        assert (await r.json())["id"] == disk["id"]
    async with s.get(f"{url}/mine", headers=api.headers("bob")) as r:
        assert r.status == 404
    async with s.delete(f"{url}/{disk['id']}", headers=api.headers("bob")) as r:
        assert r.status == 404
    async with s.get(url, headers=api.headers("bob")) as r:
        assert await r.json() == []
    job = {"image": "ubuntu", "command": "true", "resources": {"cpu": 0.1, "memory": 1 << 26}}
    for vol, why in [
        ({"src_disk_uri": "disk:nope", "dst_path": "/d"}, "no disk 'nope'"),
        ({"src_disk_uri": "storage:x", "dst_path": "/d"}, "not a disk URI"),
        ({"src_disk_uri": "disk:mine", "dst_path": "d"}, "absolute"),
    ]:
        async with s.post(
            f"{api.url}/jobs", json={"container": {**job, "disk_volumes": [vol]}}, headers=h
        ) as r:
            assert r.status == 400 and why in await r.text(), (vol, await r.text())
    async with s.delete(f"{url}/mine", headers=h) as r:
        assert r.status == 204
    async with s.get(f"{url}/mine", headers=h) as r:
        assert r.status == 404
