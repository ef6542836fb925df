"""Was an exit 137 the memory limit?  Engines do not always say (Podman's OOMKilled stays false
on cgroup v1): the kernel log names the container's memory cgroup in its "oom-kill:" line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..jobdir import SPEC, read_json

SIGKILLED = "sigkill.json"  # we sent SIGKILL: an exit 137 is not an OOM kill


def oom_evidence(d: Path, container_id: str) -> bool:
    """Exit 137 of the job in ``d``: was it the memory limit?  The kernel log says where it can
    be read; elsewhere: a job with a memory limit that we did not SIGKILL ourselves."""
    found = kmsg_oom(container_id)
    if found is not None:
        return found
    spec = read_json(str(d / SPEC)) or {}
    return int(spec.get("memory") or 0) > 0 and not (d / SIGKILLED).exists()


def kmsg_oom(container_id: str) -> bool | None:
    """Whether the kernel log has a memory-cgroup OOM kill in the container's cgroup (its path
    has the container id); None when the kernel log cannot be read here."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    needle = container_id.encode()
    try:
        while True:
            try:
                rec = os.read(fd, 8192)
            except BlockingIOError:
                return False
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten while we read: go on
                    continue
                return None
            if not rec:
                return False
            if b"oom-kill:" in rec and needle in rec:
                return True
    finally:
        os.close(fd)
