"""What the docker runtime asks the engine for, from a JobSpec (pure functions): the container's
config (entrypoint and command with Docker's semantics, limits, /dev/shm, GPUs, pids limit,
labels), its volumes' and secret files' binds, and what the engine's refusals mean (a command
that cannot run is exit 127 or 126, as on a host)."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import cgroups
from ..base import JobSpec, RuntimeError_
from ..jobdir import EXIT, exit_record, iso_now, write_json
from ..logfile import RECORD, LogWriter, truncate
from . import volumes

DEFAULT_SHM = 64 << 20
_NOT_FOUND = re.compile(
    r'exec: "([^"]*)": (executable file not found in \$PATH|no such file or directory)',
    re.IGNORECASE,
)
_NO_PERMISSION = re.compile(r'exec: "([^"]*)": permission denied', re.IGNORECASE)
_INIT_EXEC_FAILED = re.compile(
    r"ERROR \(catatonit:\d+\): failed to exec pid1: (?P<reason>[^\n]+)"
    r"|\[FATAL tini \(\d+\)\] exec (?P<name>.+?) failed: (?P<reason2>[^\n]+)"
)


def container_config(
    spec: JobSpec,
    binds: list[str] | None = None,
    *,
    init: bool,
    pids_limit: int,
    cgroup_parent: str | None,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The engine's container config of ``spec`` (``binds``: its volumes and secret files;
    ``labels``: this server's, the job's id and owner added)."""
    host: dict[str, Any] = {
        "Init": init,
        "Privileged": bool(spec.privileged),
        "ShmSize": shm_size(spec),
    }
    if pids_limit > 0:  # a fork bomb stops at it, not at the host's process table
        host["PidsLimit"] = pids_limit
    if binds:
        host["Binds"] = binds
    if spec.memory > 0:
        host["Memory"] = int(spec.memory)
        host["MemorySwap"] = int(spec.memory)  # no swap beyond the limit
    if spec.cpu > 0:
        host["NanoCpus"] = round(spec.cpu * 1e9)
    gpus = int(spec.gpus or 0)
    if gpus > 0:
        request: dict[str, Any] = {"Driver": "", "Count": gpus, "Capabilities": [["gpu"]]}
        if spec.gpu_ids:  # the devices the scheduler assigned, not any N
            request.update(Count=0, DeviceIDs=[str(i) for i in spec.gpu_ids])
        host["DeviceRequests"] = [request]
    if cgroup_parent:
        host["CgroupParent"] = cgroup_parent
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": dict(labels),
        "Tty": spec.tty,
        "OpenStdin": spec.tty,  # only TTY jobs keep a stdin (as the platform does)
        "StdinOnce": False,
        "AttachStdin": spec.tty,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": host,
    }
    entrypoint, command = entrypoint_and_command(spec)
    if entrypoint is not None:
        config["Entrypoint"] = entrypoint
    if command is not None:
        config["Cmd"] = command
    if spec.working_dir:
        config["WorkingDir"] = spec.working_dir
    return config


def limits_text(spec: JobSpec, engine: str) -> str:
    """What is enforced for the job, in words (the engine enforces it all)."""
    by = f"the container engine ({engine})"
    return cgroups.describe(by, by, int(spec.memory), float(spec.cpu))


def secret_files(d: Path, spec: JobSpec) -> list[str]:
    """Write the job's secret files (owner-only) under its directory; their read-only
    bind mounts."""
    binds = []
    folder = d / "secrets"
    if spec.files:
        folder.mkdir(mode=0o700, exist_ok=True)
    for i, (path, content) in enumerate(spec.files):
        host = folder / str(i)
        host.unlink(missing_ok=True)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        binds.append(f"{host}:{path}:ro")
    return binds


def pin_volumes(d: Path, spec: JobSpec) -> list[str]:
    """The volumes' bind mounts: each pinned where the server checked it (volumes.py:
    the engine gets a staging path of the server's, never a path in a user's tree)."""
    try:
        return volumes.pin(d / volumes.STAGING, spec.mounts)
    except OSError as e:
        raise RuntimeError_(f"cannot place the job's volumes: {e}") from None


def log_records(d: Path) -> int:
    try:
        return (d / "output.idx").stat().st_size // RECORD.size
    except OSError:
        return 0


def record_cannot_run(d: Path, cid: str, base: tuple[int, int], code: int, error: str) -> None:
    """The command could not start: the log gets the reason, exit.json the code."""
    truncate(str(d), *base)
    writer = LogWriter(str(d))
    try:
        writer.write(f"neuro: {error}\n".encode(), 2)
    finally:
        writer.close()
    now = iso_now()
    write_json(
        str(d / EXIT),
        {**exit_record(code, finished_at=now, started_at=now, error=error), "container_id": cid},
    )


def spec_record(spec: JobSpec) -> dict[str, Any]:
    return {
        "job_id": spec.job_id,
        "argv": list(spec.argv),
        "entrypoint": spec.entrypoint,
        "command": spec.command,
        "env": dict(spec.env),
        "working_dir": spec.working_dir,
        "cpu": spec.cpu,
        "memory": spec.memory,
        "gpus": int(spec.gpus or 0),
        "tty": spec.tty,
        "image": spec.image,
        "owner": spec.owner,
        "created_at": iso_now(),
    }


