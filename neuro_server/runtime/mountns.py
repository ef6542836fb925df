"""A job's own view of the host's files, for process-runtime jobs with volumes or secret files.

    enter_view(mounts, files, staging)   # in the job's child, after fork, before exec

The job gets a mount namespace of its own (and, when the supervisor is not root, a user
namespace that maps its own uid and gid only, so that it may mount there; unprivileged user
namespaces must be allowed then).  Its view is the host's tree, with each volume bound at its
path (read-only when asked: enforced by the mount, not advice) and each secret file there as a
read-only file whose content lives only in memory (a tmpfs), never on the host's disk.

Nothing is created on the host.  A path the host lacks is made in the job's view: the nearest
existing directory above it is *mirrored* there (a tmpfs holding the host directory's entries,
each one bound to the host's own), so the job still reads and writes the host's files and
subdirectories there; only new entries made directly in a mirrored directory stay in the job's
view.  The root is always mirrored.  A path inside a writable volume is made in the volume,
as Docker does.  The namespace, with its mounts, goes away with the job's last process.

``enter_view`` pivots the job's root onto the mirrored tree, so a command entering the
namespace later (exec: ``enter``) sees the same view.  Standard library only: ctypes for the
system calls.
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat

from .. import pathsafe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .base import Mount

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_UNBINDABLE, MS_PRIVATE, MS_RELATIME = 1 << 17, 1 << 18, 1 << 21
MNT_DETACH = 2
# pivot_root has no libc wrapper: its system call number, by architecture
SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "aarch64": 41,
    "arm64": 41,
    "riscv64": 41,
    "ppc64le": 203,
    "ppc64": 203,
    "s390x": 217,
    "i686": 217,
    "i386": 217,
    "armv7l": 218,
}
MAX_MIRROR = 4096  # entries: a larger directory is not mirrored (one bind mount each)
OLD_ROOT = ".neuro-old-root"
FILES = ".neuro-files"
# the flags of a mount that a read-only remount must keep (in a user namespace they are locked)
_KEEP = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)


class ViewError(OSError):
    """The job's view could not be made; the message names the path and why."""


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise ViewError(f"{what}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    rc = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    _check(rc, f"mount {target}")


def _bind_fd(fd: int, target: str) -> None:
    # recursive: a bind of a tree holding locked mounts (user namespaces) must take them along
    _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)


def _remount_ro(target: str) -> None:
    flags = os.statvfs(target).f_flag
    keep = 0
    for st_flag, ms_flag in _KEEP:
        if flags & st_flag:
            keep |= ms_flag
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _pivot_root(new_root: str, put_old: str) -> None:
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise ViewError(f"pivot_root: not known on {platform.machine()}")
    _check(_libc.syscall(number, new_root.encode(), put_old.encode()), "pivot_root")


def _unshare(userns: bool) -> None:
    uid, gid = os.getuid(), os.getgid()
    _check(
        _libc.unshare(CLONE_NEWNS | (CLONE_NEWUSER if userns else 0)),
        "a mount namespace" + (" (in a user namespace)" if userns else ""),
    )
    if userns:  # map only ourselves: the job keeps its uid, and gains no one else's
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError as e:
            raise ViewError(f"user namespace maps: {e.strerror}") from None
    # our mounts stay ours, and the host's later ones stay out
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


