"""Storage subsystem (extension beyond the seed's Jobs API): the user's file tree on the
server, at the cluster's ``storage_url`` (WebHDFS-like ops).

Example::

    await client.storage.mkdir("data/raw", parents=True)
    await client.storage.upload(Path("train.csv"), "data/raw/train.csv")
    for entry in await client.storage.ls("data/raw"):
        print(entry.name, entry.size)
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yarl import URL

from ._errors import IllegalArgumentError, ProtocolError

if TYPE_CHECKING:
    from ._client import Client

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class FileStatus:
    name: str
    is_dir: bool
    size: int
    modified: datetime


def remote_path(path: str) -> str:
    """``storage:a/b``, ``storage:/a/b`` or ``a/b`` -> ``a/b`` (full ``storage://`` URIs are
    resolved by the server)."""
    if path.startswith("storage:") and not path.startswith("storage://"):
        path = path[len("storage:") :]
    if any(part == ".." for part in path.split("/")):
        raise IllegalArgumentError(f"invalid path {path!r}: '..' is not allowed")
    return path.strip("/")


class Storage:
    """Available as :attr:`Client.storage`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def _url(self, path: str) -> URL:
        cluster = await self._client._cluster()
        if not cluster.storage_url.host:
            raise ProtocolError(f"cluster {cluster.name!r} has no storage_url")
        rel = remote_path(path)
        return cluster.storage_url / rel if rel else cluster.storage_url

    @staticmethod
    def _status(raw: Any) -> FileStatus:
        try:
            return FileStatus(
                str(raw["path"]).rsplit("/", 1)[-1],
                raw["type"] == "DIRECTORY",
                int(raw.get("length") or 0),
                datetime.fromtimestamp(int(raw.get("modificationTime") or 0), UTC),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"storage: a bad file status {raw!r}") from e

    async def ls(self, path: str = "") -> builtins.list[FileStatus]:
        body = await self._client._fetch_json(
            "GET", await self._url(path), params={"op": "LIST_STATUS"}
        )
        try:
            items = body["FileStatuses"]["FileStatus"]
        except (KeyError, TypeError) as e:
            raise ProtocolError("storage LIST_STATUS: unexpected answer") from e
        return [self._status(i) for i in items]

    async def stat(self, path: str) -> FileStatus:
        body = await self._client._fetch_json(
            "GET", await self._url(path), params={"op": "GET_FILE_STATUS"}
        )
        return self._status((body or {}).get("FileStatus"))

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        async with self._client._request("PUT", await self._url(path), params={"op": "MKDIRS"}):
            pass

    async def create(self, path: str, data: AsyncIterable[bytes]) -> None:
        """Write the file at ``path`` from ``data`` (streamed; an existing file is replaced).

        Example::

            async def lines():
                yield b"hello\\n"

            await client.storage.create("notes/hello.txt", lines())
        """
        async with self._client._request(
            "PUT", await self._url(path), params={"op": "CREATE"}, data=data
        ):
            pass

    @contextlib.asynccontextmanager
    async def open(self, path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Read the file at ``path`` as it streams in.

        Example::

            async with client.storage.open("results/metrics.json") as chunks:
                async for data in chunks:
                    sys.stdout.buffer.write(data)
        """
        async with self._client._request("GET", await self._url(path), params={"op": "OPEN"}) as r:
            yield r.content.iter_chunked(CHUNK)

    async def upload(self, local: Path, path: str) -> int:
        """Copy a local file to ``path`` (streamed); returns the bytes sent."""
        size = local.stat().st_size  # noqa: ASYNC240 - one stat of a local file

        async def chunks() -> AsyncIterator[bytes]:
            with local.open("rb") as f:
                while data := f.read(CHUNK):
                    yield data

        await self.create(path, chunks())
        return size

    async def download(self, path: str, local: Path) -> int:
        """Copy ``path`` to a local file (streamed, written under a temporary name first)."""
        tmp = local.with_name(f".{local.name}.part")
        n = 0
        async with self.open(path) as chunks:
            with tmp.open("wb") as f:
                async for data in chunks:
                    f.write(data)
                    n += len(data)
        tmp.replace(local)
        return n

    async def rm(self, path: str, *, recursive: bool = False) -> None:
        params = {"op": "DELETE", **({"recursive": "true"} if recursive else {})}
        async with self._client._request("DELETE", await self._url(path), params=params):
            pass
