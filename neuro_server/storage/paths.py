"""Paths users give (URIs, API URL paths) as paths inside their tree, and OSErrors of
storage operations as answers."""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath

Owner = tuple[int, int] | None  # (uid, gid) what is made belongs to; None: the server's


NAME_MAX = 255  # bytes in one name (ext4, xfs, tmpfs...)
PATH_MAX = 4096  # bytes in a path
MAX_LINKS = 40  # links followed in one lookup, as the kernel allows
PART_PREFIX = ".neuro-upload-"  # an upload in progress (not counted: it is reserved)


class StorageError(Exception):
    """A bad path or operation; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def user_root(data_dir: Path, user: str) -> Path:
    root = data_dir / "storage" / user
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def clean(path: str) -> PurePosixPath:
    """A user-given path inside a tree, as a relative path ('' is the tree itself)."""
    if "\0" in path or "\\" in path:
        raise StorageError(f"invalid path {short(path)}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise StorageError(f"invalid path {short(path)}: '..' is not allowed")
    for p in parts:
        try:
            size = len(os.fsencode(p))
        except UnicodeEncodeError:
            raise StorageError(f"invalid path {short(path)}: it is not valid UTF-8") from None
        if size > NAME_MAX:
            raise StorageError(
                f"invalid path {short(path)}: a name of {size} bytes (at most "
                f"{NAME_MAX} bytes a name)"
            )
    if sum(len(os.fsencode(p)) + 1 for p in parts) > PATH_MAX:
        raise StorageError(f"invalid path {short(path)}: longer than {PATH_MAX} bytes")
    return PurePosixPath(*parts) if parts else PurePosixPath()


def short(path: str) -> str:
    """``path`` quoted for a message, and cut: a message is one readable line."""
    text = repr(path)
    return text if len(text) <= 80 else text[:64] + "...'"


def shown(path: str) -> str:
    """How messages name a path of the tree: ``/a/b`` (cut when long)."""
    text = "/" + "/".join(p for p in path.split("/") if p not in ("", "."))
    return text if len(text) <= 80 else text[:64] + "..."


def os_error(e: OSError, path: str) -> StorageError:
    """The one place an OSError of a storage operation on ``path`` becomes an answer: what a
    client did wrong is a 4xx, a full disk a 507, and only the unexplained is a 500."""
    where = shown(path)
    code = e.errno
    if code == errno.ENOENT:
        return StorageError(f"no such file or directory: {where}", 404)
    if code == errno.ENOTDIR:
        return StorageError(f"{where}: a part of the path is a file, not a directory", 409)
    if code == errno.EISDIR:
        return StorageError(f"{where} is a directory", 409)
    if code in (errno.EEXIST, errno.ENOTEMPTY):
        return StorageError(
            f"{where} is a directory that is not empty (remove it recursively)"
            if code == errno.ENOTEMPTY
            else f"{where} already exists",
            409,
        )
    if code == errno.ENAMETOOLONG:
        return StorageError(
            f"{where}: name too long (at most {NAME_MAX} bytes a name, {PATH_MAX} a path)", 400
        )
    if code == errno.ELOOP:
        return StorageError(
            f"{where}: more than {MAX_LINKS} symbolic links, or one that "
            "appeared while the path was being used (try again)",
            409,
        )
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"the server's disk is full: {where} was not written", 507)
    if code in (errno.EACCES, errno.EPERM):
        return StorageError(f"{where}: permission denied", 403)
    if code in (errno.EBUSY, errno.EXDEV, errno.EMLINK, errno.ETXTBSY):
        return StorageError(f"{where}: {e.strerror}", 409)
    if code == errno.EINVAL:
        return StorageError(f"{where}: {e.strerror}", 400)
    return StorageError(f"{where}: {e.strerror or e}", 500)


def uri_path(uri: str, cluster: str, user: str) -> str:
    """The path in ``user``'s tree that a storage URI names: ``storage:path``,
    ``storage:/path``, or ``storage://CLUSTER/USER/path``."""
    if not uri.startswith("storage:"):
        raise StorageError(f"not a storage URI (storage:PATH): {uri!r}")
    rest = uri[len("storage:") :]
    if rest.startswith("//"):
        parts = rest[2:].split("/", 2)
        if parts[0] != cluster:
            raise StorageError(f"{uri!r} is not on cluster {cluster!r}")
        if len(parts) < 2 or parts[1] != user:
            raise StorageError(
                f"{uri!r} is not in your storage (storage://{cluster}/{user}/...)", 403
            )
        return parts[2] if len(parts) > 2 else ""
    return rest
