from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

import neuro_sdk
from neuro_sdk import AuthenticationError, ConfigError, Factory, JobStatus
from neuro_sdk._wire import SERVER_DIR, SERVER_INFO_FILE, ServerInfo, server_info_json

from .helpers import TOKEN, job_json, make_token
from .stub_server import StubServer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEURO_CONFIG", str(tmp_path / "cfg"))
    assert Factory().path == tmp_path / "cfg"


def test_config_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Factory().path == tmp_path / ".neuro"


async def test_not_logged_in(tmp_path: Path) -> None:
    factory = Factory(tmp_path / "nothing")
    assert not factory.is_logged_in()
    with pytest.raises(ConfigError, match="Not logged in"):
        await factory.get()


async def test_login_round_trip(
    stub: StubServer, raw_config: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEURO_CONFIG", str(tmp_path / "cfg"))
    stub.add("GET", "/api/v1/config", json=raw_config)
    stub.add("GET", "/api/v1/jobs", json={"jobs": [job_json()]})
    factory = Factory()
    await factory.login_with_token(TOKEN, str(stub.api_url))
    assert factory.is_logged_in()

    rec = stub.only("GET", "/api/v1/config")
    assert rec.headers["Authorization"] == f"Bearer {TOKEN}"
    config_file = tmp_path / "cfg" / "config.json"
    assert mode(config_file) == 0o600
    assert mode(tmp_path / "cfg") == 0o700
    data = json.loads(config_file.read_text())
    assert data == {
        "url": str(stub.api_url),
        "token": TOKEN,
        "username": "alice",
        "cluster_name": "default",
        "org_name": "acme",
        "project_name": "beta",
        "server_config": raw_config,
    }

    async with await neuro_sdk.get() as client:
        assert client.url == stub.api_url
        assert client.username == "alice"
        assert (client.cluster_name, client.org_name, client.project_name) == (
            "default",
            "acme",
            "beta",
        )
        jobs = [j async for j in client.jobs.list(statuses=[JobStatus.RUNNING])]
        assert [j.id for j in jobs] == ["job-1"]
    # the stored server config was used: /config was fetched only at login
    assert len([r for r in stub.requests if r.path == "/api/v1/config"]) == 1

    await factory.logout()
    assert not factory.is_logged_in()
    assert not (tmp_path / "cfg").exists()
    with pytest.raises(ConfigError):
        await factory.get()


async def test_login_unauthorized(stub: StubServer, raw_config: dict, tmp_path: Path) -> None:
    stub.add("GET", "/api/v1/config", json={**raw_config, "authorized": False})
    with pytest.raises(AuthenticationError, match="Cannot authorize"):
        await Factory(tmp_path).login_with_token(TOKEN, stub.api_url)
    assert not (tmp_path / "config.json").exists()


async def test_login_rejected_token(stub: StubServer, tmp_path: Path) -> None:
    stub.add("GET", "/api/v1/config", json={"error": "bad token"}, status=401)
    with pytest.raises(AuthenticationError, match="bad token"):
        await Factory(tmp_path).login_with_token(TOKEN, stub.api_url)


async def test_login_without_clusters(stub: StubServer, raw_config: dict, tmp_path: Path) -> None:
    stub.add("GET", "/api/v1/config", json={**raw_config, "clusters": []})
    with pytest.raises(ConfigError, match="No clusters"):
        await Factory(tmp_path).login_with_token(TOKEN, stub.api_url)


async def test_relogin_overwrites(stub: StubServer, raw_config: dict, tmp_path: Path) -> None:
    stub.add("GET", "/api/v1/config", json=raw_config)
    factory = Factory(tmp_path / "c")
    await factory.login_with_token(make_token({"identity": "one"}), stub.api_url)
    await factory.login_with_token(make_token({"identity": "two"}), stub.api_url)
    assert json.loads(factory.config_file.read_text())["username"] == "two"
    assert [p.name for p in factory.path.iterdir()] == ["config.json"]


def passed_config(stub: StubServer, **extra: str) -> str:
    data = {"token": TOKEN, "cluster": "second", "url": str(stub.api_url), **extra}
    return base64.b64encode(json.dumps(data).encode()).decode()


async def test_login_with_passed_config_from_env(
    stub: StubServer, raw_config: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stub.add("GET", "/api/v1/config", json=raw_config)
    monkeypatch.setenv("NEURO_PASSED_CONFIG", passed_config(stub, org_name="acme"))
    factory = Factory(tmp_path)
    await factory.login_with_passed_config()
    data = json.loads(factory.config_file.read_text())
    assert (data["cluster_name"], data["org_name"], data["project_name"]) == (
        "second",
        "acme",
        "aaa",
    )


async def test_login_with_passed_config_apolo_env(
    stub: StubServer, raw_config: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stub.add("GET", "/api/v1/config", json=raw_config)
    monkeypatch.setenv("APOLO_PASSED_CONFIG", passed_config(stub, project_name="p1"))
    factory = Factory(tmp_path)
    await factory.login_with_passed_config()
    data = json.loads(factory.config_file.read_text())
    assert (data["cluster_name"], data["project_name"]) == ("second", "p1")


async def test_login_with_passed_config_argument(
    stub: StubServer, raw_config: dict, tmp_path: Path
) -> None:
    stub.add("GET", "/api/v1/config", json=raw_config)
    factory = Factory(tmp_path)
    await factory.login_with_passed_config(passed_config(stub))
    assert json.loads(factory.config_file.read_text())["cluster_name"] == "second"


@pytest.mark.parametrize(
    "data",
    [None, "not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{}").decode()],
    ids=["missing", "not-base64", "not-object", "no-token"],
)
async def test_login_with_passed_config_invalid(tmp_path: Path, data: str | None) -> None:
    with pytest.raises(ConfigError):
        await Factory(tmp_path).login_with_passed_config(data)


def write_server_info(config_dir: Path, url: str, raw_config: dict, token: str = TOKEN) -> Path:
    """server.json as the embedded server writes it (neuro_server/cli.py: the same contract)."""
    server_dir = config_dir / SERVER_DIR
    server_dir.mkdir(parents=True)
    token_file = server_dir / "token"
    token_file.write_text(token + "\n")
    os.chmod(token_file, 0o600)
    info = ServerInfo(
        url=url, pid=os.getpid(), token_file=str(token_file), server_config=raw_config
    )
    (server_dir / SERVER_INFO_FILE).write_text(server_info_json(info))
    return token_file


async def test_embedded_server_info(stub: StubServer, raw_config: dict, tmp_path: Path) -> None:
    stub.add("GET", "/api/v1/tags", json={"tags": ["x"]})
    write_server_info(tmp_path, str(stub.api_url), raw_config)
    factory = Factory(tmp_path)
    assert not factory.is_logged_in()
    async with await factory.get() as client:
        assert client.url == stub.api_url
        assert client.username == "alice"
        assert client.cluster_name == "default"
        assert await client.jobs.tags() == ["x"]
    assert stub.only("GET", "/api/v1/tags").headers["Authorization"] == f"Bearer {TOKEN}"


async def test_login_config_wins_over_embedded(
    stub: StubServer, raw_config: dict, tmp_path: Path
) -> None:
    stub.add("GET", "/api/v1/config", json=raw_config)
    write_server_info(tmp_path, "http://127.0.0.1:9/api/v1", raw_config, token="other")
    factory = Factory(tmp_path)
    await factory.login_with_token(TOKEN, stub.api_url)
    async with await factory.get() as client:
        assert client.url == stub.api_url
    await factory.logout()
    async with await factory.get() as client:
        assert str(client.url) == "http://127.0.0.1:9/api/v1"


async def test_embedded_missing_token_file(tmp_path: Path, raw_config: dict) -> None:
    token_file = write_server_info(tmp_path, "http://127.0.0.1:9/api/v1", raw_config)
    token_file.unlink()
    with pytest.raises(ConfigError, match="token"):
        await Factory(tmp_path).get()


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", json.dumps({"token": "t"}), json.dumps({"url": "http://x/api/v1"})],
    ids=["not-json", "not-object", "no-url", "no-token"],
)
async def test_invalid_config_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError):
        await Factory(tmp_path).get()


async def test_config_file_with_loose_permissions(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"url": "http://x/api/v1", "token": "t"}))
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        await Factory(tmp_path).get()
