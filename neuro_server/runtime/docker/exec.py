"""``exec`` for the docker runtime: a command run in the job's container (its namespaces, cgroup,
environment and working dir) through the engine's exec API, on a hijacked connection held by the
session.  stdin EOF is a half-close of that connection (a TTY gets its EOF character instead);
the exit code comes from the exec's inspect (126/127 when the command cannot start, as a shell
says).  Closing a session whose command still runs kills it and its children (the engine has no
call for that: by its host pid, when the engine runs on this host)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from aiodocker.exceptions import DockerError
from aiodocker.execs import Exec

from ..base import TTY_SIZE, RuntimeError_
from . import api
from .engine import Engine

CLOSE_TIMEOUT = 5.0
STDIN_CHUNK = 64 << 10


class ExecSession:
    def __init__(
        self, engine: Engine, job_id: str, ex: Exec, conn: api.Hijack, *, tty: bool, stdin: bool
    ) -> None:
        self._engine = engine
        self.job_id = job_id
        self._exec = ex
        self.exec_id = str(ex.id)
        self._conn = conn
        self.tty = tty
        self.stdin = stdin
        self.pid = 0  # on the engine's host
        self._exit: int | None = None
        self._stdin_open = stdin
        self._closed = False

    @classmethod
    async def open(
        cls,
        engine: Engine,
        job_id: str,
        container_id: str,
        argv: Sequence[str],
        *,
        tty: bool,
        stdin: bool,
        env: Mapping[str, str] | None,
        size: tuple[int, int] = TTY_SIZE,
    ) -> ExecSession:
        if isinstance(argv, (str, bytes)) or not argv:
            raise RuntimeError_("exec needs a command", reason="BadRequest")
        docker = await engine.client()
        try:
            ex = await docker.containers.container(container_id).exec(
                [str(a) for a in argv],
                stdout=True,
                stderr=True,
                stdin=stdin,
                tty=tty,
                environment={str(k): str(v) for k, v in (env or {}).items()} or None,
            )
        except DockerError as e:
            raise engine.runtime_error(job_id, e) from e
        exec_id = str(ex.id)
        start: dict[str, Any] = {"Detach": False, "Tty": tty}
        if tty:  # the initial size: Podman reads h/w, Docker (API 1.42+) ConsoleSize
            start.update(h=size[0], w=size[1], ConsoleSize=list(size))
        try:
            conn = await api.hijack(
                engine.endpoint, api.path("/exec/{}/start", exec_id), start, tty=tty
            )
        except api.EngineError as e:
            raise RuntimeError_(f"job {job_id}: exec failed: {e.message}") from e
        session = cls(engine, job_id, ex, conn, tty=tty, stdin=stdin)
        with contextlib.suppress(DockerError, KeyError, TypeError, ValueError):
            session.pid = int((await session._inspect()).get("Pid") or 0)
        if tty:
            with contextlib.suppress(DockerError):  # Docker before API 1.42: size it now
                await ex.resize(h=size[0], w=size[1])
        return session

    async def _inspect(self) -> dict[str, Any]:
        return dict(await self._exec.inspect() or {})

    async def read(self) -> tuple[int, bytes] | None:
        if self._closed:
            return None
        return await self._conn.read()

    async def write(self, data: bytes) -> None:
        if not self.stdin or not self._stdin_open or self._closed or not data:
            return
        for i in range(0, len(data), STDIN_CHUNK):
            if not await self._conn.write(data[i : i + STDIN_CHUNK]):
                return

    async def close_stdin(self) -> None:
        if not self.stdin or not self._stdin_open or self._closed:
            return
        if self.tty:
            await self._conn.write(b"\x04")
        else:
            self._stdin_open = False
            self._conn.write_eof()

    async def resize(self, height: int, width: int) -> None:
        if not self.tty or self._closed:
            return
        if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
            raise RuntimeError_(f"bad terminal size {height}x{width}", reason="BadRequest")
        with contextlib.suppress(DockerError):  # it ended meanwhile
            await self._exec.resize(h=height, w=width)

    async def wait(self) -> int | None:
        """The command's exit code, once it ended."""
        delay = 0.02
        while self._exit is None:
            try:
                info = await self._inspect()
            except DockerError as e:
                if e.status == 404:
                    raise RuntimeError_(
                        f"job {self.job_id}: the exec is gone", reason="NotFound"
                    ) from None
                info = {}
            if info and not info.get("Running"):
                self._exit = int(info.get("ExitCode") or 0)
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        return self._exit

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._exit is None:
                with contextlib.suppress(DockerError, KeyError, TypeError, ValueError):
                    info = await self._inspect()
                    if info.get("Running"):
                        pid = int(info.get("Pid") or 0) or self.pid
                        if pid and self._engine.endpoint.local:
                            await asyncio.to_thread(_kill_tree, pid)
                        with contextlib.suppress(RuntimeError_, TimeoutError):
                            await asyncio.wait_for(self.wait(), CLOSE_TIMEOUT)
        finally:
            await self._conn.close()


def _kill_tree(pid: int) -> None:
    import psutil  # type: ignore[import-untyped]  # (types-psutil: not a dependency)

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGKILL)
