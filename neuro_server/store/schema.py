"""The store's schema as an ordered list of migrations, applied by ``PRAGMA user_version``.

A database at version N has had migrations 1..N applied; opening it applies the rest, each in
a transaction of its own with its version number (so two processes opening one database at
once apply each migration once).  Migrations 1-11 are the schema's history before it was
versioned: a database of that time has user_version 0 and any of those states, so each of
them checks what is there before it adds it.  From 12 on a migration can trust the version.

To change the schema: append a migration (never edit one that has shipped).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

Migration = Callable[[sqlite3.Connection], None]


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _script(*statements: str) -> Migration:
    def run(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return run


def _add_columns(table: str, *columns: str, then: Sequence[str] = ()) -> Migration:
    """ALTER TABLE ADD COLUMN each of ``columns`` ("name TYPE ...") the table lacks, and run
    ``then`` when it lacked the first (the data of a database from before them)."""

    def run(db: sqlite3.Connection) -> None:
        have = _columns(db, table)
        if columns[0].split()[0] in have:
            return
        for column in columns:
            if column.split()[0] not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        for statement in then:
            db.execute(statement)

    return run


# 1: the foundation: users, tokens, jobs, their tags and status transitions
_FOUNDATION = _script(
    """CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tokens (
        jti TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name),
        created_at TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS jobs (
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
        spec TEXT NOT NULL  -- the job's request, in encoding.py's encoding
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs(owner, created_at)",
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status)",
    """CREATE TABLE IF NOT EXISTS job_tags (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        tag TEXT NOT NULL,
        PRIMARY KEY (job_id, tag)
    )""",
    "CREATE INDEX IF NOT EXISTS job_tags_tag ON job_tags(tag)",
    """CREATE TABLE IF NOT EXISTS transitions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        exit_code INTEGER,
        time TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS transitions_job ON transitions(job_id, seq)",
)

MIGRATIONS: tuple[Migration, ...] = (
    _FOUNDATION,
    # 2: secrets, each user's own
    _script("""CREATE TABLE IF NOT EXISTS secrets (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (owner, key)
    )"""),
    # 3: the GPUs assigned to a job (NVML indices, comma-separated)
    _add_columns("jobs", "devices TEXT NOT NULL DEFAULT ''"),
    # 4: sharing: another user's access to a job (read < write < manage)
    _script("""CREATE TABLE IF NOT EXISTS shares (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        PRIMARY KEY (job_id, user)
    )"""),
    # 5: disks
    _script(
        """CREATE TABLE IF NOT EXISTS disks (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT,
        size INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        last_usage TEXT
    )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS disks_owner_name ON disks(owner, name)",
    ),
    # 6: where other jobs reach a running job
    _add_columns("jobs", "address TEXT NOT NULL DEFAULT ''"),
    # 7: run time counted by segment: run_seconds of the runs that ended, running_since the
    # start of the current one (NULL while not running)
    _add_columns(
        "jobs",
        "run_seconds REAL NOT NULL DEFAULT 0",
        "running_since TEXT",
        then=["UPDATE jobs SET running_since=started_at WHERE status='running'"],
    ),
    # 8: the name its owner's other jobs reach it by
    _add_columns("jobs", "hostname TEXT NOT NULL DEFAULT ''"),
    # 9: the life span its life-span signal was sent for
    _add_columns("jobs", "warned_life_span REAL"),
    # 10: token expiry, revocation time, and what a token was issued for (add-user, token,
    # embedded...); expires_at NULL: it never expires
    _add_columns("tokens", "expires_at TEXT", "revoked_at TEXT", "note TEXT NOT NULL DEFAULT ''"),
    # 11: the uid (and gid) each user's jobs run as on a root server's process runtime; kept
    # when the user is removed: a uid never passes to another user (files it owns may remain)
    _script("""CREATE TABLE IF NOT EXISTS job_uids (
        user TEXT PRIMARY KEY,
        uid INTEGER NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    )"""),
)

VERSION = len(MIGRATIONS)


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the migrations ``db`` has not had; its version after.  A database of a newer
    server (a version beyond ours) is refused: this server would not know its columns."""
    if version(db) > len(migrations):
        raise sqlite3.DatabaseError(
            f"the database is of schema version {version(db)}, newer than this server's "
            f"({len(migrations)}): run a newer neuro-server"
        )
    for number, migration in enumerate(migrations, start=1):
        if version(db) >= number:  # (cheap: most opens find nothing to do)
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if version(db) < number:  # (another process may have applied it meanwhile)
                migration(db)
                db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return version(db)
