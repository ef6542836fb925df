"""Per-user networks of the docker runtime: one owner's jobs reach each other, by address and,
where the network has DNS, by id and name (NAME--OWNER); another owner's jobs reach none."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from neuro_server.runtime.docker import DockerRuntime, api
from neuro_server.runtime.docker.network import PER_USER
from tests.server.runtime_docker.conftest import (
    ENGINE_URL,
    eventually,
    make_runtime,
    output,
    skip_without_engine,
    spec,
)

skip_without_engine()

WEB = "mkdir -p /w && echo hi-from-$OWNER > /w/index.html && echo up && exec httpd -f -p 8080 -h /w"


@pytest.fixture
async def per_user(jobs_root: Path, instance: str) -> DockerRuntime:
    rt = make_runtime(jobs_root, instance, network=PER_USER)
    yield rt  # type: ignore[misc]
    await rt.close()


def _networks(instance: str) -> list[dict]:  # type: ignore[type-arg]
    import json

    ep = api.Endpoint.parse(ENGINE_URL)
    filters = json.dumps({"label": [f"neuro.instance={instance}"]})
    _status, found = api.get_json_blocking(ep, api.path("/networks", filters=filters))
    return found or []


async def _run(rt: DockerRuntime, job_id: str, owner: str, script: str) -> tuple[int, bytes]:
    await rt.start(dataclasses.replace(spec(job_id, ["sh", "-c", script]), owner=owner))
    code = (await rt.wait(job_id)).exit_code
    return code, output(rt, job_id)


async def test_each_owner_has_a_network_and_names_resolve_only_there(
    per_user: DockerRuntime, instance: str
) -> None:
    web = dataclasses.replace(
        spec("web", ["sh", "-c", WEB], env={"OWNER": "alice"}), owner="alice", hostname="web--alice"
    )
    started = await per_user.start(web)
    await eventually(lambda: b"up" in output(per_user, "web"))
    nets = {n["Name"]: n["Labels"] for n in _networks(instance)}
    assert list(nets) == [f"neuro-{instance}-alice"]
    assert nets[f"neuro-{instance}-alice"]["neuro.owner"] == "alice"
    info = await per_user.engine.container_info(per_user.container_name("web"))
    ip = next(iter(info["NetworkSettings"]["Networks"].values()))["IPAddress"]
    assert ip
    engine = (await per_user.engine.info())["name"]
    _name, names = await per_user.networks.ensure("alice", engine)
    if not names:
        pytest.skip(
            "the engine's networks have no DNS (Podman: install "
            "golang-github-containernetworking-plugin-dnsname)"
        )
    assert (started.address, started.hostname) == ("web", "web--alice")
    # the same owner: by id, by name and by address; the job's own host name is its id
    code, out = await _run(
        per_user,
        "a2",
        "alice",
        "wget -qO- http://web:8080/ && wget -qO- http://web--alice:8080/"
        f" && wget -qO- http://{ip}:8080/ && hostname",
    )
    assert (code, out) == (0, b"hi-from-alice\n" * 3 + b"a2\n")
    # another owner: its own network, where the name means nothing and the address is cut off
    code, out = await _run(
        per_user,
        "b1",
        "bob",
        "exec 2>/dev/null; nslookup web--alice >/dev/null && echo RESOLVED;"
        " nslookup web >/dev/null && echo RESOLVED;"
        f" timeout 3 wget -qO- http://{ip}:8080/ || echo unreachable",
    )
    assert out == b"unreachable\n", out
    assert sorted(n["Name"] for n in _networks(instance)) == [
        f"neuro-{instance}-alice",
        f"neuro-{instance}-bob",
    ]
    await per_user.stop("web", grace=0)


async def test_a_network_removed_behind_our_back_is_made_again(
    per_user: DockerRuntime, instance: str
) -> None:
    assert await _run(per_user, "one", "carol", "echo one") == (0, b"one\n")
    await per_user.cleanup("one")
    ep = api.Endpoint.parse(ENGINE_URL)
    from tests.server.runtime_docker.conftest import remove_containers

    remove_containers(instance)  # (a network in use cannot go)
    status, _ = api.get_json_blocking(
        ep, api.path("/networks/{}", f"neuro-{instance}-carol"), method="DELETE"
    )
    assert status in (200, 204) and _networks(instance) == []
    assert await _run(per_user, "two", "carol", "echo two") == (0, b"two\n")
    assert [n["Name"] for n in _networks(instance)] == [f"neuro-{instance}-carol"]


async def test_the_engines_default_network_when_asked(
    runtime: DockerRuntime, instance: str
) -> None:
    """network=None: the engine's default network, made by nobody; no names."""
    web = dataclasses.replace(
        spec("web", ["sh", "-c", "echo up; exec sleep 30"]), owner="alice", hostname="web--alice"
    )
    started = await runtime.start(web)
    assert started.hostname == "" and re.fullmatch(r"[0-9a-f.:]+", started.address)
    assert _networks(instance) == []
    await runtime.stop("web", grace=0)
