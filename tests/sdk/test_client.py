from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import pytest
from yarl import URL

import neuro_sdk
from neuro_sdk import Client, ConfigError, Preset, RemoteImage

from .helpers import TOKEN, job_json, make_token, server_config
from .stub_server import StubServer


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"identity": "alice"}, "alice"),
        ({"https://platform.neuromation.io/user": "bob"}, "bob"),
        ({"identity": "carol", "https://platform.neuromation.io/user": "bob"}, "carol"),
        ({"identity": "дмитрий"}, "дмитрий"),
    ],
    ids=["identity", "legacy-claim", "identity-preferred", "unicode"],
)
async def test_username_from_jwt(claims: dict, expected: str) -> None:
    async with Client("http://127.0.0.1:1/api/v1", make_token(claims)) as client:
        assert client.username == expected


@pytest.mark.parametrize(
    "token",
    ["opaque-token", "a.b", "a.!!!.c", make_token({"sub": "x"}), "x.WzFd.y"],
    ids=["opaque", "two-parts", "bad-base64", "no-claim", "array-payload"],
)
async def test_username_invalid_token(token: str) -> None:
    async with Client("http://127.0.0.1:1/api/v1", token) as client:
        with pytest.raises(ConfigError, match="user name"):
            _ = client.username


async def test_url_normalised() -> None:
    async with Client("http://h:1/api/v1/", TOKEN) as client:
        assert client.url == URL("http://h:1/api/v1")


async def test_server_config_fetched_lazily_once(stub: StubServer) -> None:
    raw = server_config(str(stub.monitoring_url))
    stub.add("GET", "/api/v1/config", json=raw)
    stub.add("GET", "/api/v1/jobs/capacity", json={"cpu-small": 1})
    stub.add("GET", "/api/v1/jobs/job-1", json=job_json())
    async with Client(stub.api_url, TOKEN) as client:
        assert client.cluster_name is None  # nothing fetched yet
        assert [r.path for r in stub.requests] == []
        results = await asyncio.gather(
            client.jobs.get_capacity(), client.jobs.status("job-1"), client.get_server_config()
        )
        assert results[0] == {"cpu-small": 1}
        assert client.cluster_name == "default"
        assert client.org_name == "acme"
        assert client.project_name == "beta"
    config_requests = [r for r in stub.requests if r.path == "/api/v1/config"]
    assert len(config_requests) == 1
    assert config_requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_get_server_config_refresh(stub: StubServer, raw_config: dict) -> None:
    stub.add("GET", "/api/v1/config", json=raw_config)
    async with Client(stub.api_url, TOKEN, server_config={"clusters": []}) as client:
        assert (await client.get_server_config()).clusters == {}
        assert stub.requests == []
        refreshed = await client.get_server_config(refresh=True)
        assert list(refreshed.clusters) == ["default", "second"]


async def test_server_config_parsing(client: Client) -> None:
    config = await client.get_server_config()
    assert config.authorized
    assert config.orgs == ("acme", "other")
    cluster = config.clusters["default"]
    assert cluster.orgs == ("acme", "other")
    assert cluster.registry_host == "registry.example.com"
    assert config.clusters["second"].registry_host == "registry2.example.com:5000"
    assert list(cluster.presets) == ["cpu-small", "gpu-new", "gpu-old"]
    assert cluster.presets["cpu-small"] == Preset(
        name="cpu-small", credits_per_hour=Decimal("0.5"), cpu=1.0, memory=2 * 2**30
    )
    assert cluster.presets["gpu-new"] == Preset(
        name="gpu-new",
        credits_per_hour=Decimal(10),
        cpu=8.0,
        memory=32 * 2**30,
        nvidia_gpu=1,
        nvidia_gpu_model="nvidia-tesla-a100",
        scheduler_enabled=True,
        preemptible_node=True,
    )
    old = cluster.presets["gpu-old"]
    assert (old.memory, old.memory_mb) == (16 * 2**30, 16384)
    assert (old.nvidia_gpu, old.nvidia_gpu_model, old.amd_gpu, old.intel_gpu) == (
        2,
        "nvidia-tesla-k80",
        1,
        3,
    )
    assert [p.name for p in config.projects] == ["zeta", "beta", "alpha", "aaa"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ("default", "acme", "beta")),
        ({"org_name": "other"}, ("default", "other", "alpha")),
        ({"cluster_name": "second"}, ("second", None, None)),
        ({"cluster_name": "second", "org_name": "acme"}, ("second", "acme", "aaa")),
        ({"project_name": "zeta"}, ("default", "acme", "zeta")),
    ],
    ids=["defaults", "org", "cluster-without-orgs", "cluster-and-org", "project"],
)
async def test_context_defaults(raw_config: dict, kwargs: dict, expected: tuple) -> None:
    async with Client("http://127.0.0.1:1/api/v1", TOKEN, server_config=raw_config, **kwargs) as c:
        assert (c.cluster_name, c.org_name, c.project_name) == expected


async def test_unknown_cluster_is_config_error(raw_config: dict) -> None:
    async with Client(
        "http://127.0.0.1:1/api/v1", TOKEN, cluster_name="nope", server_config=raw_config
    ) as client:
        with pytest.raises(ConfigError, match="nope"):
            await client.jobs.get_capacity()


async def test_no_clusters_is_config_error() -> None:
    async with Client("http://127.0.0.1:1/api/v1", TOKEN, server_config={"clusters": []}) as c:
        with pytest.raises(ConfigError, match="no clusters"):
            await c.jobs.start(image=RemoteImage.parse("ubuntu"), preset_name="x")


async def test_injected_session_is_not_closed(stub: StubServer, raw_config: dict) -> None:
    stub.add("GET", "/api/v1/tags", json={"tags": []})
    async with aiohttp.ClientSession() as session:
        async with Client(stub.api_url, TOKEN, server_config=raw_config, session=session) as c:
            assert await c.jobs.tags() == []
        assert not session.closed


async def test_closed_client_refuses_requests(raw_config: dict) -> None:
    client = Client("http://127.0.0.1:1/api/v1", TOKEN, server_config=raw_config)
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.jobs.tags()


async def test_token_and_headers(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/tags", json={"tags": []})
    assert client.token == TOKEN
    await client.jobs.tags()
    rec = stub.only("GET", "/api/v1/tags")
    assert rec.headers["Authorization"] == f"Bearer {TOKEN}"
    assert rec.headers["User-Agent"] == f"neuro-sdk/{neuro_sdk.__version__}"
