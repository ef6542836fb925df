"""The :class:`Client`: one aiohttp session, auth headers, error mapping, server config."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from ._errors import (
    ConfigError,
    ProtocolError,
    ServerUnreachable,
    error_from_status,
    error_message_from_text,
)
from ._disks import Disks
from ._jobs import Jobs
from ._secrets import Secrets
from ._storage import Storage
from ._server_config import Cluster, ServerConfig, parse_server_config
from ._utils import username_from_token
from ._version import __version__

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=60, sock_connect=60)
USER_AGENT = f"neuro-sdk/{__version__}"
WS_HEARTBEAT = 30.0

Query = Mapping[str, str] | Sequence[tuple[str, str]] | None


def _strip_query(url: URL) -> str:
    return str(url.with_query(None))


class Client:
    """Async client of the jobs platform API.

    *url* is the API URL ending in ``/api/v1``.  *server_config* is the raw JSON of
    ``GET {url}/config``; when it is not given it is fetched once, lazily, when something
    needs it (monitoring URL, registry, default cluster/org/project).  An injected *session*
    is not closed by :meth:`close`.

    Example::

        async with Client("http://127.0.0.1:8080/api/v1", token) as client:
            async for job in client.jobs.list(statuses={JobStatus.RUNNING}):
                print(job.id)
    """

    def __init__(
        self,
        url: URL | str,
        token: str,
        *,
        cluster_name: str | None = None,
        org_name: str | None = None,
        project_name: str | None = None,
        server_config: Mapping[str, Any] | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> None:
        url = URL(url)
        if url.path.endswith("/") and url.path != "/":
            url = url.with_path(url.path.rstrip("/"))
        self._url = url
        self._token = token
        self._cluster_name = cluster_name
        self._org_name = org_name
        self._project_name = project_name
        self._raw_server_config = dict(server_config) if server_config is not None else None
        self._server_config: ServerConfig | None = None
        self._config_lock: asyncio.Lock | None = None
        self._session = session
        self._own_session = session is None
        self._timeout = timeout
        self._closed = False
        self._jobs = Jobs(self)
        self._secrets = Secrets(self)
        self._storage = Storage(self)
        self._disks = Disks(self)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (unless it was injected)."""
        self._closed = True
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    # -- public attributes -------------------------------------------------------------------

    @property
    def url(self) -> URL:
        """The API URL, ending in ``/api/v1``."""
        return self._url

    @property
    def jobs(self) -> Jobs:
        """The :class:`Jobs` subsystem."""
        return self._jobs

    @property
    def secrets(self) -> Secrets:
        """The :class:`Secrets` subsystem (extension)."""
        return self._secrets

    @property
    def storage(self) -> Storage:
        """The :class:`Storage` subsystem (extension)."""
        return self._storage

    @property
    def disks(self) -> Disks:
        """The :class:`Disks` subsystem (extension)."""
        return self._disks

    @property
    def token(self) -> str:
        """The bearer token sent with every request."""
        return self._token

    @property
    def username(self) -> str:
        """User name from the token's JWT claims (not verified); :class:`ConfigError` if none."""
        try:
            return username_from_token(self._token)
        except ValueError as e:
            raise ConfigError(f"Cannot get the user name from the token: {e}") from e

    @property
    def cluster_name(self) -> str | None:
        """The current cluster: explicit, else the default from a known server config."""
        config = self._known_config()
        if self._cluster_name or config is None:
            return self._cluster_name
        return config.default_cluster_name()

    @property
    def org_name(self) -> str | None:
        """The current org: explicit, else the default from a known server config."""
        config = self._known_config()
        if self._org_name or config is None:
            return self._org_name
        return config.default_org_name(self.cluster_name)

    @property
    def project_name(self) -> str | None:
        """The current project: explicit, else the default from a known server config."""
        config = self._known_config()
        if self._project_name or config is None:
            return self._project_name
        return config.default_project_name(self.cluster_name, self.org_name)

    # -- server config -----------------------------------------------------------------------

    def _known_config(self) -> ServerConfig | None:
        if self._server_config is None and self._raw_server_config is not None:
            self._server_config = parse_server_config(self._raw_server_config)
        return self._server_config

    async def get_server_config(self, *, refresh: bool = False) -> ServerConfig:
        """The parsed ``GET /config``: clusters with presets, projects, orgs.

        Fetched at most once unless *refresh* is true (or it was passed to the constructor).
        """
        if not refresh:
            known = self._known_config()
            if known is not None:
                return known
        if self._config_lock is None:
            self._config_lock = asyncio.Lock()
        async with self._config_lock:
            if not refresh and self._server_config is not None:
                return self._server_config
            raw = await self._fetch_json("GET", self._url / "config")
            if not isinstance(raw, dict):
                raise ProtocolError("GET /config did not return a JSON object")
            self._raw_server_config = raw
            self._server_config = parse_server_config(raw)
            return self._server_config

    async def _context(self) -> tuple[str, str | None, str | None]:
        """(cluster, org, project), loading the server config when a default is needed."""
        if self._cluster_name and self._org_name and self._project_name:
            return self._cluster_name, self._org_name, self._project_name
        await self.get_server_config()
        cluster = self.cluster_name
        if not cluster:
            raise ConfigError(f"The server at {self._url} lists no clusters")
        return cluster, self.org_name, self.project_name

    async def _cluster(self, cluster_name: str | None = None) -> Cluster:
        config = await self.get_server_config()
        name = cluster_name or self.cluster_name
        if not name:
            raise ConfigError(f"The server at {self._url} lists no clusters")
        try:
            return config.clusters[name]
        except KeyError:
            raise ConfigError(f"Cluster {name!r} is not in the server config") from None

    async def _monitoring_url(self, cluster_name: str | None = None) -> URL:
        cluster = await self._cluster(cluster_name)
        if not cluster.monitoring_url.host:
            raise ConfigError(f"Cluster {cluster.name!r} has no monitoring_url")
        return cluster.monitoring_url

    async def _registry_host(self, cluster_name: str | None = None) -> str | None:
        return (await self._cluster(cluster_name)).registry_host

    # -- HTTP layer ----------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("The client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token}", "User-Agent": USER_AGENT}
        if extra:
            headers.update(extra)
        return headers

    @asynccontextmanager
    async def _request(
        self,
        method: str,
        url: URL,
        *,
        params: Query = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request; yield the response; raise the mapped error for status >= 400."""
        session = self._get_session()
        try:
            resp = await session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers=self._headers(headers),
                timeout=timeout if timeout is not None else self._timeout,
            )
        except aiohttp.ClientConnectionError as e:
            raise ServerUnreachable(
                f"Cannot reach the server at {_strip_query(url)}: {e}", str(url)
            ) from e
        async with resp:
            if resp.status >= 400:
                text = await resp.text(errors="replace")
                raise error_from_status(
                    resp.status, error_message_from_text(text) or resp.reason or ""
                )
            yield resp

    async def _fetch_json(self, method: str, url: URL, **kwargs: Any) -> Any:
        async with self._request(method, url, **kwargs) as resp:
            body = await resp.read()
        try:
            return json.loads(body)
        except ValueError as e:
            raise ProtocolError(f"{method} {_strip_query(url)}: the response is not JSON") from e

    @asynccontextmanager
    async def _ws_connect(
        self,
        url: URL,
        *,
        params: Query = None,
        headers: Mapping[str, str] | None = None,
        protocols: Sequence[str] = (),
        heartbeat: float | None = WS_HEARTBEAT,
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """Open a websocket; handshake errors map like HTTP errors, message from ``X-Error``."""
        session = self._get_session()
        try:
            ws = await session.ws_connect(
                url,
                params=params,
                headers=self._headers(headers),
                protocols=tuple(protocols),
                heartbeat=heartbeat,
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as e:
            header = e.headers.get("X-Error", "") if e.headers is not None else ""
            message = error_message_from_text(header) if header else e.message
            if e.status >= 400:
                raise error_from_status(e.status, message) from e
            raise ProtocolError(
                f"Websocket handshake with {_strip_query(url)} failed: {message}"
            ) from e
        except aiohttp.ClientConnectionError as e:
            raise ServerUnreachable(
                f"Cannot reach the server at {_strip_query(url)}: {e}", str(url)
            ) from e
        try:
            yield ws
        finally:
            await ws.close()
