"""Local configuration: where the client finds its server and token.

Config dir: env ``NEURO_CONFIG`` or ``~/.neuro`` (mode 0700).  It holds

* ``config.json`` (mode 0600), written by :meth:`Factory.login_with_token`::

      {"url": "https://.../api/v1", "token": "...", "username": "...",
       "cluster_name": "...", "org_name": "...", "project_name": "...",
       "server_config": {...raw GET /config...}}

* ``server/server.json``, written by the embedded local server (not by the SDK): a
  :class:`neuro_sdk._wire.ServerInfo`::

      {"url": "http://127.0.0.1:PORT/api/v1", "pid": 123,
       "token_file": "<path of a 0600 file holding the token>", "server_config": {...}}

:meth:`Factory.get` prefers a passed config (env ``NEURO_PASSED_CONFIG``, set in jobs started
with ``pass_config``), then ``config.json``, then the embedded server, else raises
:class:`ConfigError`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from yarl import URL

from ._client import DEFAULT_TIMEOUT, Client
from ._errors import AuthenticationError, ConfigError
from ._utils import username_from_token
from ._wire import SERVER_DIR, SERVER_INFO_FILE, ServerInfo

if TYPE_CHECKING:
    import aiohttp

CONFIG_ENV = "NEURO_CONFIG"
PASSED_CONFIG_ENVS = ("NEURO_PASSED_CONFIG", "APOLO_PASSED_CONFIG")
DEFAULT_API_URL = URL("https://api.apolo.us/api/v1")
CONFIG_FILE = "config.json"


def default_config_dir() -> Path:
    """``$NEURO_CONFIG`` or ``~/.neuro``."""
    value = os.environ.get(CONFIG_ENV)
    return Path(value).expanduser() if value else Path("~/.neuro").expanduser()


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"Cannot read {what} {path}: {e}") from e
    except ValueError as e:
        raise ConfigError(f"{what.capitalize()} {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{what.capitalize()} {path} is not a JSON object")
    return data


def _require_str(data: Mapping[str, Any], key: str, path: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: missing or invalid {key!r}")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _opt_dict(data: Mapping[str, Any], key: str, path: Path) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key!r} is not a JSON object")
    return value


def _decode_passed(config_data: str) -> dict[str, Any]:
    try:
        padded = config_data.strip() + "=" * (-len(config_data.strip()) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        data = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeError) as e:
        raise ConfigError(f"The passed config is not base64-encoded JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError("The passed config is not a JSON object")
    token, url = data.get("token"), data.get("url")
    if not isinstance(token, str) or not isinstance(url, str) or not token or not url:
        raise ConfigError("The passed config lacks 'token' or 'url'")
    return data


class Factory:
    """Creates :class:`Client` objects from the local configuration; logs in and out.

    Example::

        factory = Factory()
        await factory.login_with_token(token, "http://127.0.0.1:8080/api/v1")
        async with await factory.get() as client:
            ...
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = Path(path).expanduser() if path is not None else default_config_dir()

    @property
    def path(self) -> Path:
        """The config dir."""
        return self._path

    @property
    def config_file(self) -> Path:
        return self._path / CONFIG_FILE

    @property
    def server_info_file(self) -> Path:
        return self._path / SERVER_DIR / SERVER_INFO_FILE

    def is_logged_in(self) -> bool:
        """``True`` when ``config.json`` exists (an embedded server does not count)."""
        return self.config_file.exists()

    # -- creating clients ----------------------------------------------------------------------

    async def get(
        self,
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
    ) -> Client:
        """A client for the logged-in server, else for the embedded local server."""
        passed = self.passed_config()
        if passed is not None:
            # inside a job started with pass_config: act as its owner (first: on a host runtime
            # the job may share a home, and a config, with other logins of its owner)
            return Client(
                passed["url"],
                passed["token"],
                cluster_name=passed.get("cluster"),
                org_name=passed.get("org_name"),
                project_name=passed.get("project_name"),
                timeout=timeout,
                session=session,
            )
        if self.config_file.exists():
            return self._client_from_login_config(timeout=timeout, session=session)
        if self.server_info_file.exists():
            return self._client_from_server_info(timeout=timeout, session=session)
        raise ConfigError(
            f"Not logged in: no {self.config_file} and no local server info in "
            f"{self.server_info_file}; log in with a token or start the local server"
        )

    def _client_from_login_config(
        self, *, timeout: aiohttp.ClientTimeout, session: aiohttp.ClientSession | None
    ) -> Client:
        path = self.config_file
        if sys.platform != "win32":
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
                    f"run: chmod 600 {path}"
                )
        data = _read_json(path, "config file")
        return Client(
            _require_str(data, "url", path),
            _require_str(data, "token", path),
            cluster_name=_opt_str(data, "cluster_name"),
            org_name=_opt_str(data, "org_name"),
            project_name=_opt_str(data, "project_name"),
            server_config=_opt_dict(data, "server_config", path),
            session=session,
            timeout=timeout,
        )

    def _client_from_server_info(
        self, *, timeout: aiohttp.ClientTimeout, session: aiohttp.ClientSession | None
    ) -> Client:
        path = self.server_info_file
        data = cast(ServerInfo, _read_json(path, "local server info"))
        token_file = Path(_require_str(data, "token_file", path)).expanduser()
        if not token_file.is_absolute():
            token_file = path.parent / token_file
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"Cannot read the local server token {token_file}: {e}") from e
        if not token:
            raise ConfigError(f"The local server token file {token_file} is empty")
        return Client(
            _require_str(data, "url", path),
            token,
            server_config=_opt_dict(data, "server_config", path),
            session=session,
            timeout=timeout,
        )

    # -- login / logout ------------------------------------------------------------------------

    async def login_with_token(
        self,
        token: str,
        url: URL | str = DEFAULT_API_URL,
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> None:
        """Check *token* against ``GET {url}/config`` and write ``config.json``."""
        await self._login(token, URL(url), timeout=timeout)

    @staticmethod
    def passed_config() -> dict[str, Any] | None:
        """The config a job started with ``pass_config`` gets (env ``NEURO_PASSED_CONFIG``),
        decoded; None when there is none.  A malformed one raises :class:`ConfigError`."""
        for name in PASSED_CONFIG_ENVS:
            value = os.environ.get(name)
            if value:
                return _decode_passed(value)
        return None

    async def login_with_passed_config(
        self,
        config_data: str | None = None,
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> None:
        """Log in from the base64 JSON that the platform passes to jobs (protocol 3.3).

        *config_data* defaults to env ``NEURO_PASSED_CONFIG`` or ``APOLO_PASSED_CONFIG``; it
        decodes to ``{"token", "cluster", "url", "org_name"?, "project_name"?}``.
        """
        if config_data is None:
            for name in PASSED_CONFIG_ENVS:
                if os.environ.get(name):
                    config_data = os.environ[name]
                    break
            else:
                raise ConfigError(
                    f"No passed config: set {' or '.join(PASSED_CONFIG_ENVS)} "
                    "(jobs started with pass_config get it)"
                )
        data = _decode_passed(config_data)
        token, url = data["token"], data["url"]
        await self._login(
            token,
            URL(url),
            timeout=timeout,
            cluster_name=_opt_str(data, "cluster") or _opt_str(data, "cluster_name"),
            org_name=_opt_str(data, "org_name"),
            project_name=_opt_str(data, "project_name"),
        )

    async def _login(
        self,
        token: str,
        url: URL,
        *,
        timeout: aiohttp.ClientTimeout,
        cluster_name: str | None = None,
        org_name: str | None = None,
        project_name: str | None = None,
    ) -> None:
        async with Client(url, token, timeout=timeout) as client:
            config = await client.get_server_config()
            raw_config = client._raw_server_config
        if not config.authorized:
            raise AuthenticationError(f"Cannot authorize user at {url}", 401)
        if not config.clusters:
            raise ConfigError(f"No clusters configured at {url}")
        if cluster_name is None:
            cluster_name = config.default_cluster_name()
        elif cluster_name not in config.clusters:
            raise ConfigError(f"Cluster {cluster_name!r} is not available at {url}")
        if org_name is None:
            org_name = config.default_org_name(cluster_name)
        if project_name is None:
            project_name = config.default_project_name(cluster_name, org_name)
        try:
            username = username_from_token(token)
        except ValueError:
            username = ""
        self._write_config(
            {
                "url": str(client.url),
                "token": token,
                "username": username,
                "cluster_name": cluster_name,
                "org_name": org_name,
                "project_name": project_name,
                "server_config": raw_config,
            }
        )

    def _write_config(self, data: Mapping[str, Any]) -> None:
        self._path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._path, 0o700)
        tmp = self._path / f".{CONFIG_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.config_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def logout(self) -> None:
        """Forget the login: delete ``config.json`` (and the config dir when left empty)."""
        self.config_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._path.rmdir()


async def get(
    *,
    path: Path | None = None,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
) -> Client:
    """Shortcut for ``await Factory(path).get()``.

    Example::

        async with await neuro_sdk.get() as client:
            print(client.username)
    """
    return await Factory(path).get(timeout=timeout)
