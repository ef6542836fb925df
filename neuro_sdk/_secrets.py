"""Secrets subsystem (extension beyond the seed's Jobs API): the platform's secrets API at the
cluster's ``secrets_url``.

Example::

    await client.secrets.add("hf-token", b"hf_...")
    job = await client.jobs.start(..., secret_env={"HF_TOKEN": URL("secret:hf-token")})
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
from typing import TYPE_CHECKING

from yarl import URL

from ._errors import ProtocolError

if TYPE_CHECKING:
    from ._client import Client


@dataclasses.dataclass(frozen=True)
class Secret:
    key: str
    owner: str
    org_name: str | None = None
    project_name: str | None = None
    cluster_name: str = ""

    @property
    def uri(self) -> URL:
        """``secret://CLUSTER/ORG/PROJECT/KEY``, as job specs name it."""
        parts = [p for p in (self.org_name, self.project_name) if p]
        return URL.build(
            scheme="secret", host=self.cluster_name, path="/" + "/".join([*parts, self.key])
        )


class Secrets:
    """Available as :attr:`Client.secrets`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def _url(self) -> URL:
        cluster = await self._client._cluster()
        if not cluster.secrets_url.host:
            raise ProtocolError(f"cluster {cluster.name!r} has no secrets_url")
        return cluster.secrets_url

    async def list(self) -> builtins.list[Secret]:
        """The caller's secrets (keys only: values are never listed)."""
        body = await self._client._fetch_json("GET", await self._url())
        if not isinstance(body, builtins.list):
            raise ProtocolError("GET secrets: expected a list")
        cluster = self._client.cluster_name or ""
        return [
            Secret(
                str(s["key"]),
                str(s.get("owner", "")),
                s.get("org_name"),
                s.get("project_name"),
                cluster,
            )
            for s in body
            if isinstance(s, dict)
        ]

    async def add(self, key: str, value: bytes) -> None:
        """Create the secret ``key`` or replace its value."""
        data = {"key": key, "value": base64.b64encode(value).decode("ascii")}
        async with self._client._request("POST", await self._url(), json=data):
            pass

    async def get(self, key: str) -> bytes:
        body = await self._client._fetch_json("GET", await self._url() / key)
        try:
            return base64.b64decode(body["value"])
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError("GET secret: expected {'value': base64}") from e

    async def rm(self, key: str) -> None:
        async with self._client._request("DELETE", await self._url() / key):
            pass
