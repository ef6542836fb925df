"""Ports of the process runtime's jobs: jobs share the host's network, so a job's port is the
host's; the listener is found by its socket (/proc/net/tcp, tcp6) among the descriptors of the
job's own processes, never another's (another user's job, a host service)."""

from __future__ import annotations

import os
import sys

from .. import cgroups, telemetry


def job_listener(
    port: int, cgroup: cgroups.JobCgroup | None, supervisor_pid: int | None
) -> str | None:
    """The address to reach the job's own listener on TCP ``port`` at (loopback for a
    wildcard); None when no process of the job (its cgroup's, its supervisor's descendants)
    listens there."""
    listening = listeners(port)
    if not listening:
        return None
    pids: set[int] = set()
    if cgroup is not None:
        pids |= cgroup.pids()
    if supervisor_pid is not None:
        pids |= telemetry.tree_pids(supervisor_pid)
        pids.discard(supervisor_pid)  # (the supervisor is not the job)
    for pid in pids:
        for inode in socket_inodes(pid) & listening.keys():
            # (Linux lets no other socket listen on a port a wildcard listens on)
            bound = listening[inode]
            return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bound, bound)
    return None


def listeners(port: int) -> dict[int, str]:
    """Sockets listening on TCP ``port`` on this host (its network namespace): their inode
    -> the address they are bound to (0.0.0.0, :: for any)."""
    found: dict[int, str] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st ... inode (10th); st 0A: LISTEN
            if len(fields) < 10 or fields[3] != "0A":
                continue
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port or not fields[9].isdigit():
                continue
            found[int(fields[9])] = _address(address)
    return found


def _address(hex_address: str) -> str:
    """/proc/net/tcp's form of an address (32-bit words in host order) as text."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    raw = (
        b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        if sys.byteorder == "little"
        else raw
    )
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds open (none when it is gone)."""
    out: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out
