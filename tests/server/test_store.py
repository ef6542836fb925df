"""The store's schema migrations and the job request's encoding: a database made by the
servers before them opens, migrates and reads its jobs as the typed model."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from neuro_server import encoding
from neuro_server.model import (
    Container,
    DiskVolume,
    HttpPort,
    JobRequest,
    JobStatus,
    LifeSpanSignal,
    Priority,
    Resources,
    RestartPolicy,
    SecretFile,
    SecretRef,
    StorageVolume,
)
from neuro_server.store import Store, schema

# the schema of the server before migrations (git 6299dcb), as it made databases
HEAD_SCHEMA = """
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

# the foundation's schema (git a0a928b): the oldest database a server may find
FOUNDATION_SCHEMA = """
CREATE TABLE users (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE tokens (jti TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name),
    created_at TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE jobs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT, status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '', exit_code INTEGER,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    restarts INTEGER NOT NULL DEFAULT 0, life_span REAL, kill_reason TEXT,
    limits TEXT NOT NULL DEFAULT '', spec TEXT NOT NULL);
CREATE TABLE job_tags (job_id TEXT NOT NULL REFERENCES jobs(id), tag TEXT NOT NULL,
    PRIMARY KEY (job_id, tag));
CREATE TABLE transitions (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs(id), status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '', exit_code INTEGER,
    time TEXT NOT NULL);
"""

# a job's spec as the server before the model kept it (encoding version 1), for a request
# with every field
V1_SPEC: dict[str, Any] = {
    "image": "ubuntu:22.04",
    "entrypoint": "/bin/sh -c",
    "command": "python train.py --epochs 3",
    "argv": ["/bin/sh", "-c", "python", "train.py", "--epochs", "3"],
    "working_dir": "/work",
    "env": {"A": "1"},
    "tty": True,
    "http": {"port": 8080, "requires_auth": True, "health_check_path": "/"},
    "secret_env": {"TOKEN": "tok"},
    "secret_env_uris": {"TOKEN": "secret:tok"},
    "secret_files": [{"key": "key", "path": "/etc/key", "uri": "secret://local/alice/key"}],
    "storage_volumes": [{"uri": "storage:data", "dst": "/data", "read_only": True, "path": "data"}],
    "disk_volumes": [
        {
            "ref": "scratch",
            "uri": "disk:scratch",
            "dst": "/scratch",
            "read_only": False,
            "id": "disk-1",
        }
    ],
    "description": "d",
    "schedule_timeout": 60.0,
    "restart_policy": "on-failure",
    "priority": "high",
    "privileged": False,
    "life_span_signal": {"signal": "SIGUSR1", "signum": 10, "seconds_before": 30.0},
    "pass_config": True,
    "wait_for_jobs_quota": True,
    "energy_schedule_name": "green",
    "cluster_name": "local",
    "org_name": "local",
    "project_name": "default",
    "preset_name": "gpu-small",
    "resources": {
        "cpu": 1.0,
        "memory": 1073741824,
        "shm": True,
        "nvidia_gpu": 1,
        "nvidia_gpu_model": "nvidia-gpu",
    },
    "scheduler_enabled": True,
    "preemptible_node": False,
}

STARTED = "2026-01-01T00:00:00.000000+00:00"

REQUEST = JobRequest(
    container=Container(
        image="ubuntu:22.04",
        resources=Resources(
            cpu=1.0, memory=1 << 30, shm=True, nvidia_gpu=1, nvidia_gpu_model="nvidia-gpu"
        ),
        argv=("/bin/sh", "-c", "python", "train.py", "--epochs", "3"),
        entrypoint="/bin/sh -c",
        command="python train.py --epochs 3",
        working_dir="/work",
        env={"A": "1"},
        secret_env={"TOKEN": SecretRef("tok", "secret:tok")},
        tty=True,
        http=HttpPort(8080, requires_auth=True),
        volumes=(StorageVolume("storage:data", "/data", read_only=True, path="data"),),
        disk_volumes=(DiskVolume("scratch", "disk:scratch", "/scratch", id="disk-1"),),
        secret_files=(SecretFile("/etc/key", SecretRef("key", "secret://local/alice/key")),),
    ),
    cluster_name="local",
    org_name="local",
    project_name="default",
    preset_name="gpu-small",
    description="d",
    restart_policy=RestartPolicy.ON_FAILURE,
    priority=Priority.HIGH,
    life_span_signal=LifeSpanSignal("SIGUSR1", 10, 30.0),
    pass_config=True,
    scheduler_enabled=True,
    schedule_timeout=60.0,
    wait_for_jobs_quota=True,
    energy_schedule_name="green",
)


def _old_db(path: Path, script: str, spec: dict[str, Any], status: str = "running") -> None:
    db = sqlite3.connect(path)
    db.executescript(script)
    db.execute("INSERT INTO users(name, created_at) VALUES ('alice', ?)", (STARTED,))
    db.execute("INSERT INTO tokens(jti, user, created_at) VALUES ('t1', 'alice', ?)", (STARTED,))
    db.execute(
        "INSERT INTO jobs(id, owner, name, status, created_at, started_at, life_span,"
        " spec) VALUES ('job-1', 'alice', 'train-1', ?, ?, ?, 600, ?)",
        (status, STARTED, STARTED, json.dumps(spec)),
    )
    db.execute("INSERT INTO job_tags(job_id, tag) VALUES ('job-1', 'a')")
    db.execute(
        "INSERT INTO transitions(job_id, status, time) VALUES ('job-1', ?, ?)", (status, STARTED)
    )
    db.commit()
    db.close()


