"""Starting a process for the supervisor: the job, or a command exec'd beside it (fork+exec in a
session of its own, its cgroup, rlimits, mounts or namespaces, stdio and credentials set up in
the child, a failure before exec reported back through a close-on-exec pipe)."""

from __future__ import annotations

import errno
import os
import signal

TYPE_CHECKING = False  # typing itself costs milliseconds at every job start
if TYPE_CHECKING:
    from typing import Any

    from ... import cgroups

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class SpawnError(Exception):
    def __init__(self, stage: str, err: int, text: str) -> None:
        super().__init__(text)
        self.stage, self.errno, self.text = stage, err, text


def spawn(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    stdio: tuple[int, int, int],
    cgroup: cgroups.JobCgroup | None,
    rlimit_data: int | None,
    tty: bool = False,
    view: tuple[Any, ...] | None = None,
    enter: list[tuple[int, int]] | None = None,
    creds: tuple[int, int] | None = None,
    make_cwd: bool = False,
) -> int:
    """fork+exec the job in its own session, its cgroup joined before exec; returns its pid.

    ``stdio`` are the fds for the job's 0, 1, 2 (pipes, or a PTY's slave three times with
    ``tty``: it becomes the session's controlling terminal).  ``view``: the arguments of
    mountns.enter_view (the job's own mounts); ``enter``: the namespaces of a job to join
    (exec beside a job with a view).  ``creds``: the (uid, gid) it runs as, dropped to (no
    supplementary groups) once all that is done, so only the job's own permissions apply to
    ``cwd`` (made then, with ``make_cwd``) and what it runs.  Jobs get a umask of 022 (the
    server's is 077).  A failure before exec comes back through a close-on-exec pipe as
    SpawnError.
    """
    if view is not None or enter:
        from ... import mountns
    if tty:
        import fcntl
        import termios
    if rlimit_data is not None:
        import resource
    parent = os.getpid()
    prctl = _libc().prctl
    err_r, err_w = os.pipe()  # close-on-exec: EOF without data means exec succeeded
    pid = os.fork()
    if pid == 0:  # the child: only ever leaves through exec or _exit
        stage = "setup"
        try:
            os.close(err_r)
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; jobs must not
                signal.signal(s, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.umask(0o022)  # (before the view too: what it makes must be open to the job)
            os.setsid()
            if tty:
                stage = "tty"
                fcntl.ioctl(stdio[0], termios.TIOCSCTTY, 0)
            if cgroup is not None:
                stage = "cgroup"
                cgroup.join(os.getpid())
            if rlimit_data is not None:
                stage = "rlimit"
                _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
                limit = rlimit_data if hard == resource.RLIM_INFINITY else min(rlimit_data, hard)
                resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
            if view is not None:
                stage = "mounts"
                mountns.enter_view(*view)
            if enter:
                stage = "namespaces"
                mountns.enter(enter)
            stage = "stdio"
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            if creds is not None:
                stage = "user"
                os.setgroups([])
                os.setgid(creds[1])
                os.setuid(creds[0])
            stage = "cwd"
            if make_cwd:
                os.makedirs(cwd, exist_ok=True)
            os.chdir(cwd)
            stage = "exec"
            # the supervisor's death takes the job's first process with it (its children
            # are the server's to kill then: process.py); set last, as a change of
            # credentials (a user namespace, a uid) clears it
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died already
                os._exit(128 + signal.SIGKILL)
            os.execvpe(argv[0], argv, env)
        except OSError as e:
            report = f"{stage}\0{e.errno or 0}\0{e.strerror or e}"
        except BaseException as e:  # noqa: BLE001 - anything at all must reach the parent
            report = f"{stage}\0{0}\0{e!r}"
        try:
            os.write(err_w, report.encode(errors="replace"))
        finally:
            os._exit(127)
    os.close(err_w)
    chunks = []
    while chunk := os.read(err_r, 4096):
        chunks.append(chunk)
    os.close(err_r)
    if chunks:
        os.waitpid(pid, 0)
        stage, err, text = b"".join(chunks).decode(errors="replace").split("\0", 2)
        raise SpawnError(stage, int(err), text)
    return pid


def spawn_failure(e: SpawnError, argv0: str, cwd: str) -> tuple[int, str]:
    """Exit code and message (shell conventions: 127 not found, 126 cannot execute)."""
    if e.stage == "cwd":
        return 127, f'cannot run "{argv0}": working directory "{cwd}": {e.text}'
    if e.stage == "exec":
        code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        return code, f'cannot run "{argv0}": {e.text}'
    if e.stage == "mounts":
        return 125, f"cannot place the job's volumes: {e.text}"
    return 127, f'cannot run "{argv0}": {e.stage}: {e.text}'


_LIBC: Any = None


def _libc() -> Any:
    """libc through ctypes, loaded once (before a fork: the child only calls it)."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def set_subreaper() -> None:
    """Orphaned descendants of the job become our children: we can kill and reap them
    (on hosts whose init never reaps, they would otherwise stay zombies in the job's cgroup)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
