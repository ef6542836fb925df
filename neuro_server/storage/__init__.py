"""Each user's storage tree on the server: ``<data_dir>/storage/<user>/``.

Paths come from users (URIs ``storage:path`` or ``storage://CLUSTER/USER/path``, and API URL
paths) and must never leave the user's tree: ``clean`` refuses ``..`` components, NUL bytes,
backslash tricks and names no file system takes (over 255 bytes, lone surrogates).

The storage API's operations (``file_status``, ``list_status``, ``open_file``, ``make_dirs``,
``remove``, ``Upload``) block, so the handlers run them in threads, never on the event loop.
They find a path with ``locate``: one name at a time, each opened relative to the descriptor
of its parent with O_NOFOLLOW, so a job swapping a directory of the tree for a link meanwhile
cannot lead the server out of it (nothing is checked by path string, then used by string).

Symbolic links (jobs make them) are handled like this: a relative one that stays inside the
tree is followed, as a file system would (``storage:latest/model.pt`` with ``latest ->
run-7``); an absolute one, or one that climbs out of the tree, is a 403; a dangling one is a
404, like a missing file.  DELETE removes a link itself and CREATE replaces it: never what it
points to.

Only directories and regular files are served.  LIST_STATUS leaves everything else out (FIFOs,
sockets, devices, links that dangle or lead out); GET_FILE_STATUS and OPEN of one answer 400
without reading it (OPEN opens with O_NONBLOCK | O_NOFOLLOW and checks fstat, so a FIFO never
blocks anything); DELETE removes one.  OSErrors become answers in one place, ``os_error``:
a client's mistake is a 4xx, a full disk a 507, never a 500.

A per-user quota (``storage_quota`` in server.toml) is kept by ``Usage``: the tree is walked
(in a thread) at most once a minute and the API's own writes keep the count between walks.

``volume_exists`` checks a job volume's source (neuro_server/pathsafe.py pins them).

Where users' jobs run as uids of their own (jobusers.py), a user's tree is theirs: made theirs
once (``own_tree``), and what the API makes there (``owner``: MKDIRS, CREATE, volumes' new
directories) is given to them as it is made, so their jobs can write to their volumes.

    paths.py       user paths and URIs as paths in a tree; OSErrors as answers
    tree.py        ``locate``: a path found descriptor by descriptor; trees given to users
    operations.py  the API's operations (status, list, open, mkdirs, remove, Upload)
    quota.py       ``Usage``: the per-user quota
"""

from __future__ import annotations

from .operations import (
    Upload,
    file_status,
    list_status,
    make_dirs,
    make_new_dirs,
    open_file,
    remove,
    remove_new_dirs,
)
from .paths import (
    MAX_LINKS,
    NAME_MAX,
    PART_PREFIX,
    PATH_MAX,
    Owner,
    StorageError,
    clean,
    os_error,
    shown,
    uri_path,
    user_root,
)
from .quota import QuotaExceeded, Usage, human_size, tree_size, usage_of
from .tree import Loc, give_fd, locate, own_tree, volume_exists

__all__ = [
    "MAX_LINKS",
    "NAME_MAX",
    "PART_PREFIX",
    "PATH_MAX",
    "Loc",
    "Owner",
    "QuotaExceeded",
    "StorageError",
    "Upload",
    "Usage",
    "clean",
    "file_status",
    "give_fd",
    "human_size",
    "list_status",
    "locate",
    "make_dirs",
    "make_new_dirs",
    "open_file",
    "os_error",
    "own_tree",
    "remove",
    "remove_new_dirs",
    "shown",
    "tree_size",
    "uri_path",
    "usage_of",
    "user_root",
    "volume_exists",
]
