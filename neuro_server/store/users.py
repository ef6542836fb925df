"""Users, their API tokens, and the uids their jobs run as."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from datetime import datetime

from .base import StoreBase, now, parse_ts, ts


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    jti: str
    user: str
    created_at: datetime
    expires_at: datetime | None  # None: never
    revoked_at: datetime | None
    revoked: bool
    note: str

    def expired(self, at: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (at or now())


def _token(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        jti=row["jti"],
        user=row["user"],
        created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=parse_ts(row["expires_at"]),
        revoked_at=parse_ts(row["revoked_at"]),
        revoked=bool(row["revoked"]),
        note=row["note"],
    )


class UsersStore(StoreBase):
    def add_user(self, name: str) -> bool:
        cur = self._db.execute(
            "INSERT OR IGNORE INTO users(name, created_at) VALUES (?, ?)", (name, ts(now()))
        )
        return cur.rowcount == 1

    def user_exists(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone() is not None

    def users(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM users ORDER BY name")]

    def job_uid(self, user: str) -> int | None:
        row = self._db.execute("SELECT uid FROM job_uids WHERE user=?", (user,)).fetchone()
        return None if row is None else int(row[0])

    def job_uids(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._db.execute("SELECT user, uid FROM job_uids")}

    def allocate_job_uid(
        self, user: str, first: int, last: int, taken: Callable[[int], bool] = lambda uid: False
    ) -> int | None:
        """``user``'s uid, allocated now if they have none: the lowest of ``first``-``last``
        above every uid allocated there so far (none is ever given twice) that ``taken``
        does not refuse (an account of the host's).  None when the range is used up."""
        with self._tx():
            row = self._db.execute("SELECT uid FROM job_uids WHERE user=?", (user,)).fetchone()
            if row is not None:
                return int(row[0])
            top = self._db.execute(
                "SELECT max(uid) FROM job_uids WHERE uid BETWEEN ? AND ?", (first, last)
            ).fetchone()[0]
            uid = first if top is None else int(top) + 1
            while uid <= last and taken(uid):
                uid += 1
            if uid > last:
                return None
            self._db.execute(
                "INSERT INTO job_uids(user, uid, created_at) VALUES (?, ?, ?)",
                (user, uid, ts(now())),
            )
        return uid

    def add_token(
        self, jti: str, user: str, *, expires_at: datetime | None = None, note: str = ""
    ) -> None:
        self._db.execute(
            "INSERT INTO tokens(jti, user, created_at, expires_at, note) VALUES (?, ?, ?, ?, ?)",
            (jti, user, ts(now()), ts(expires_at), note),
        )

    def token(self, jti: str) -> TokenRecord | None:
        """The token with this id, while its user exists.  One primary-key lookup: the server
        asks on every request, so that a revocation or removal by another process (the
        ``neuro-server`` admin commands) counts at once."""
        row = self._db.execute(
            "SELECT t.* FROM tokens t JOIN users u ON u.name=t.user WHERE t.jti=?", (jti,)
        ).fetchone()
        return None if row is None else _token(row)

    def tokens(self, user: str) -> list[TokenRecord]:
        return [
            _token(r)
            for r in self._db.execute(
                "SELECT * FROM tokens WHERE user=? ORDER BY created_at, jti", (user,)
            )
        ]

    def token_user(self, jti: str) -> str | None:
        tok = self.token(jti)
        return None if tok is None or tok.revoked else tok.user

    def revoke_token(self, jti: str) -> bool:
        """False when there is no such token or it was revoked already."""
        with self._tx():
            cur = self._db.execute(
                "UPDATE tokens SET revoked=1, revoked_at=? WHERE jti=? AND NOT revoked",
                (ts(now()), jti),
            )
        return cur.rowcount == 1

    def revoke_tokens(self, user: str) -> int:
        with self._tx():
            return self._db.execute(
                "UPDATE tokens SET revoked=1, revoked_at=? WHERE user=? AND NOT revoked",
                (ts(now()), user),
            ).rowcount

    def remove_user(self, name: str) -> bool:
        """Remove a user with their tokens, their secrets and what others shared with them, in
        one transaction (their jobs' records, storage and disks stay: see ``neuro-server
        remove-user``).  False when there is no such user."""
        with self._tx():
            if self._db.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone() is None:
                return False
            self._db.execute("DELETE FROM tokens WHERE user=?", (name,))
            self._db.execute("DELETE FROM secrets WHERE owner=?", (name,))
            self._db.execute("DELETE FROM shares WHERE user=?", (name,))
            self._db.execute("DELETE FROM users WHERE name=?", (name,))
        return True
