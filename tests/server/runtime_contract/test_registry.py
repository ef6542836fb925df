"""The registry of runtimes (neuro_server/runtime/registry.py) and the choice among them
(select.py): a runtime is one package and one line; ``auto`` tries them in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neuro_server.config import ConfigError, load_config
from neuro_server.runtime import registry
from neuro_server.runtime.base import TTY_SIZE
from neuro_server.runtime.process import control
from neuro_server.runtime.select import choose, runtime_for
from tests.server.toy_runtime.runtime import ToyRuntime


def test_registry_names_every_runtime_and_loads_its_plugin() -> None:
    assert registry.names()[:2] == ("docker", "process")  # the order "auto" tries them in
    assert "toy" in registry.names()  # (the contract suite's conftest registers it)
    for name in registry.names():
        plugin = registry.plugin(name)
        assert plugin.name == name and plugin.summary and plugin.config_keys
    with pytest.raises(KeyError):
        registry.plugin("kubernetes")  # (not a runtime here)


def test_a_registered_runtime_is_a_valid_config_and_cli_choice(tmp_path: Path) -> None:
    assert registry.check(load_config(tmp_path, runtime="toy")).runtime == "toy"
    with pytest.raises(ConfigError, match="unknown runtime 'nope': auto, .*toy"):
        registry.check(load_config(tmp_path, runtime="nope"))
    from neuro_server.cli import serve

    choices = next(p for p in serve.params if p.name == "runtime").type.choices  # type: ignore[attr-defined]
    assert {"auto", "process", "docker"} <= set(choices)


async def test_a_named_runtime_is_made_with_the_configs_capacity(tmp_path: Path) -> None:
    config = load_config(tmp_path, runtime="toy", cpu=3.0, memory=5 << 30, nvidia_gpu=0)
    runtime, choice = await runtime_for(config)
    try:
        assert isinstance(runtime, ToyRuntime)
        assert (choice.name, choice.reason) == ("toy", "set in the server config")
        cap = runtime.capacity()
        assert (cap.cpu, cap.memory, cap.nvidia_gpu) == (3.0, 5 << 30, 0)
        assert [(n.cpu, n.memory) for n in cap.nodes] == [(3.0, 5 << 30)]
    finally:
        await runtime.close()


async def test_process_capacity_is_the_configs_resources(tmp_path: Path) -> None:
    config = load_config(tmp_path, runtime="process", cpu=1.5, memory=2 << 30, nvidia_gpu=2)
    runtime, choice = await runtime_for(config)
    assert (choice.name, choice.reason) == ("process", "set in the server config")
    cap = runtime.capacity()
    assert (cap.cpu, cap.memory, cap.nvidia_gpu, len(cap.nodes)) == (1.5, 2 << 30, 2, 1)


async def test_auto_passes_over_an_engine_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuro_server.runtime.docker import plugin as docker_plugin

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    monkeypatch.setattr(docker_plugin, "standard_sockets", lambda: (f"{tmp_path}/none.sock",))
    choice = await choose(load_config(tmp_path))
    assert choice.name == "process"  # (the toy is never chosen by "auto")
    assert choice.reason == (
        "no Docker or Podman engine answers (DOCKER_HOST does not answer "
        "and no standard socket answers), so jobs run as local processes"
    )
    with pytest.raises(registry.Unavailable, match="the docker runtime was asked for"):
        await choose(load_config(tmp_path, runtime="docker"))


async def test_auto_finds_an_engine_that_answers(tmp_path: Path) -> None:
    from tests.server.runtime_docker.conftest import ENGINE_URL, WHY_NO_ENGINE

    if WHY_NO_ENGINE:
        pytest.skip(WHY_NO_ENGINE)
    choice = await choose(load_config(tmp_path, docker_host=ENGINE_URL))
    assert (choice.name, choice.where, choice.reason) == (
        "docker",
        ENGINE_URL,
        "set in the server config",
    )
    assert os.environ.get("DOCKER_HOST") is None or choice.where == ENGINE_URL


def test_the_supervisors_terminal_size_is_the_interfaces() -> None:
    assert control.TTY_SIZE == TTY_SIZE  # (the supervisor cannot import base: it starts cheaply)
