"""The embedded local server: started on first use when the user has not logged in anywhere.

It listens on loopback only, keeps its data in ``<config dir>/server`` and publishes its URL and
the path of its token file (mode 0600) in ``server.json`` there (``neuro_sdk._wire.ServerInfo``,
imported only where it is read: the completion code imports this module).  Later commands
reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CLIError, ExitCode

if TYPE_CHECKING:
    from neuro_sdk._wire import ServerInfo


def config_dir() -> Path:
    return Path(os.environ.get("NEURO_CONFIG") or "~/.neuro").expanduser()


def server_dir() -> Path:
    from neuro_sdk._wire import SERVER_DIR

    return config_dir() / SERVER_DIR


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def read_info() -> ServerInfo | None:
    """server.json of a live embedded server, else None."""
    from neuro_sdk._wire import SERVER_INFO_FILE

    try:
        info = json.loads((server_dir() / SERVER_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not _pid_alive(int(info.get("pid", 0))):
        return None
    found: ServerInfo = info  # type: ignore[assignment]
    return found


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    d = server_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(d / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_started(timeout: float = 20.0) -> ServerInfo:
    info = read_info()
    if info is not None:
        return info
    with _start_lock():
        info = read_info()
        if info is not None:
            return info
        return _spawn(timeout)


def _spawn(timeout: float) -> ServerInfo:
    import subprocess  # (only here: ~2 ms of every command otherwise)

    d = server_dir()
    log_path = d / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "neuro_server",
                "serve",
                "--embedded",
                "--data-dir",
                str(d),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        info = read_info()
        if info is not None and info.get("pid") == proc.pid:
            return info
        if proc.poll() is not None:
            tail = _tail(log_path)
            raise CLIError(
                f"the local server failed to start: {tail}",
                ExitCode.UNREACHABLE,
                hint=f"see {log_path}",
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    proc.terminate()
    raise CLIError(
        "the local server did not start in time", ExitCode.UNREACHABLE, hint=f"see {log_path}"
    )


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


def stop(timeout: float = 20.0) -> int | None:
    """Stop the embedded server; returns its pid, or None if none was running."""
    info = read_info()
    if info is None:
        return None
    pid = int(info["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    return pid


def token(info: ServerInfo) -> str:
    try:
        return Path(info["token_file"]).read_text().strip()
    except (KeyError, OSError) as e:
        raise CLIError(f"cannot read the local server's token: {e}", ExitCode.CONFIG) from None
