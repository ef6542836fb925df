"""Who a job runs as on the process runtime: each platform user apart, as a uid of their own.

Process-runtime jobs run on the host.  As the server's user they would all be one user: bob's
job could read the server's signing key, alice's secrets, logs and storage, signal her jobs.
So a root server runs each platform user's jobs (and what is exec'd beside them) as a uid and
gid of their own, from ``job_uids`` in server.toml (far above the host's accounts; uids the
host has an account, group or subordinate range for are skipped), kept in the store for good
(``job_uids`` table: stable across restarts, never given to another user).  The job's child
drops to it right before exec (supervisor.spawn).  What the job needs is made theirs:

- a home, ``<homes_dir>/<user>`` (0700, theirs; HOME, and ``jobs/<JOB_ID>`` below it is the
  default working dir), since the data dir stays the server's alone (0700);
- their storage tree (``<data_dir>/storage/<user>``, made theirs once, storage.own_tree), and
  what the storage API makes there, so that their jobs can write to their volumes;
- secret files (0400, in the job's own tmpfs: mountns), and a disk's root as it is mounted;
- their ports: only their own jobs reach them directly (portfence.py).

One exception keeps a single-user machine as it is: the user named like the server's own OS
user (the embedded server's, ``getpass.getuser()``) runs as the server's uid, as before.

A server that is not root (or with ``job_uids = "off"``) cannot keep users apart: it says so
(`config show`) and accepts only its own user's jobs, unless the admin opts in with
``allow_shared_uid = true``.  Other runtimes keep jobs apart in containers: none of this
applies to them.

    users = JobUsers(config, store, host_users=runtime.capabilities.host_users)
    users.refusal("bob")              # None, or why bob's jobs cannot run here (one line)
    who = await users.prepare("bob")  # JobUser, or None: as the server's user
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import grp
import logging
import os
import pwd
import stat
from collections.abc import Callable
from pathlib import Path

from . import storage
from .config import ServerConfig
from .portfence import FenceError, PortFence, chain_name
from .runtime.base import RuntimeError_
from .store import Store

log = logging.getLogger(__name__)
SUBORDINATE = ("/etc/subuid", "/etc/subgid")


@dataclasses.dataclass(frozen=True)
class JobUser:
    """A platform user's own uid and gid for their jobs, and their home."""

    name: str
    uid: int
    gid: int
    home: str

    @property
    def owner(self) -> tuple[int, int]:
        return self.uid, self.gid


