"""Disks subsystem (extension beyond the seed's Jobs API): persistent filesystems of a fixed
size, at the cluster's ``disks_url``; jobs mount them with
``DiskVolume(URL("disk:NAME"), "/mnt")``.

Example::

    disk = await client.disks.create(10 << 30, name="cache")
"""

from __future__ import annotations

import builtins
import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from yarl import URL

from ._errors import ProtocolError
from ._parsing import parse_datetime

if TYPE_CHECKING:
    from ._client import Client


@dataclasses.dataclass(frozen=True)
class Disk:
    id: str
    storage: int  # bytes
    used_bytes: int
    owner: str
    status: str
    name: str | None = None
    created_at: datetime | None = None
    last_usage: datetime | None = None
    cluster_name: str = ""

    @property
    def uri(self) -> URL:
        return URL(f"disk:{self.name or self.id}")


class Disks:
    """Available as :attr:`Client.disks`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def _url(self) -> URL:
        cluster = await self._client._cluster()
        if not cluster.disks_url.host:
            raise ProtocolError(f"cluster {cluster.name!r} has no disks_url")
        return cluster.disks_url

    @staticmethod
    def _disk(raw: Any) -> Disk:
        try:
            return Disk(
                str(raw["id"]),
                int(raw["storage"]),
                int(raw.get("used_bytes") or 0),
                str(raw.get("owner", "")),
                str(raw.get("status", "")),
                raw.get("name"),
                parse_datetime(raw.get("created_at")),
                parse_datetime(raw.get("last_usage")),
                str(raw.get("cluster_name", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"disks: a bad disk {raw!r}") from e

    async def create(self, storage: int, *, name: str | None = None) -> Disk:
        body: dict[str, Any] = {"storage": storage}
        if name:
            body["name"] = name
        return self._disk(await self._client._fetch_json("POST", await self._url(), json=body))

    async def list(self) -> builtins.list[Disk]:
        body = await self._client._fetch_json("GET", await self._url())
        if not isinstance(body, builtins.list):
            raise ProtocolError("GET disks: expected a list")
        return [self._disk(d) for d in body]

    async def get(self, disk: str) -> Disk:
        return self._disk(await self._client._fetch_json("GET", await self._url() / disk))

    async def rm(self, disk: str) -> None:
        async with self._client._request("DELETE", await self._url() / disk):
            pass
