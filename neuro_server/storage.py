"""Each user's storage tree on the server: ``<data_dir>/storage/<user>/``.

Paths come from users (URIs ``storage:path`` or ``storage://CLUSTER/USER/path``, and API URL
paths) and must never leave the user's tree: ``resolve`` refuses ``..`` components, NUL bytes
and backslash tricks, and checks the real path (symlinks followed) is inside the tree, so a
symlink a job planted pointing out of it leads nowhere.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any


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
        raise StorageError(f"invalid path {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise StorageError(f"invalid path {path!r}: '..' is not allowed")
    return PurePosixPath(*parts) if parts else PurePosixPath()


def resolve(root: Path, path: str, *, must_exist: bool = False) -> Path:
    """The real location of ``path`` in the tree at ``root``; StorageError if it would leave
    the tree (also through symlinks) or, with ``must_exist``, does not exist."""
    rel = clean(path)
    target = root / rel
    real_root = root.resolve()
    # the deepest existing ancestor must really be inside the tree
    probe = target
    while not os.path.lexists(probe) and probe != root:
        probe = probe.parent
    real = probe.resolve()
    if real != real_root and real_root not in real.parents:
        raise StorageError(f"invalid path {path!r}: it leads out of your storage", 403)
    if must_exist and not os.path.lexists(target):
        raise StorageError(f"no such file or directory: {'/' + str(rel) if str(rel) != '.' else '/'}", 404)
    if os.path.lexists(target) and os.path.islink(target):
        real_t = target.resolve()
        if real_t != real_root and real_root not in real_t.parents:
            raise StorageError(f"invalid path {path!r}: it leads out of your storage", 403)
    return target


def status(path: Path, root: Path) -> dict[str, Any]:
    st = os.stat(path)
    rel = path.relative_to(root).as_posix()
    return {
        "path": "" if rel == "." else rel,
        "type": "DIRECTORY" if stat.S_ISDIR(st.st_mode) else "FILE",
        "length": 0 if stat.S_ISDIR(st.st_mode) else st.st_size,
        "modificationTime": int(st.st_mtime),
        "permission": "write",
    }


def listing(path: Path, root: Path) -> list[dict[str, Any]]:
    if not path.is_dir():
        return [status(path, root)]
    out = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        p = Path(entry.path)
        try:
            resolve(root, p.relative_to(root).as_posix())
            out.append({**status(p, root), "path": entry.name})
        except (StorageError, OSError):
            continue  # a link out of the tree, or gone meanwhile: not listed
    return out


def uri_path(uri: str, cluster: str, user: str) -> str:
    """The path in ``user``'s tree that a storage URI names: ``storage:path``,
    ``storage:/path``, or ``storage://CLUSTER/USER/path``."""
    if not uri.startswith("storage:"):
        raise StorageError(f"not a storage URI (storage:PATH): {uri!r}")
    rest = uri[len("storage:"):]
    if rest.startswith("//"):
        parts = rest[2:].split("/", 2)
        if parts[0] != cluster:
            raise StorageError(f"{uri!r} is not on cluster {cluster!r}")
        if len(parts) < 2 or parts[1] != user:
            raise StorageError(f"{uri!r} is not in your storage (storage://{cluster}/{user}/...)", 403)
        return parts[2] if len(parts) > 2 else ""
    return rest
