"""The ``docker`` runtime: jobs run in containers of their image, through the Docker Engine API
(Docker, or Podman's compatible service).

    runtime.py    DockerRuntime: the Runtime interface (base.py) on a container engine,
                  built in layers: jobs.py (its state) < follow.py (inspect, wait, logs,
                  stop, cleanup) < start.py (start) < runtime.py (the rest)
    container.py  what a JobSpec asks of the engine: the container's config (pure functions)
    engine.py     the engine: the aiodocker client, our containers (by label), image pulls
    api.py        the raw HTTP side: hijacked streams, log streams, blocking calls
    pump.py       a job's output: the only writer of its log, from the attach stream or the
                  engine's log after a restart
    attach.py     attach sessions (read the log by record)
    exec.py       exec sessions (the engine's exec API)
    relay.py      ports reached through a relay exec'd in the container (rootless engines)
    network.py    per-user (or shared) networks
    doors.py      pass_config to a server on loopback: a relay on the job network's gateway
    volumes.py    volumes pinned race-free for the engine to bind
    oom.py        was an exit 137 the memory limit
    plugin.py     its entry in the registry (registry.py)

aiodocker is imported only with the runtime itself: DockerRuntime is imported when asked for.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .runtime import DockerRuntime

__all__ = ["DockerRuntime"]


def __getattr__(name: str) -> object:
    if name == "DockerRuntime":
        from .runtime import DockerRuntime

        return DockerRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
