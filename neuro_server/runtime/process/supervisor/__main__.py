"""``python -m neuro_server.runtime.process.supervisor JOB_DIR [--ready-fd N | --foreground]``:
the supervisor of one job (job.py), started by the process runtime for every job (it detaches),
and exec'd by the slurm runtime's batch script (``--foreground``: it stays the batch step's own
process, so Slurm's signals, limits and accounting are the supervisor's and the job's)."""

from __future__ import annotations

import contextlib
import os
import sys

from ...jobdir import SPEC
from .job import Supervisor


class _Diary:
    """The supervisor's stderr (supervisor.log) that a full disk cannot break: a line that
    does not fit is dropped, where a failed write would end the supervisor."""

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):
            os.write(2, text.encode(errors="replace"))
        return len(text)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return 2


def main(argv: list[str]) -> None:
    ready_fd = -1
    foreground = len(argv) == 3 and argv[2] == "--foreground"
    if foreground:
        pass
    elif len(argv) == 4 and argv[2] == "--ready-fd":
        ready_fd = int(argv[3])
        os.set_inheritable(ready_fd, False)  # not for the job
    elif len(argv) != 2:
        raise SystemExit(
            "usage: python -m neuro_server.runtime.process.supervisor JOB_DIR"
            " [--ready-fd N | --foreground]"
        )
    job_dir = os.path.abspath(argv[1])
    if not os.path.isfile(os.path.join(job_dir, SPEC)):
        raise SystemExit(f"supervisor: no {SPEC} in {job_dir}")
    # a bad spec fails here, where the server sees the exit code
    supervisor = Supervisor(job_dir, ready_fd)
    if not foreground:
        # detach: the server reaps this parent at once; the child is nobody's to wait for
        if os.fork():
            os._exit(0)
        os.setsid()
    os.chdir(job_dir)
    sys.stdout = sys.stderr = _Diary()
    supervisor.run()


if __name__ == "__main__":
    main(sys.argv)
