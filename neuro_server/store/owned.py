"""What users own beside jobs: secrets, disks, and the shares of their jobs with others."""

from __future__ import annotations

import dataclasses
import sqlite3

from .base import StoreBase, now, ts


@dataclasses.dataclass(frozen=True)
class DiskRecord:
    id: str
    owner: str
    name: str | None
    size: int  # bytes
    created_at: str  # ISO-8601 UTC, as stored
    last_usage: str | None


def _disk(row: sqlite3.Row) -> DiskRecord:
    return DiskRecord(
        id=row["id"],
        owner=row["owner"],
        name=row["name"],
        size=row["size"],
        created_at=row["created_at"],
        last_usage=row["last_usage"],
    )


class OwnedStore(StoreBase):
    # -- secrets (each user's own; nobody else can list, read or use them) ---------------
    def put_secret(self, owner: str, key: str, value: bytes) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO secrets(owner, key, value, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(owner, key) DO UPDATE SET value=excluded.value",
                (owner, key, value, ts(now())),
            )

    def secret(self, owner: str, key: str) -> bytes | None:
        row = self._db.execute(
            "SELECT value FROM secrets WHERE owner=? AND key=?", (owner, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def secret_keys(self, owner: str) -> list[str]:
        return [
            r[0]
            for r in self._db.execute(
                "SELECT key FROM secrets WHERE owner=? ORDER BY key", (owner,)
            )
        ]

    def delete_secret(self, owner: str, key: str) -> bool:
        with self._tx():
            cur = self._db.execute("DELETE FROM secrets WHERE owner=? AND key=?", (owner, key))
        return cur.rowcount == 1

    # -- disks --------------------------------------------------------------------------------
    def add_disk(self, disk_id: str, owner: str, name: str | None, size: int) -> bool:
        """False when the owner already has a disk with that name."""
        try:
            with self._tx():
                self._db.execute(
                    "INSERT INTO disks(id, owner, name, size, created_at) VALUES (?, ?, ?, ?, ?)",
                    (disk_id, owner, name, size, ts(now())),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def disks(self, owner: str) -> list[DiskRecord]:
        return [
            _disk(r)
            for r in self._db.execute(
                "SELECT * FROM disks WHERE owner=? ORDER BY created_at", (owner,)
            )
        ]

    def disk(self, owner: str, ref: str) -> DiskRecord | None:
        """The owner's disk with this id or name."""
        row = self._db.execute(
            "SELECT * FROM disks WHERE owner=? AND (id=? OR name=?)", (owner, ref, ref)
        ).fetchone()
        return None if row is None else _disk(row)

    def touch_disk(self, disk_id: str) -> None:
        with self._tx():
            self._db.execute("UPDATE disks SET last_usage=? WHERE id=?", (ts(now()), disk_id))

    def delete_disk(self, disk_id: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM disks WHERE id=?", (disk_id,))

    # -- sharing: another user's access to a job (read < write < manage) ------------------
    def share(self, job_id: str, user: str, action: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO shares(job_id, user, action) VALUES (?, ?, ?) "
                "ON CONFLICT(job_id, user) DO UPDATE SET action=excluded.action",
                (job_id, user, action),
            )

    def unshare(self, job_id: str, user: str) -> bool:
        with self._tx():
            cur = self._db.execute("DELETE FROM shares WHERE job_id=? AND user=?", (job_id, user))
        return cur.rowcount == 1

    def share_action(self, job_id: str, user: str) -> str | None:
        row = self._db.execute(
            "SELECT action FROM shares WHERE job_id=? AND user=?", (job_id, user)
        ).fetchone()
        return None if row is None else str(row[0])

    def shares(self, job_id: str) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in self._db.execute(
                "SELECT user, action FROM shares WHERE job_id=? ORDER BY user", (job_id,)
            )
        ]