def _columns(path: Path) -> dict[str, list[tuple[str, str, int, Any]]]:
    """Each table's columns (name, type, not null, default), by name."""
    db = sqlite3.connect(path)
    tables = [
        r[0]
        for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    out = {
        t: sorted((r[1], r[2], r[3], r[4]) for r in db.execute(f"PRAGMA table_info({t})"))
        for t in tables
    }
    db.close()
    return out


def _indexes(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    names = {
        r[0]
        for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND name NOT LIKE 'sqlite_%'"
        )
    }
    db.close()
    return names


def test_store_new_database_has_the_schema_of_the_server_before(tmp_path: Path) -> None:
    Store(tmp_path / "new.db").close()
    head = tmp_path / "head.db"
    sqlite3.connect(head).executescript(HEAD_SCHEMA)
    assert _columns(tmp_path / "new.db") == _columns(head)
    assert _indexes(tmp_path / "new.db") == _indexes(head)


def test_store_database_of_the_server_before_opens_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "neuro.db"
    _old_db(path, HEAD_SCHEMA, V1_SPEC)
    store = Store(path)
    assert schema.version(store._db) == schema.VERSION
    job = store.get_job("job-1")
    assert job is not None
    assert job.status is JobStatus.RUNNING and job.tags == ("a",) and job.life_span == 600
    assert job.spec == REQUEST
    # it goes on: a transition, a new job (written in the current encoding), a token
    store.set_status("job-1", JobStatus.SUCCEEDED, "Completed", exit_code=0)
    new = store.create_job(
        job_id="job-2",
        owner="alice",
        name="train-1",
        spec=REQUEST,
        tags=(),
        life_span=None,
        reason="Creating",
    )
    assert new is not None and new.spec == REQUEST
    raw = store._db.execute("SELECT spec FROM jobs WHERE id='job-2'").fetchone()[0]
    assert json.loads(raw)["v"] == encoding.VERSION
    assert [t.status for t in store.transitions("job-1")] == ["running", "succeeded"]
    assert store.token("t1") is not None
    store.close()
    Store(path).close()  # (opened again: nothing left to migrate)


def test_store_oldest_database_migrates(tmp_path: Path) -> None:
    path = tmp_path / "neuro.db"
    old = {
        k: v
        for k, v in V1_SPEC.items()
        if k not in ("secret_env_uris", "storage_volumes", "life_span_signal", "secret_files")
    }
    _old_db(path, FOUNDATION_SCHEMA, old)
    store = Store(path)
    job = store.get_job("job-1")
    assert job is not None
    # the migration of run time by segment: a running job's segment began when it started
    assert job.running_since is not None and job.running_since == job.started_at
    assert (job.devices, job.address, job.hostname, job.warned_life_span) == ((), "", "", None)
    c = job.spec.container
    assert c.secret_env == {"TOKEN": SecretRef("tok", "secret:tok")}
    assert (c.volumes, c.secret_files, job.spec.life_span_signal) == ((), (), None)
    token = store.token("t1")
    assert token is not None and token.expires_at is None and token.note == ""
    store.add_disk("disk-1", "alice", "scratch", 1 << 30)
    store.put_secret("alice", "k", b"v")
    assert store.job_uid("alice") is None
    store.close()
    head = tmp_path / "head.db"
    sqlite3.connect(head).executescript(HEAD_SCHEMA)
    assert _columns(path) == _columns(head)
    assert _indexes(path) == _indexes(head)


def test_store_migrations_run_once_each_in_order(tmp_path: Path) -> None:
    ran: list[int] = []
    migrations = [lambda db, n=n: ran.append(n) for n in range(1, 4)]
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    assert schema.migrate(db, migrations[:2]) == 2
    assert schema.migrate(db, migrations) == 3
    assert schema.migrate(db, migrations) == 3
    assert ran == [1, 2, 3]


def test_store_failed_migration_is_rolled_back(tmp_path: Path) -> None:
    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("broken")

    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    with pytest.raises(RuntimeError):
        schema.migrate(db, [lambda db: None, broken])
    assert schema.version(db) == 1
    assert db.execute("SELECT name FROM sqlite_master WHERE name='half'").fetchone() is None


def test_store_refuses_a_newer_database(tmp_path: Path) -> None:
    path = tmp_path / "neuro.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="newer than this server"):
        Store(path)


def test_encoding_round_trip() -> None:
    for request in (
        REQUEST,
        JobRequest(
            Container("busybox", Resources(0.5, 1 << 28)),
            cluster_name="c",
            org_name="o",
            project_name="p",
        ),
    ):
        text = encoding.encode(request)
        assert json.loads(text)["v"] == encoding.VERSION
        assert encoding.decode(text) == request


def test_encoding_reads_version_1() -> None:
    assert encoding.decode(json.dumps(V1_SPEC)) == REQUEST
    assert encoding.decode(json.dumps({**V1_SPEC, "v": 1})) == REQUEST


def test_encoding_refuses_an_unknown_version() -> None:
    with pytest.raises(encoding.EncodingError, match="version 99"):
        encoding.decode(json.dumps({"v": 99}))


def test_model_status_is_its_value() -> None:
    assert JobStatus.RUNNING == "running" and f"{JobStatus.FAILED}" == "failed"
    assert json.dumps({"s": JobStatus.PENDING}) == '{"s": "pending"}'
    assert JobStatus.CANCELLED.is_finished and not JobStatus.SUSPENDED.is_finished
    assert dataclasses.replace(REQUEST).resources == REQUEST.container.resources