class _View:
    """The tree being built, once the root is pivoted onto it."""

    def __init__(self) -> None:
        self.ours: set[str] = {"/"}  # directories on a tmpfs of ours: entries may be made there
        self.volumes: list[tuple[str, bool]] = []  # (path, read-only) bound so far
        self.read_only_mirrors: list[str] = []

    def mirror(self, src_fd: int, target: str) -> None:
        """Put the entries of the directory ``src_fd`` into the (empty) directory
        ``target``: sub-directories and files bound to the host's, links copied."""
        names = os.listdir(src_fd)
        if len(names) > MAX_MIRROR:
            raise ViewError(
                f"{target} has {len(names)} entries on this host, too many to "
                "mirror: choose a mount path whose directory exists or is new"
            )
        for name in names:
            path = os.path.join(target, name)
            try:
                st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(name, dir_fd=src_fd), path)
                    continue
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            except FileNotFoundError:
                continue  # gone meanwhile
            except OSError as e:
                raise ViewError(f"{path}: {e.strerror}") from None
            try:
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(path)
                else:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
                _bind_fd(fd, path)
            finally:
                os.close(fd)

    def mirror_in_place(self, path: str) -> None:
        """Cover the host's directory ``path`` with a tmpfs holding its entries."""
        src = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.fstat(src)
            read_only = bool(os.fstatvfs(src).f_flag & os.ST_RDONLY)
            mode = f"mode={stat.S_IMODE(st.st_mode):o}"
            try:
                _mount(
                    "tmpfs",
                    path,
                    "tmpfs",
                    MS_NOSUID | MS_NODEV,
                    f"{mode},uid={st.st_uid},gid={st.st_gid}",
                )
            except ViewError:  # an owner not mapped in our user namespace
                _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, mode)
            self.mirror(src, path)
        finally:
            os.close(src)
        self.ours.add(path)
        if read_only:
            self.read_only_mirrors.append(path)

    def place(self, dst: str, directory: bool) -> str:
        """Make sure ``dst`` exists in the view as a directory (or a file); return it with
        links resolved.  Whatever is missing is made without touching the host."""
        parts = [p for p in dst.split("/") if p]
        cur = "/"
        i = 0
        while i < len(parts):
            nxt = os.path.join(cur, parts[i])
            if not os.path.exists(nxt):
                if os.path.islink(nxt):
                    raise ViewError(f"{nxt} is a link to a path that does not exist")
                break
            cur, i = nxt, i + 1
        base = os.path.realpath(cur)
        if i == len(parts):  # there already: bind over it
            if os.path.isdir(base) != directory:
                what = "a directory" if os.path.isdir(base) else "a file"
                raise ViewError(f"{dst} is {what} on this host")
            return base
        if not os.path.isdir(base):
            raise ViewError(f"{cur} is not a directory on this host")
        if base not in self.ours and not self._in_writable_volume(base):
            self.mirror_in_place(base)
        path = base
        for j, part in enumerate(parts[i:]):
            path = os.path.join(path, part)
            last = j == len(parts) - i - 1
            try:
                if last and not directory:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
                else:
                    os.mkdir(path, 0o755)
                    self.ours.add(path)
            except OSError as e:
                raise ViewError(f"{path}: {e.strerror}") from None
        return path

    def _in_writable_volume(self, path: str) -> bool:
        for vol, read_only in reversed(self.volumes):  # the innermost volume holding it
            if path == vol or path.startswith(vol.rstrip("/") + "/"):
                return not read_only
        return False


