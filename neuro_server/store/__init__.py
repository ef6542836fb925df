"""SQLite store (WAL, synchronous=FULL): users, tokens, jobs and their status transitions.

All calls are short and synchronous; the server calls them from the event loop.

    schema.py  the schema as an ordered list of migrations (PRAGMA user_version)
    base.py    the connection, transactions, how times are stored
    jobs.py    jobs, tags, transitions (a job's request: encoding.py)
    users.py   users, tokens, the uids jobs run as
    owned.py   secrets, disks, shares
"""

from __future__ import annotations

from ..model import ACTIVE, FINISHED, JobRecord, JobStatus, Transition, now
from .base import parse_ts, ts
from .jobs import JobsStore
from .owned import DiskRecord, OwnedStore
from .users import TokenRecord, UsersStore

__all__ = [
    "ACTIVE",
    "FINISHED",
    "DiskRecord",
    "JobRecord",
    "JobStatus",
    "Store",
    "TokenRecord",
    "Transition",
    "now",
    "parse_ts",
    "ts",
]


class Store(JobsStore, UsersStore, OwnedStore):
    """The server's store: one SQLite connection, every table."""
