"""The :class:`Client`: auth headers, error mapping, server config, and the HTTP layer.

Plain requests go through the light transport (``_transport``), websockets through one aiohttp
session (created, and aiohttp imported, on first use); see :meth:`Client._request`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from yarl import URL

from ._disks import Disks
from ._errors import (
    ConfigError,
    ProtocolError,
    ServerUnreachable,
    error_from_status,
    error_message_from_text,
)
from ._jobs import Jobs
from ._secrets import Secrets
from ._server_config import Cluster, ServerConfig, parse_server_config
from ._storage import Storage
from ._transport import (
    _ConnectError,
    _Redirect,
    _Response,
    _Timeout,
    _Transport,
    aiohttp_timeout,
    env_proxy,
    running_loop,
)
from ._utils import username_from_token
from ._version import __version__

if TYPE_CHECKING:
    import asyncio

    import aiohttp

    from ._transport import Response

DEFAULT_TIMEOUT = _Timeout(total=None, connect=None, sock_read=60, sock_connect=60)
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
    carries every request and is not closed by :meth:`close`.  ``HTTP_PROXY``,
    ``HTTPS_PROXY`` and ``NO_PROXY`` are honoured (never for loopback).

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
        # plain requests without aiohttp, unless the caller gave a session of their own
        self._light: _Transport | None = _Transport() if session is None else None
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
        """Close the connections and the HTTP session (unless it was injected)."""
        self._closed = True
        if self._light is not None:
            await self._light.close()
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
        if running_loop() is None:  # (requests are blocking then: nothing runs concurrently)
            return await self._fetch_server_config(refresh)
        if self._config_lock is None:
            import asyncio

            self._config_lock = asyncio.Lock()
        async with self._config_lock:
            return await self._fetch_server_config(refresh)

    async def _fetch_server_config(self, refresh: bool) -> ServerConfig:
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
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp_timeout(self._timeout))
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
    ) -> AsyncIterator[Response]:
        """Send a request; yield the response; raise the mapped error for status >= 400.

        The light transport sends it when it can (no injected session, no proxy, no streamed
        body); aiohttp when not, and for a redirect (which it follows).  With no running event
        loop the light transport blocks, and aiohttp runs on a loop of its own, the whole
        answer read before it ends."""
        if self._closed:
            raise RuntimeError("The client is closed")
        where = url  # (errors name the URL without the query, as before)
        if params:
            url = url.extend_query(params)
        timeout = timeout if timeout is not None else self._timeout
        all_headers = self._headers(headers)
        if json is not None:
            data = _json_dumps(json).encode()
            all_headers.setdefault("Content-Type", "application/json")
        elif isinstance(data, (str, bytes)):  # (the content types aiohttp gives them)
            all_headers.setdefault(
                "Content-Type",
                "text/plain; charset=utf-8"
                if isinstance(data, str)
                else "application/octet-stream",
            )
            data = data.encode() if isinstance(data, str) else data
        resp: Response | None = None
        proxy = env_proxy(url)
        if self._light is not None and proxy is None and isinstance(data, (bytes, type(None))):
            try:
                resp = await self._light.request(method, url, all_headers, data, timeout)
            except _ConnectError as e:
                raise ServerUnreachable(
                    f"Cannot reach the server at {_strip_query(where)}: {e}", str(where)
                ) from e
            except _Redirect:
                resp = None
        if resp is None:
            if running_loop() is None:
                resp = await self._aiohttp_buffered(
                    method, url, all_headers, data, timeout, proxy, where
                )
            else:
                resp = await _aiohttp_request(
                    self._get_session(), method, url, all_headers, data, timeout, proxy, where
                )
        async with resp:
            if resp.status >= 400:
                text = await resp.text(errors="replace")
                raise error_from_status(
                    resp.status, error_message_from_text(text) or resp.reason or ""
                )
            yield resp

    async def _aiohttp_buffered(
        self,
        method: str,
        url: URL,
        headers: dict[str, str],
        data: Any,
        timeout: Any,
        proxy: URL | None,
        where: URL,
    ) -> _Response:
        """aiohttp without a running loop: on a private one, until the answer is all read."""
        import asyncio

        import aiohttp

        async def fetch() -> _Response:
            async with aiohttp.ClientSession(timeout=aiohttp_timeout(self._timeout)) as session:
                resp = await _aiohttp_request(
                    session, method, url, headers, data, timeout, proxy, where
                )
                async with resp:
                    body = await resp.read()
                return _Response.buffered(url, resp.status, resp.reason, resp.headers, body)

        return asyncio.run(fetch())

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
        if running_loop() is None:
            raise RuntimeError("Websockets need a running asyncio event loop")
        import aiohttp

        session = self._get_session()
        try:
            ws = await session.ws_connect(
                url,
                params=params,
                headers=self._headers(headers),
                protocols=tuple(protocols),
                heartbeat=heartbeat,
                max_msg_size=0,
                proxy=env_proxy(url),  # (its credentials, if any, go as Proxy-Authorization)
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


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj)  # as aiohttp's JsonPayload does


async def _aiohttp_request(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: dict[str, str],
    data: Any,
    timeout: Any,
    proxy: URL | None,
    where: URL,
) -> aiohttp.ClientResponse:
    import aiohttp

    try:
        return await session.request(
            method, url, data=data, headers=headers, timeout=aiohttp_timeout(timeout), proxy=proxy
        )
    except aiohttp.ClientConnectionError as e:
        raise ServerUnreachable(
            f"Cannot reach the server at {_strip_query(where)}: {e}", str(where)
        ) from e
