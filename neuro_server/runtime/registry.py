"""The runtimes this server knows: a name -> its plug-in (``RuntimePlugin``).

Adding a runtime is one package and one line here:

    neuro_server/runtime/slurm/          the package: a Runtime (base.py) ...
    neuro_server/runtime/slurm/plugin.py ... and ``PLUGIN = RuntimePlugin("slurm", ...)``
    PLUGINS["slurm"] = "neuro_server.runtime.slurm.plugin"      (below)

A plug-in module is imported only when its runtime is asked for (``plugin(name)``), and it
imports its runtime only in ``create``: naming the runtimes (``names()``, for ``--runtime`` and
the config's check) costs nothing.  The order of PLUGINS is the order ``runtime = "auto"``
tries them in (select.py).  Tests register a toy runtime with ``register``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ServerConfig
    from .base import Capacity, Runtime

#: name -> the module of its plug-in (its ``PLUGIN``); "auto" tries them in this order
PLUGINS: dict[str, str] = {
    "docker": "neuro_server.runtime.docker.plugin",
    "process": "neuro_server.runtime.process.plugin",
    "slurm": "neuro_server.runtime.slurm.plugin",
}


class Unavailable(RuntimeError):
    """A runtime cannot serve jobs here (its probe says why, in words)."""


@dataclasses.dataclass(frozen=True)
class Found:
    """Where a runtime serves jobs (``where``: e.g. its engine's URL; "" when there is nothing
    to name) and why this one, in words (``neuro config show`` says it)."""

    where: str
    reason: str


@dataclasses.dataclass(frozen=True)
class RuntimePlugin:
    name: str
    summary: str  # one line: how jobs run (for --help)
    #: the server config keys (ServerConfig fields) it reads: its section of server.toml
    config_keys: tuple[str, ...]
    #: probe(config, asked, passed_over) -> Found, or raise Unavailable: can it serve here?
    #: ``asked``: named by the config (or --runtime), not tried by "auto"; ``passed_over``:
    #: why the runtimes tried before it by "auto" cannot serve (for its reason)
    probe: Callable[[ServerConfig, bool, Sequence[str]], Awaitable[Found]]
    #: create(config, found) -> the runtime (imports the runtime's modules only now)
    create: Callable[[ServerConfig, Found], Runtime]
    auto: bool = True  # tried by runtime = "auto"


_loaded: dict[str, RuntimePlugin] = {}


def names() -> tuple[str, ...]:
    """The runtimes' names, in the order "auto" tries them."""
    return tuple(PLUGINS)


def register(name: str, module: str) -> None:
    """Add a runtime (its plug-in's module) at the end; tests register their toy runtime."""
    PLUGINS[name] = module
    _loaded.pop(name, None)


def unregister(name: str) -> None:
    PLUGINS.pop(name, None)
    _loaded.pop(name, None)


def plugin(name: str) -> RuntimePlugin:
    """The plug-in of runtime ``name`` (KeyError for a name not registered)."""
    if name not in _loaded:
        found = importlib.import_module(PLUGINS[name]).PLUGIN
        if not isinstance(found, RuntimePlugin) or found.name != name:
            raise TypeError(f"{PLUGINS[name]}.PLUGIN is not the plug-in of {name!r}")
        _loaded[name] = found
    return _loaded[name]


def check(config: ServerConfig) -> ServerConfig:
    """``config`` when its runtime is "auto" or one registered here (ConfigError if not).
    (The config cannot ask this itself: the plug-ins' types name the config.)"""
    if config.runtime not in ("auto", *names()):
        from ..config import ConfigError

        raise ConfigError(
            f"unknown runtime {config.runtime!r}: auto, " + ", ".join(sorted(names(), reverse=True))
        )
    return config


def create(config: ServerConfig, name: str, found: Found | None = None) -> Runtime:
    """Runtime ``name`` for ``config`` (``found``: what its probe said; none: where its
    config says)."""
    return plugin(name).create(config, found or Found("", "set in the server config"))


def capacity_from_config(config: ServerConfig) -> Capacity:
    """What the server config's [resources] say jobs may use, as one node (this machine)."""
    import socket

    from .base import Capacity

    return Capacity.one_node(socket.gethostname(), config.cpu, config.memory, config.nvidia_gpu)
