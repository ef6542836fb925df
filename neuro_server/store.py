"""SQLite store (WAL, synchronous=FULL): users, tokens, jobs and their status transitions.

All calls are short and synchronous; the server calls them from the event loop.  Times are
stored as fixed-width ISO-8601 UTC strings so that they sort as text.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS shares (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    PRIMARY KEY (job_id, user)
);
CREATE TABLE IF NOT EXISTS disks (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    last_usage TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS disks_owner_name ON disks(owner, name);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
-- the uid (and gid) each user's jobs run as on a root server's process runtime; kept when
-- the user is removed: a uid never passes to another user (files it owns may remain)
CREATE TABLE IF NOT EXISTS job_uids (
    user TEXT PRIMARY KEY,
    uid INTEGER NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT,  -- NULL: it never expires
    revoked_at TEXT,
    note TEXT NOT NULL DEFAULT ''  -- what it was issued for (add-user, token, embedded...)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    exit_code INTEGER,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    restarts INTEGER NOT NULL DEFAULT 0,
    life_span REAL,
    kill_reason TEXT,
    limits TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL,
    devices TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    hostname TEXT NOT NULL DEFAULT '',  -- the name its owner's other jobs reach it by
    run_seconds REAL NOT NULL DEFAULT 0,  -- run time of the runs (segments) that ended
    running_since TEXT,  -- start of the current run segment; NULL while not running
    warned_life_span REAL  -- the life span its life-span signal was sent for
);
CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs(owner, created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS job_tags (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    tag TEXT NOT NULL,
    PRIMARY KEY (job_id, tag)
);
CREATE INDEX IF NOT EXISTS job_tags_tag ON job_tags(tag);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    exit_code INTEGER,
    time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_job ON transitions(job_id, seq);
"""

ACTIVE = ("pending", "suspended", "running")
FINISHED = ("succeeded", "failed", "cancelled")


def now() -> datetime:
    return datetime.now(timezone.utc)


