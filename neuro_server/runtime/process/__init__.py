"""The ``process`` runtime: jobs run as local processes on this host (the image is not used).

    runtime.py      ProcessRuntime: the Runtime interface (base.py) for local processes
    spec.py         spec.json for a job's supervisor, and the environment jobs get
    supervisors.py  a job's supervisor seen from the server: launch, signal, wait, bury
    sessions.py     attach and exec sessions over a supervisor's control socket
    control.py      that socket's protocol (shared with the supervisor)
    ports.py        a job's own listeners (jobs share the host's network)
    procfs.py       /proc: pids, sessions, the boot (shared with the supervisor)
    supervisor/     the per-job supervisor program (standard library only)
    plugin.py       its entry in the registry (registry.py)

Light on purpose: ``python -m neuro_server.runtime.process.supervisor`` imports this package
at every job start, so ProcessRuntime is imported only when asked for.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .runtime import ProcessRuntime

__all__ = ["ProcessRuntime"]


def __getattr__(name: str) -> object:
    if name == "ProcessRuntime":
        from .runtime import ProcessRuntime

        return ProcessRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
