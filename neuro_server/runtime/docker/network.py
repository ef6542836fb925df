"""The networks of the docker runtime's containers.

``per-user`` (the server's default): each owner's jobs share a bridge network of their own,
``<prefix>-<instance>-<owner>``, made when their first job starts and kept for the next ones.
Jobs of one owner reach each other (by address, and by name where the network has DNS: every
job is at its id there, a named job at ``NAME--OWNER`` too); other owners' jobs cannot reach
them (Podman isolates its networks from each other, as Docker does its user-defined ones).
``shared``: one such network for all the server's jobs (names still carry their owner).  Any
other value: that network as it is; None: the engine's default network.

Whether names resolve: Docker's user-defined networks always have an embedded DNS server;
Podman's have one when its DNS plugin is installed (CNI's dnsname, or netavark's
aardvark-dns), which its network inspection says (``dns_enabled``).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from ..base import dns_label
from . import api

PER_USER = "per-user"
SHARED = "shared"


class Networks:
    def __init__(
        self,
        endpoint: api.Endpoint,
        mode: str | None,
        prefix: str,
        instance: str,
        labels: dict[str, str],
    ) -> None:
        self.endpoint = endpoint
        self.mode = mode
        self.prefix = prefix
        self.instance = instance
        self.labels = labels  # what networks we make are labelled with (owner added)
        self._dns: dict[str, bool] = {}  # network -> names resolve there
        self._lock = asyncio.Lock()

    def name_for(self, owner: str) -> str | None:
        if self.mode == PER_USER:
            return f"{self.prefix}-{self.instance}-{dns_label(owner or 'nobody')}"
        if self.mode == SHARED:
            return f"{self.prefix}-{self.instance}"
        return self.mode or None

    async def ensure(self, owner: str, engine: str) -> tuple[str | None, bool]:
        """The network a job of ``owner`` joins (made when missing) and whether names
        resolve there.  Raises api.EngineError when it cannot be made."""
        name = self.name_for(owner)
        if name is None:
            return None, False
        if name in self._dns:
            return name, self._dns[name]
        async with self._lock:
            if name not in self._dns:
                made = self.mode in (PER_USER, SHARED)
                try:
                    await api.get_json(self.endpoint, api.path("/networks/{}", name))
                except api.EngineError as e:
                    if e.status != 404 or not made:
                        raise
                    await self._create(name, owner if self.mode == PER_USER else "")
                self._dns[name] = await self._resolves(name, engine)
        return name, self._dns[name]

    def forget(self, network: str) -> bool:
        """A network we knew is gone: look it up (and make it) again next time.  False when
        it is not one we make."""
        if self.mode not in (PER_USER, SHARED):
            return False
        return self._dns.pop(network, None) is not None

    async def _create(self, name: str, owner: str) -> None:
        labels = dict(self.labels)
        if owner:
            labels[f"{self.prefix}.owner"] = owner
        body: dict[str, Any] = {
            "Name": name,
            "Driver": "bridge",
            "CheckDuplicate": True,
            "Labels": labels,
        }
        try:
            resp = await api.request(self.endpoint, "POST", api.path("/networks/create"), body)
        except api.EngineError as e:
            if e.status == 409:  # made meanwhile (another server process)
                return
            raise api.EngineError(
                e.status,
                f"cannot make the jobs' network {name}: {e.message}"
                + (
                    ' (server.toml: network = "shared" uses one network for all users)'
                    if self.mode == PER_USER
                    else ""
                ),
            ) from e
        await resp.aclose()

    async def _resolves(self, name: str, engine: str) -> bool:
        if engine != "podman":
            return True
        try:
            info = await api.get_json(
                self.endpoint, f"/v4.0.0/libpod/networks/{quote(name, safe='')}/json"
            )
        except api.EngineError:
            return False
        return bool((info or {}).get("dns_enabled"))

    async def gateway(self, network: str | None) -> str | None:
        """The host's address on ``network`` (None: the engine's default one), where its
        containers reach the host; None when it has none."""
        try:
            info = await api.get_json(self.endpoint, api.path("/networks/{}", network or "bridge"))
        except api.EngineError:
            return None
        configs = ((info or {}).get("IPAM") or {}).get("Config") or []
        found = [str(c["Gateway"]) for c in configs if isinstance(c, dict) and c.get("Gateway")]
        return next((g for g in found if ":" not in g), found[0] if found else None)

    def endpoint_config(self, network: str | None, *names: str) -> dict[str, Any] | None:
        """NetworkingConfig of a container on ``network`` known there by ``names``."""
        aliases = [n for n in names if n]
        if network is None or not aliases:
            return None
        return {"EndpointsConfig": {network: {"Aliases": aliases}}}