def ts(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_ts(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


@dataclasses.dataclass(frozen=True)
class Transition:
    status: str
    reason: str
    description: str
    exit_code: int | None
    time: datetime


@dataclasses.dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str
    name: str | None
    status: str
    reason: str
    description: str
    exit_code: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    restarts: int
    life_span: float | None  # seconds of run time; None = no limit
    kill_reason: str | None
    limits: str
    spec: dict[str, Any]  # the validated request: image, command, env, preset, resources...
    tags: tuple[str, ...]
    devices: tuple[int, ...] = ()  # the GPUs assigned to it (NVML indices)
    address: str = ""  # where other jobs reach it while it runs
    hostname: str = ""  # ... and by which name (NAME--OWNER), where the runtime resolves names
    run_seconds: float = 0.0  # run time of the segments that ended (not suspended, not between restarts)
    running_since: datetime | None = None  # start of the current segment
    warned_life_span: float | None = None  # the life span its warning signal was sent for

    def life_span_warning_due(self, at: datetime | None = None) -> float | None:
        """Seconds until its life-span signal is due (<= 0: now); None when it has none, or
        was sent for this life span (a bump re-arms it)."""
        warn = self.spec.get("life_span_signal")
        if not warn or self.life_span is None or self.warned_life_span == self.life_span:
            return None
        return self.life_span - float(warn["seconds_before"]) - self.run_time(at)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def run_time(self, at: datetime | None = None) -> float:
        """Seconds it has run: not while pending, suspended or waiting to restart (the life
        span counts this, as the platform does)."""
        if self.running_since is None:
            return self.run_seconds
        end = self.finished_at or at or now()
        return self.run_seconds + max(0.0, (end - self.running_since).total_seconds())


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
        jti=row["jti"], user=row["user"], created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=parse_ts(row["expires_at"]), revoked_at=parse_ts(row["revoked_at"]),
        revoked=bool(row["revoked"]), note=row["note"])


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "devices" not in columns:  # a database from before GPU assignment
            self._db.execute("ALTER TABLE jobs ADD COLUMN devices TEXT NOT NULL DEFAULT ''")
        if "address" not in columns:  # ... and from before internal host names
            self._db.execute("ALTER TABLE jobs ADD COLUMN address TEXT NOT NULL DEFAULT ''")
        if "hostname" not in columns:  # ... and from before named internal host names
            self._db.execute("ALTER TABLE jobs ADD COLUMN hostname TEXT NOT NULL DEFAULT ''")
        if "run_seconds" not in columns:  # ... and from before run time was counted by segment
            self._db.execute("ALTER TABLE jobs ADD COLUMN run_seconds REAL NOT NULL DEFAULT 0")
            self._db.execute("ALTER TABLE jobs ADD COLUMN running_since TEXT")
            self._db.execute("UPDATE jobs SET running_since=started_at WHERE status='running'")
        if "warned_life_span" not in columns:  # ... and from before life-span signals
            self._db.execute("ALTER TABLE jobs ADD COLUMN warned_life_span REAL")
        token_columns = {r[1] for r in self._db.execute("PRAGMA table_info(tokens)")}
        if "expires_at" not in token_columns:  # a database from before token expiry
            self._db.execute("ALTER TABLE tokens ADD COLUMN expires_at TEXT")
            self._db.execute("ALTER TABLE tokens ADD COLUMN revoked_at TEXT")
            self._db.execute("ALTER TABLE tokens ADD COLUMN note TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self._db.close()

    # -- transactions -------------------------------------------------------------------
    def _tx(self) -> "_Tx":
        return _Tx(self._db)

    # -- users and tokens ---------------------------------------------------------------
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

    def allocate_job_uid(self, user: str, first: int, last: int,
                         taken: Callable[[int], bool] = lambda uid: False) -> int | None:
        """``user``'s uid, allocated now if they have none: the lowest of ``first``-``last``
        above every uid allocated there so far (none is ever given twice) that ``taken``
        does not refuse (an account of the host's).  None when the range is used up."""
        with self._tx():
            row = self._db.execute("SELECT uid FROM job_uids WHERE user=?", (user,)).fetchone()
            if row is not None:
                return int(row[0])
            top = self._db.execute("SELECT max(uid) FROM job_uids WHERE uid BETWEEN ? AND ?",
                                   (first, last)).fetchone()[0]
            uid = first if top is None else int(top) + 1
            while uid <= last and taken(uid):
                uid += 1
            if uid > last:
                return None
            self._db.execute("INSERT INTO job_uids(user, uid, created_at) VALUES (?, ?, ?)",
                             (user, uid, ts(now())))
        return uid

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
        return [r[0] for r in self._db.execute(
            "SELECT key FROM secrets WHERE owner=? ORDER BY key", (owner,))]

    def delete_secret(self, owner: str, key: str) -> bool:
        with self._tx():
            cur = self._db.execute("DELETE FROM secrets WHERE owner=? AND key=?", (owner, key))
        return cur.rowcount == 1

    def add_token(self, jti: str, user: str, *, expires_at: datetime | None = None,
                  note: str = "") -> None:
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
        return [_token(r) for r in self._db.execute(
            "SELECT * FROM tokens WHERE user=? ORDER BY created_at, jti", (user,))]

    def token_user(self, jti: str) -> str | None:
        tok = self.token(jti)
        return None if tok is None or tok.revoked else tok.user

    def revoke_token(self, jti: str) -> bool:
        """False when there is no such token or it was revoked already."""
        with self._tx():
            cur = self._db.execute(
                "UPDATE tokens SET revoked=1, revoked_at=? WHERE jti=? AND NOT revoked",
                (ts(now()), jti))
        return cur.rowcount == 1

    def revoke_tokens(self, user: str) -> int:
        with self._tx():
            return self._db.execute(
                "UPDATE tokens SET revoked=1, revoked_at=? WHERE user=? AND NOT revoked",
                (ts(now()), user)).rowcount

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

    # -- jobs -----------------------------------------------------------------------------
    def create_job(
        self,
        *,
        job_id: str,
        owner: str,
        name: str | None,
        spec: dict[str, Any],
        tags: Sequence[str],
        life_span: float | None,
        reason: str,
        description: str = "",
        active_name_check: bool = True,
    ) -> JobRecord | None:
        """Insert a pending job with its first transition; None if the name is taken."""
        t = now()
        with self._tx():
            if name and active_name_check:
                taken = self._db.execute(
                    f"SELECT 1 FROM jobs WHERE owner=? AND name=? AND status IN {ACTIVE}",
                    (owner, name),
                ).fetchone()
                if taken:
                    return None
            self._db.execute(
                "INSERT INTO jobs(id, owner, name, status, reason, description, created_at,"
                " life_span, spec) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (job_id, owner, name, reason, description, ts(t), life_span, json.dumps(spec)),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO job_tags(job_id, tag) VALUES (?, ?)",
                [(job_id, tag) for tag in tags],
            )
            self._add_transition(job_id, "pending", reason, description, None, t)
        job = self.get_job(job_id)
        assert job is not None
        return job

    def _add_transition(
        self, job_id: str, status: str, reason: str, description: str,
        exit_code: int | None, t: datetime,
    ) -> None:
        self._db.execute(
            "INSERT INTO transitions(job_id, status, reason, description, exit_code, time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, status, reason, description, exit_code, ts(t)),
        )

    def set_status(
        self,
        job_id: str,
        status: str,
        reason: str = "",
        description: str = "",
        *,
        exit_code: int | None = None,
        at: datetime | None = None,
        limits: str | None = None,
    ) -> JobRecord:
        """Record a transition.  A repeated (status, reason, description) is not recorded twice;
        a finished job never changes again."""
        t = at or now()
        with self._tx():
            row = self._db.execute(
                "SELECT status, reason, description, started_at, running_since FROM jobs WHERE id=?",
                (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            changed = (row["status"], row["reason"], row["description"]) != (status, reason, description)
            if row["status"] not in FINISHED and changed:
                sets = ["status=?", "reason=?", "description=?"]
                args: list[Any] = [status, reason, description]
                if status == "running" and row["started_at"] is None:
                    sets.append("started_at=?")
                    args.append(ts(t))
                if status in FINISHED:
                    sets += ["finished_at=?", "exit_code=?"]
                    args += [ts(t), exit_code]
                    if row["started_at"] is None:
                        # the official client asserts started_at on every finished job
                        sets.append("started_at=?")
                        args.append(ts(t))
                if limits is not None:
                    sets.append("limits=?")
                    args.append(limits)
                # run time by segment: a segment starts when it runs, ends when it stops running
                if status == "running" and row["running_since"] is None:
                    sets.append("running_since=?")
                    args.append(ts(t))
                elif status != "running" and row["running_since"] is not None:
                    seg = max(0.0, (t - datetime.fromisoformat(row["running_since"])).total_seconds())
                    sets += ["run_seconds=run_seconds+?", "running_since=NULL"]
                    args.append(seg)
                self._db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id=?", (*args, job_id))
                self._add_transition(job_id, status, reason, description, exit_code, t)
        job = self.get_job(job_id)
        assert job is not None
        return job

    def set_kill_reason(self, job_id: str, reason: str) -> None:
        self._db.execute(
            "UPDATE jobs SET kill_reason=? WHERE id=? AND kill_reason IS NULL", (reason, job_id)
        )

    # -- disks --------------------------------------------------------------------------------
    def add_disk(self, disk_id: str, owner: str, name: str | None, size: int) -> bool:
        """False when the owner already has a disk with that name."""
        try:
            with self._tx():
                self._db.execute(
                    "INSERT INTO disks(id, owner, name, size, created_at) VALUES (?, ?, ?, ?, ?)",
                    (disk_id, owner, name, size, ts(now())))
        except sqlite3.IntegrityError:
            return False
        return True

    def disks(self, owner: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute(
            "SELECT * FROM disks WHERE owner=? ORDER BY created_at", (owner,))]

    def disk(self, owner: str, ref: str) -> dict[str, Any] | None:
        """The owner's disk with this id or name."""
        row = self._db.execute("SELECT * FROM disks WHERE owner=? AND (id=? OR name=?)",
                               (owner, ref, ref)).fetchone()
        return None if row is None else dict(row)

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
        return [(r[0], r[1]) for r in self._db.execute(
            "SELECT user, action FROM shares WHERE job_id=? ORDER BY user", (job_id,))]

    def set_address(self, job_id: str, address: str, hostname: str = "") -> None:
        with self._tx():
            self._db.execute("UPDATE jobs SET address=?, hostname=? WHERE id=?",
                             (address, hostname, job_id))

    def set_devices(self, job_id: str, devices: tuple[int, ...]) -> None:
        with self._tx():
            self._db.execute("UPDATE jobs SET devices=? WHERE id=?",
                             (",".join(map(str, devices)), job_id))

    def count_restart(self, job_id: str) -> int:
        """One more restart of the job; returns the new count."""
        with self._tx():
            self._db.execute("UPDATE jobs SET restarts = restarts + 1 WHERE id=?", (job_id,))
        job = self.get_job(job_id)
        assert job is not None
        return job.restarts

    def set_warned(self, job_id: str, life_span: float) -> None:
        """Its life-span signal was sent for this life span."""
        self._db.execute("UPDATE jobs SET warned_life_span=? WHERE id=?", (life_span, job_id))

    def add_life_span(self, job_id: str, seconds: float) -> JobRecord:
        self._db.execute(
            "UPDATE jobs SET life_span = life_span + ? WHERE id=? AND life_span IS NOT NULL",
            (seconds, job_id),
        )
        job = self.get_job(job_id)
        assert job is not None
        return job

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    def transitions(self, job_id: str) -> list[Transition]:
        return [
            Transition(r["status"], r["reason"], r["description"], r["exit_code"],
                       datetime.fromisoformat(r["time"]))
            for r in self._db.execute(
                "SELECT * FROM transitions WHERE job_id=? ORDER BY seq", (job_id,)
            )
        ]

    def _job(self, row: sqlite3.Row) -> JobRecord:
        tags = tuple(
            r[0] for r in self._db.execute(
                "SELECT tag FROM job_tags WHERE job_id=? ORDER BY tag", (row["id"],)
            )
        )
        return JobRecord(
            id=row["id"], owner=row["owner"], name=row["name"], status=row["status"],
            reason=row["reason"], description=row["description"], exit_code=row["exit_code"],
            created_at=datetime.fromisoformat(row["created_at"]),
            started_at=parse_ts(row["started_at"]), finished_at=parse_ts(row["finished_at"]),
            restarts=row["restarts"], life_span=row["life_span"], kill_reason=row["kill_reason"],
            limits=row["limits"], spec=json.loads(row["spec"]), tags=tags,
            devices=tuple(int(d) for d in row["devices"].split(",") if d),
            address=row["address"], hostname=row["hostname"], run_seconds=row["run_seconds"] or 0.0,
            running_since=parse_ts(row["running_since"]),
            warned_life_span=row["warned_life_span"],
        )

    def jobs_with_status(self, statuses: Sequence[str]) -> list[JobRecord]:
        marks = ",".join("?" * len(statuses))
        rows = self._db.execute(
            f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created_at, id", tuple(statuses)
        ).fetchall()
        return [self._job(r) for r in rows]

    def list_jobs(
        self,
        *,
        owners: Sequence[str],
        viewer: str | None = None,
        statuses: Sequence[str] = (),
        name: str | None = None,
        tags: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        reverse: bool = False,
        limit: int | None = None,
        batch: int = 200,
    ) -> Iterator[JobRecord]:
        """Yield matching jobs in creation order, fetched in batches (keyset pagination) so
        that a huge list streams without holding a cursor across awaits."""
        where: list[str] = []
        args: list[Any] = []
        if owners:
            where.append(f"owner IN ({','.join('?' * len(owners))})")
            args += list(owners)
        if viewer is not None:  # only what the viewer may see: theirs, and jobs shared with them
            where.append("(owner=? OR EXISTS (SELECT 1 FROM shares s WHERE s.job_id=jobs.id "
                         "AND s.user=?))")
            args += [viewer, viewer]
        if not where:
            where.append("1=1")
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += list(statuses)
        if name:
            where.append("name=?")
            args.append(name)
        for tag in tags:
            where.append("EXISTS (SELECT 1 FROM job_tags t WHERE t.job_id=jobs.id AND t.tag=?)")
            args.append(tag)
        if since:
            where.append("created_at >= ?")
            args.append(ts(since))
        if until:
            where.append("created_at <= ?")
            args.append(ts(until))
        order = "DESC" if reverse else "ASC"
        cmp = "<" if reverse else ">"
        last: tuple[str, str] | None = None
        left = limit
        while left is None or left > 0:
            page_where = list(where)
            page_args = list(args)
            if last is not None:
                page_where.append(f"(created_at, id) {cmp} (?, ?)")
                page_args += list(last)
            n = batch if left is None else min(batch, left)
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE {' AND '.join(page_where)}"
                f" ORDER BY created_at {order}, id {order} LIMIT ?",
                (*page_args, n),
            ).fetchall()
            if not rows:
                return
            for r in rows:
                yield self._job(r)
            last = (rows[-1]["created_at"], rows[-1]["id"])
            if left is not None:
                left -= len(rows)
            if len(rows) < n:
                return

    def tags(self, owner: str) -> list[str]:
        return [
            r[0] for r in self._db.execute(
                "SELECT DISTINCT t.tag FROM job_tags t JOIN jobs j ON j.id=t.job_id"
                " WHERE j.owner=? ORDER BY t.tag", (owner,)
            )
        ]


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *a: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