class JobUsers:
    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        *,
        host_users: bool,
        euid: int | None = None,
        server_user: str | None = None,
    ) -> None:
        """``host_users``: the runtime runs jobs on the host as the uid it is given (its
        capability; the process runtime's).  ``euid`` and ``server_user`` are the server's
        (tests give others)."""
        self.config = config
        self.store = store
        self.applies = host_users
        self.euid = os.geteuid() if euid is None else euid
        self.server_user = server_user or _os_user()
        self.fence = PortFence(chain_name(config.data_dir))
        # a chain may be there from an earlier run: taken away when the server ends idle
        self._fenced = self.separates and bool(store.job_uids())
        self._warned_fence = False
        self._fence_lock = asyncio.Lock()

    @property
    def separates(self) -> bool:
        """Whether other users' jobs run as uids of their own here."""
        return self.applies and self.euid == 0 and self.config.job_uids is not None

    def apart(self, owner: str) -> bool:
        """Whether ``owner``'s jobs run as a uid of their own here."""
        return self.separates and owner != self.server_user

    def _why_shared(self) -> str:
        return "the server is not root" if self.euid != 0 else "job_uids is off"

    def describe(self) -> dict[str, str]:
        """``users`` and ``ports``: what `config show` says of them (nothing off the process
        runtime)."""
        if not self.applies:
            return {}
        if self.separates:
            return {
                "users": "each user's jobs run as a uid of their own",
                "ports": self.fence.describe(),
            }
        why = self._why_shared()
        return {
            "users": f"not kept apart: every job runs as {self.server_user} ({why})",
            "ports": f"not kept apart ({why})",
        }

    def refusal(self, owner: str) -> str | None:
        """Why ``owner``'s jobs cannot run here (one line), None when they can."""
        if (
            not self.applies
            or self.separates
            or owner == self.server_user
            or self.config.allow_shared_uid
        ):
            return None
        who = self.server_user
        return (
            f"this server cannot keep users apart ({self._why_shared()}): it runs only "
            f"{who}'s jobs; its admin may run every user's jobs as {who} with "
            "allow_shared_uid = true in server.toml"
        )

    def job_user(self, owner: str) -> JobUser | None:
        """``owner``'s uid (allocated now if they have none), or None: their jobs run as the
        server's user.  RuntimeError_ when the range is used up."""
        if not self.apart(owner):
            return None
        assert self.config.job_uids is not None
        first, last = self.config.job_uids
        uid = self.store.job_uid(owner)
        if uid is None:  # (the host's ids are read only then)
            uid = self.store.allocate_job_uid(owner, first, last, taken=host_ids())
        if uid is None:
            raise RuntimeError_(
                f"no uid left for {owner}'s jobs in job_uids {first}-{last}: "
                "the admin must widen the range",
                reason="ContainerCannotRun",
            )
        return JobUser(owner, uid, uid, str(self.config.homes_dir / owner))

    def owner_ids(self, owner: str) -> tuple[int, int] | None:
        """(uid, gid) that what the server makes for ``owner`` (storage) belongs to; None:
        the server's own."""
        who = self.job_user(owner)
        return None if who is None else who.owner

    async def prepare(self, owner: str) -> JobUser | None:
        """Before a job of ``owner`` starts: RuntimeError_ when it may not (``refusal``);
        their home and storage tree made theirs, their ports fenced (off the event loop)."""
        if (why := self.refusal(owner)) is not None:
            raise RuntimeError_(why, reason="ContainerCannotRun")
        who = self.job_user(owner)
        if who is None:
            return None
        try:
            await asyncio.to_thread(self._prepare_files, who)
        except OSError as e:
            raise RuntimeError_(
                f"cannot prepare {owner}'s home or storage: {e}", reason="ContainerCannotRun"
            ) from None
        self._fenced = True
        if not self.fence.fenced(who.uid):
            async with self._fence_lock:  # (one thread at a time: the others wait here)
                await self._fence(who)
        return who

    async def _fence(self, who: JobUser) -> None:
        """Where iptables cannot work (missing, refused from the first), jobs run with their
        ports not kept apart, and `config show` says so; where it worked before, or is busy
        now, a failure fails the start rather than leave the job's ports open."""
        try:
            await asyncio.to_thread(self.fence.allow, who.uid)
        except FenceError as e:
            if self.fence.why_not is None:
                raise RuntimeError_(
                    f"cannot keep {who.name}'s ports apart now: {e}", reason="ContainerCannotRun"
                ) from None
            if not self._warned_fence:
                log.warning("users' jobs' ports are not kept apart: %s", e)
                self._warned_fence = True

    def _prepare_files(self, who: JobUser) -> None:
        make_home(self.config.homes_dir, who)
        storage.own_tree(storage.user_root(self.config.data_dir, who.name), who.uid, who.gid)

    async def close(self, idle: bool) -> None:
        """The server ends: its port rules go when no job of its users is left (``idle``);
        else they stay, for the jobs that outlive the server."""
        if self._fenced and idle:
            await asyncio.to_thread(self.fence.remove)


def _os_user() -> str:
    """The server's OS user name, as the embedded server names its platform user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (containers): no platform user has it
        return f"uid {os.geteuid()}"


def host_ids() -> Callable[[int], bool]:
    """Whether the host uses a uid (or the gid of the same number): an account, a group, a
    subordinate range (/etc/subuid, /etc/subgid: containers' users).  Read once."""
    used = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    ranges: list[tuple[int, int]] = []
    for path in SUBORDINATE:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                ranges.append((int(parts[1]), int(parts[1]) + int(parts[2]) - 1))
    return lambda uid: uid in used or any(lo <= uid <= hi for lo, hi in ranges)


class HomeError(OSError):
    """homes_dir cannot hold users' homes; the message says why and what to do."""


def make_home(homes_dir: Path, who: JobUser) -> None:
    """``<homes_dir>/<name>``, made 0700 and theirs; one that is not theirs (made for another
    uid) is made theirs again, all of it, as a storage tree is (storage.own_tree: no link
    followed).  homes_dir is made as needed (0711, root's), and it and its parents must be
    open to others (o+x) and replaceable by root only (writable by root alone, or sticky):
    nobody can put a link where a home is made."""
    _check_homes_dir(homes_dir)
    home = homes_dir / who.name
    with contextlib.suppress(FileExistsError):
        os.mkdir(home, 0o700)
    storage.own_tree(home, who.uid, who.gid)


def _check_homes_dir(homes_dir: Path) -> None:
    path = Path("/")
    for part in homes_dir.parts[1:]:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o711)
            os.chmod(path, 0o711)  # (the server's umask is 077)
            st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise HomeError(f"homes_dir {homes_dir}: {path} is not a directory")
        mode = stat.S_IMODE(st.st_mode)
        if not mode & 0o001:
            raise HomeError(
                f"homes_dir {homes_dir}: {path} is not open to other users (mode "
                f"{mode:04o}): their jobs could not reach their homes; chmod o+x "
                "it, or set homes_dir elsewhere in server.toml"
            )
        if st.st_uid != 0 or (mode & 0o022 and not mode & stat.S_ISVTX):
            raise HomeError(
                f"homes_dir {homes_dir}: {path} could be replaced by another user "
                "than root (its owner or mode): set homes_dir elsewhere"
            )
