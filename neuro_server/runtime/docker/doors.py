"""``pass_config`` on the docker runtime with a server on loopback (the embedded one): its
containers cannot reach 127.0.0.1 of the host, so each job network gets a door to the server,
a TCP relay listening on that network's gateway (the host's own address on the bridge: only
the host and its containers reach it) that leads to the server's API port and nowhere else.
The job's passed config (``NEURO_PASSED_CONFIG``) names the door instead of loopback; what
comes through still needs the job's token, as every API request does.

The door listens on the server's port where that is free on the gateway (else any port); the
job's ``spec.json`` records it (``server_door``), so that a restarted server opens it again on
the same port for the containers that outlived it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..base import RuntimeError_

log = logging.getLogger(__name__)

PASSED = "NEURO_PASSED_CONFIG"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CHUNK = 1 << 16
_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # (Linux)


class Doors:
    def __init__(self) -> None:
        self._open: dict[tuple[str, str, int], tuple[asyncio.base_events.Server, int]] = {}
        self._conns: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def passed(self, value: str, gateway: str | None) -> tuple[str, list[Any] | None]:
        """The passed config ``value`` as a job on the network of ``gateway`` can use it,
        and the door it goes through (None: the server is not on loopback, or no config)."""
        try:
            data = json.loads(base64.b64decode(value))
            url = urlsplit(str(data["url"]))
            host, port = url.hostname or "", url.port or 80
        except (ValueError, KeyError, TypeError):
            return value, None
        if host not in LOOPBACK:
            return value, None  # the server listens where containers can reach it
        if not gateway:
            raise RuntimeError_(
                "pass_config: the job's network has no gateway address on this host for its "
                "containers to reach the server at (serve it with --host ADDRESS)"
            )
        door = [gateway, await self.open(gateway, port, host, port), host, port]
        netloc = f"[{gateway}]:{door[1]}" if ":" in gateway else f"{gateway}:{door[1]}"
        data["url"] = urlunsplit(url._replace(netloc=netloc))
        return base64.b64encode(json.dumps(data).encode()).decode("ascii"), door

    async def reopen(self, door: Any) -> None:
        """Open again (after a restart) the door a running job's config names."""
        try:
            gateway, port, host, target = str(door[0]), int(door[1]), str(door[2]), int(door[3])
        except (TypeError, ValueError, IndexError):
            return
        with contextlib.suppress(RuntimeError_):
            got = await self.open(gateway, port, host, target, anywhere=False)
            if got != port:
                log.warning("the server's door at %s:%d is at port %d now", gateway, port, got)

    async def open(
        self, gateway: str, port: int, host: str, target: int, *, anywhere: bool = True
    ) -> int:
        """The port of a door on ``gateway`` to ``host``:``target`` (``port`` if free there,
        else any one when ``anywhere``), opened now unless it is open already."""
        async with self._lock:
            if (key := (gateway, host, target)) in self._open:
                return self._open[key][1]

            async def through(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._relay(reader, writer, host, target)

            server = None
            for want in (port, 0) if anywhere else (port,):
                try:
                    server = await asyncio.start_server(through, sock=_listening(gateway, want))
                    break
                except OSError as e:
                    error = e
            if server is None:
                raise RuntimeError_(
                    f"pass_config: cannot listen at {gateway} (the job network's gateway) for "
                    f"its containers to reach the server: {error.strerror or error}"
                )
            self._open[key] = (server, int(server.sockets[0].getsockname()[1]))
            return self._open[key][1]

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            up_r, up_w = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            self._conns.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            for w in (writer, up_w):
                w.close()

    async def close(self) -> None:
        for server, _ in self._open.values():
            server.close()
        self._open.clear()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)


def _listening(address: str, port: int) -> socket.socket:
    """A socket listening on ``address``, which may not be on the host yet: the engine gives
    a network's bridge (and its gateway address) to the host only with its first container,
    after the container's config names the door (IP_FREEBIND: bound before it exists)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, _FREEBIND, 1)  # (IPv6 sockets too)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(CHUNK):
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof():
        dst.write_eof()