def enter_view(
    mounts: Sequence[Mount],
    files: Sequence[tuple[str, bytes]],
    staging: str,
    userns: bool | None = None,
    owner: tuple[int, int] | None = None,
) -> None:
    """Give this process (and what it execs) its own view: ``mounts`` the volumes, ``files``
    (path in the job, content), read-only (0400, ``owner``'s: the uid and gid the job will
    run as, where that is not ours).  ``staging`` is an empty directory of the host's (the
    job's directory) that holds the view's root while it is built; the host never sees
    anything there.  Raises ViewError, saying what failed.

    Each volume is opened here, beneath its tree with no link followed (pathsafe), and bound
    from that open file: a job that renamed a directory of the tree for a link since the
    server checked it makes the start fail, never mounts what the link points to."""
    if userns is None:
        userns = os.geteuid() != 0
    _unshare(userns)
    os.makedirs(staging, exist_ok=True)
    _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    # unbindable: the host's tree bound into it below comes without it (no copies of itself)
    _mount(None, staging, None, MS_UNBINDABLE)
    # what the volumes are, opened while the host's paths still mean the host's files
    sources = []
    try:
        for m in mounts:
            sources.append((_open_volume(m), os.path.normpath(m.dst), m.read_only))
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        view = _View()
        try:
            view.mirror(root, staging)
        finally:
            os.close(root)
        for name in (OLD_ROOT, FILES):
            if os.path.lexists(os.path.join(staging, name)):
                raise ViewError(f"/{name} exists on this host")
        os.mkdir(os.path.join(staging, OLD_ROOT))
        _pivot_root(staging, os.path.join(staging, OLD_ROOT))
        os.chdir("/")
        _mount(None, "/", None, MS_PRIVATE)  # files on it may be bound now

        items: list[tuple[str, int, bytes | None, bool]] = [
            (dst, fd, None, ro) for fd, dst, ro in sources
        ]
        items += [(os.path.normpath(dst), -1, content, True) for dst, content in files]
        items.sort(key=lambda item: item[0].count("/"))  # parents before what is inside them
        if files:
            os.mkdir(f"/{FILES}", 0o700)
        for n, (dst, fd, content, read_only) in enumerate(items):
            if content is not None:  # a secret file: in memory only, read-only
                fd = _secret_file(f"/{FILES}/{n}", content, owner)
                directory = False
            else:
                directory = stat.S_ISDIR(os.fstat(fd).st_mode)
            try:
                target = view.place(dst, directory)
                _bind_fd(fd, target)
                view.ours.discard(target)  # (a directory it made) the volume's now
                if read_only:
                    _remount_ro(target)
            finally:
                if content is not None:
                    os.close(fd)
            view.volumes.append((target, read_only))
        for path in view.read_only_mirrors:
            _remount_ro(path)
        # the host's own tree goes last: the volumes' mounts had to be there to be bound
        _check(_libc.umount2(f"/{OLD_ROOT}".encode(), MNT_DETACH), "detach the host's root")
        os.rmdir(f"/{OLD_ROOT}")
        if files:
            for name in os.listdir(f"/{FILES}"):
                os.unlink(f"/{FILES}/{name}")  # the bound files stay
            os.rmdir(f"/{FILES}")
    finally:
        for fd, _dst, _ro in sources:
            os.close(fd)


def _open_volume(m: Mount) -> int:
    """An O_PATH fd of the volume: its path beneath its tree's root, no link followed."""
    try:
        return pathsafe.open_under(m.root, m.path, directory=False)
    except OSError as e:
        raise ViewError(f"volume source for {m.dst}: {e.strerror}") from None


def _secret_file(path: str, content: bytes, owner: tuple[int, int] | None = None) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def enter(fds: Sequence[tuple[int, int]]) -> None:
    """Join a job's namespaces (exec): ``fds`` are (open /proc/PID/ns/* file, CLONE_NEW*),
    the user namespace first."""
    for fd, nstype in fds:
        _check(_libc.setns(fd, nstype), "enter the job's namespaces")


def namespace_fds(pid: int, userns: bool) -> list[tuple[int, int]]:
    """Open the namespaces of the job's process ``pid``, for ``enter``."""
    kinds = ([("user", CLONE_NEWUSER)] if userns else []) + [("mnt", CLONE_NEWNS)]
    out = []
    try:
        for name, nstype in kinds:
            out.append((os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), nstype))
    except OSError:
        for fd, _ in out:
            os.close(fd)
        raise
    return out


def why_unsupported() -> str | None:
    """Why this host cannot give jobs a view of their own (a cheap guess: the job's start
    says for sure); None when it likely can."""
    if platform.system() != "Linux":
        return "volumes on the process runtime need Linux mount namespaces"
    if platform.machine() not in SYS_PIVOT_ROOT:
        return f"volumes on the process runtime are not supported on {platform.machine()}"
    if os.geteuid() == 0:
        try:
            with open("/proc/self/status") as f:
                caps = next(line for line in f if line.startswith("CapEff:"))
            if int(caps.split()[1], 16) & (1 << 21):  # CAP_SYS_ADMIN
                return None
        except (OSError, StopIteration, ValueError):
            return None
        return "volumes on the process runtime need CAP_SYS_ADMIN (mount namespaces)"
    for path, bad in (
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/user/max_user_namespaces", "0"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
    ):
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    return (
                        "volumes on the process runtime need unprivileged user namespaces "
                        f"on this host ({path.removeprefix('/proc/sys/').replace('/', '.')} "
                        f"is {bad}), or a server running as root"
                    )
        except OSError:
            pass
    return None
