"""Which runtime serves the jobs, and why (shown by `neuro config show`).

``runtime = "auto"`` (the default) tries the registered runtimes in the registry's order
(registry.py): the first whose probe finds it can serve here (docker: the engine that
``DOCKER_HOST`` names, else the first of the standard Docker and Podman sockets that answers;
process: always).  A runtime named by the config must serve, or the server does not start.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from . import registry

if TYPE_CHECKING:
    from ..config import ServerConfig
    from .base import Runtime


@dataclasses.dataclass(frozen=True)
class Choice:
    name: str  # the runtime's name in the registry
    where: str  # where it serves (e.g. its engine's URL; "" when there is nothing to name)
    reason: str  # why this one, in words


async def choose(config: ServerConfig, name: str | None = None) -> Choice:
    """The runtime for ``config`` (``name``: instead of ``config.runtime``).  Raises
    registry.Unavailable (a RuntimeError) when the runtime asked for cannot serve here, and
    KeyError for a name no plug-in has."""
    name = name or config.runtime
    if name != "auto":
        found = await registry.plugin(name).probe(config, True, ())
        return Choice(name, found.where, found.reason)
    passed: list[str] = []
    for candidate in registry.names():
        plugin = registry.plugin(candidate)
        if not plugin.auto:
            continue
        try:
            found = await plugin.probe(config, False, tuple(passed))
        except registry.Unavailable as e:
            passed.append(str(e))
            continue
        return Choice(candidate, found.where, found.reason)
    raise registry.Unavailable("no runtime can serve jobs here: " + "; ".join(passed))


async def runtime_for(config: ServerConfig, name: str | None = None) -> tuple[Runtime, Choice]:
    """The runtime that serves ``config``'s jobs, made, and why it was chosen."""
    choice = await choose(config, name)
    found = registry.Found(choice.where, choice.reason)
    return registry.plugin(choice.name).create(config, found), choice