def entrypoint_and_command(spec: JobSpec) -> tuple[list[str] | None, list[str] | None]:
    """The user's raw ``entrypoint``/``command`` with Docker's semantics (the one not given:
    the image's own; an entrypoint given drops the image's CMD).  Neither given: ``argv``
    exactly when there is one (a spec made with only a resolved command), else the image's
    ENTRYPOINT and CMD (what the server sends when the user gave no command)."""
    entrypoint, command = spec.entrypoint, spec.command
    if entrypoint or command:
        return (split(entrypoint) if entrypoint else None), (split(command) if command else None)
    argv = [str(a) for a in spec.argv]
    if not argv:
        return None, None
    return argv[:1], argv[1:]


def split(value: Any) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def shm_size(spec: JobSpec) -> int:
    """/dev/shm: ``spec.shm`` bytes when it is a number, the memory limit (1 GiB without one)
    when it is True ("extended shm"), else 64 MiB."""
    shm: object = spec.shm
    if shm is True:
        return int(spec.memory) if spec.memory > 0 else 1 << 30
    if isinstance(shm, int) and not isinstance(shm, bool) and shm > 0:
        return shm
    return DEFAULT_SHM


def cannot_run(message: str) -> tuple[int, str]:
    """(exit code, error) when the engine says the command cannot run; (0, "") otherwise."""
    m = _NOT_FOUND.search(message)
    if m:
        return 127, f'cannot run "{m.group(1)}": {m.group(2)}'
    m = _NO_PERMISSION.search(message)
    if m:
        return 126, f'cannot run "{m.group(1)}": permission denied'
    if "executable file not found" in message or "no such file or directory" in message.lower():
        return 127, f"cannot run the command: {message}"
    return 0, ""


def create_error(job_id: str, image: str, e: Any) -> RuntimeError_:
    message = str(e.message)
    low = message.lower()
    if "invalid reference" in low:
        return RuntimeError_(f"invalid image name {image!r}: {message}", reason="InvalidImageName")
    if e.status == 404 and ("image" in low or "no such" in low):
        return RuntimeError_(f"no image {image}: {message}", reason="ErrImagePull")
    if e.status == 409:
        return RuntimeError_(f"job {job_id}: a container of that name exists: {message}")
    return RuntimeError_(f"cannot create the job's container: {message}")


def addresses(info: Mapping[str, Any]) -> list[str]:
    hosts: list[str] = []
    net = info.get("NetworkSettings") or {}
    if net.get("IPAddress"):
        hosts.append(str(net["IPAddress"]))
    for n in (net.get("Networks") or {}).values():
        for key in ("IPAddress", "GlobalIPv6Address"):
            if (n or {}).get(key) and str(n[key]) not in hosts:
                hosts.append(str(n[key]))
    mode = str((info.get("HostConfig") or {}).get("NetworkMode") or "")
    if not hosts and mode == "host":
        hosts = ["127.0.0.1", "::1"]
    return hosts


class InitError:
    """The first output of a container, held back while it may be its init's "could not exec"
    line (catatonit, tini): that line is replaced by ours at the exit (``init_could_not_exec``),
    so a user sees one error, as from a shell, not two."""

    # the line's start so far: its prefix, its pid digits, then ")" and the rest of the line
    _START = re.compile(rb"(?:ERROR \(catatonit:|\[FATAL tini \()\d*(?:\)|\Z)")
    _PREFIXES = (b"ERROR (catatonit:", b"[FATAL tini (")

    def __init__(self, *, first: bool = True) -> None:
        """``first``: the container's output starts now (not a pump resuming after some)."""
        self.held: list[tuple[bytes, int, float]] = []
        self.done = not first  # once output is not the init's line, nothing more is held

    @property
    def text(self) -> bytes:
        return b"".join(data for data, _, _ in self.held)

    def hold(self, data: bytes, stream: int, when: float) -> bool:
        """Hold ``data`` (True) while the container's output so far may be the init's line
        (it may come in pieces); False from the first byte that cannot be (the caller writes
        what was held first)."""
        if self.done:
            return False
        text = self.text + data
        newline = text.find(b"\n")
        if (
            len(text) <= 1024
            and newline in (-1, len(text) - 1)
            and (self._START.match(text) or any(p.startswith(text) for p in self._PREFIXES))
        ):
            self.held.append((data, stream, when))
            return True
        self.done = True
        return False

    def release(self) -> list[tuple[bytes, int, float]]:
        """What was held, to write after all (or to drop: replaced by our line)."""
        held, self.held = self.held, []
        self.done = True
        return held


def init_could_not_exec(text: bytes, code: int, command: str) -> tuple[int, str] | None:
    """With an init process (catatonit, tini), a command that cannot run is not the
    engine's error but the init's, printed as the container's only output (``text``): (127 or
    126, the error) then, as a shell (and the process runtime) would say."""
    if code not in (1, 126, 127) or not text:
        return None
    m = _INIT_EXEC_FAILED.fullmatch(text.decode(errors="replace").strip())
    if m is None:
        return None
    reason = m.group("reason") or m.group("reason2") or ""
    name = m.group("name") or command or "the command"
    status = 126 if "permission denied" in reason.lower() else 127
    return status, f'cannot run "{name}": {reason}'
