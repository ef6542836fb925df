"""The store's connection: SQLite in WAL mode, synchronous=FULL, migrated when opened."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from ..model import now
from . import schema

__all__ = ["StoreBase", "now", "parse_ts", "ts"]


def ts(dt: datetime | None) -> str | None:
    """Times are stored as fixed-width ISO-8601 UTC strings, so that they sort as text."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


class StoreBase:
    """The connection every part of the store (jobs, users, secrets...) works on."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        schema.migrate(self._db)

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *a: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
