"""What the cluster's nodes can give jobs (``sinfo --json``): each node's CPUs, memory and GPUs,
those that are down or drained left out; cached, and refreshed in the background."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping

from ..base import Capacity, NodeCapacity
from .commands import Node, Slurm, SlurmError, parse_sinfo

UNUSABLE = ("down", "drain", "fail", "future", "maint", "not_responding", "unknown", "reboot")
REFRESH = 30.0  # seconds a capacity is kept
log = logging.getLogger(__name__)


def usable(node: Node) -> bool:
    return not any(word in node.state for word in UNUSABLE)


def capacity_of(nodes: Iterable[Node]) -> Capacity:
    """The usable nodes' capacity, each and in total."""
    each = tuple(NodeCapacity(n.name, float(n.cpus), n.memory, n.gpus) for n in nodes if usable(n))
    return Capacity(
        cpu=sum(n.cpu for n in each),
        memory=sum(n.memory for n in each),
        nvidia_gpu=sum(n.nvidia_gpu for n in each),
        nodes=each,
    )


def is_local(address: str) -> bool:
    """The address is this machine's own network's loopback (all nodes on this machine)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(address, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class Nodes:
    """The cluster's nodes as sinfo last said (their capacity, and each one's address)."""

    def __init__(self, slurm: Slurm) -> None:
        self.slurm = slurm
        self.nodes: dict[str, Node] = {}
        self.at = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    def load_now(self, env: Mapping[str, str]) -> None:
        """Blocking, once at construction: the server starts knowing the cluster."""
        try:
            out = subprocess.run(
                ["sinfo", "--json"], capture_output=True, env=env, timeout=30, check=True
            ).stdout.decode()
            self._set(parse_sinfo(out))
        except (OSError, subprocess.SubprocessError, SlurmError) as e:
            log.warning("sinfo: %s", e)

    def _set(self, nodes: list[Node]) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.at = time.monotonic()

    async def refresh(self) -> None:
        try:
            self._set(await self.slurm.sinfo())
        except SlurmError as e:
            log.warning("sinfo: %s", e)
            self.at = time.monotonic()  # (try again later, not at every call)

    def capacity(self) -> Capacity:
        """Cached; a stale one starts a refresh (where an event loop runs) and is returned."""
        if time.monotonic() - self.at > REFRESH and self._refreshing is None:
            with contextlib.suppress(RuntimeError):  # no running loop: stays as it is
                task = asyncio.get_running_loop().create_task(self.refresh())
                self._refreshing = task
                task.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        return capacity_of(self.nodes.values())

    async def address(self, node: str) -> str:
        """The address of ``node`` (its NodeAddr), asking sinfo when it is not known yet."""
        if node not in self.nodes:
            await self.refresh()
        found = self.nodes.get(node)
        return found.address if found is not None else node

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refreshing
