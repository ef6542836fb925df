"""Jobs: their records (the request in encoding.py's encoding), tags and status transitions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from .. import encoding
from ..model import ACTIVE, FINISHED, JobRecord, JobRequest, JobStatus, Transition
from .base import StoreBase, now, parse_ts, ts

_ACTIVE_MARKS = ",".join("?" * len(ACTIVE))


class JobsStore(StoreBase):
    def create_job(
        self,
        *,
        job_id: str,
        owner: str,
        name: str | None,
        spec: JobRequest,
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
                    f"SELECT 1 FROM jobs WHERE owner=? AND name=? AND status IN ({_ACTIVE_MARKS})",
                    (owner, name, *ACTIVE),
                ).fetchone()
                if taken:
                    return None
            self._db.execute(
                "INSERT INTO jobs(id, owner, name, status, reason, description, created_at,"
                " life_span, spec) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (job_id, owner, name, reason, description, ts(t), life_span, encoding.encode(spec)),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO job_tags(job_id, tag) VALUES (?, ?)",
                [(job_id, tag) for tag in tags],
            )
            self._add_transition(job_id, JobStatus.PENDING, reason, description, None, t)
        job = self.get_job(job_id)
        assert job is not None
        return job

    def _add_transition(
        self,
        job_id: str,
        status: JobStatus,
        reason: str,
        description: str,
        exit_code: int | None,
        t: datetime,
    ) -> None:
        self._db.execute(
            "INSERT INTO transitions(job_id, status, reason, description, exit_code, time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, status, reason, description, exit_code, ts(t)),
        )

    def set_status(
        self,
        job_id: str,
        status: JobStatus,
        reason: str = "",
        description: str = "",
        *,
        exit_code: int | None = None,
        at: datetime | None = None,
        limits: str | None = None,
    ) -> JobRecord:
        """Record a transition.  A repeated (status, reason, description) is not recorded twice;
        a finished job never changes again."""
        status = JobStatus(status)
        t = at or now()
        with self._tx():
            row = self._db.execute(
                "SELECT status, reason, description, started_at, running_since FROM jobs WHERE id=?",
                (job_id,),
            ).fetchone()
            if row is None:
                raise KeyError(job_id)
            changed = (row["status"], row["reason"], row["description"]) != (
                status,
                reason,
                description,
            )
            if row["status"] not in FINISHED and changed:
                sets = ["status=?", "reason=?", "description=?"]
                args: list[Any] = [status, reason, description]
                if status == JobStatus.RUNNING and row["started_at"] is None:
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
                if status == JobStatus.RUNNING and row["running_since"] is None:
                    sets.append("running_since=?")
                    args.append(ts(t))
                elif status != JobStatus.RUNNING and row["running_since"] is not None:
                    seg = max(
                        0.0, (t - datetime.fromisoformat(row["running_since"])).total_seconds()
                    )
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

    def set_address(self, job_id: str, address: str, hostname: str = "") -> None:
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET address=?, hostname=? WHERE id=?", (address, hostname, job_id)
            )

    def set_devices(self, job_id: str, devices: tuple[int, ...]) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET devices=? WHERE id=?", (",".join(map(str, devices)), job_id)
            )

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
            Transition(
                JobStatus(r["status"]),
                r["reason"],
                r["description"],
                r["exit_code"],
                datetime.fromisoformat(r["time"]),
            )
            for r in self._db.execute(
                "SELECT * FROM transitions WHERE job_id=? ORDER BY seq", (job_id,)
            )
        ]

    def _job(self, row: sqlite3.Row) -> JobRecord:
        tags = tuple(
            r[0]
            for r in self._db.execute(
                "SELECT tag FROM job_tags WHERE job_id=? ORDER BY tag", (row["id"],)
            )
        )
        return JobRecord(
            id=row["id"],
            owner=row["owner"],
            name=row["name"],
            status=JobStatus(row["status"]),
            reason=row["reason"],
            description=row["description"],
            exit_code=row["exit_code"],
            created_at=datetime.fromisoformat(row["created_at"]),
            started_at=parse_ts(row["started_at"]),
            finished_at=parse_ts(row["finished_at"]),
            restarts=row["restarts"],
            life_span=row["life_span"],
            kill_reason=row["kill_reason"],
            limits=row["limits"],
            spec=encoding.decode(row["spec"]),
            tags=tags,
            devices=tuple(int(d) for d in row["devices"].split(",") if d),
            address=row["address"],
            hostname=row["hostname"],
            run_seconds=row["run_seconds"] or 0.0,
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
            where.append(
                "(owner=? OR EXISTS (SELECT 1 FROM shares s WHERE s.job_id=jobs.id AND s.user=?))"
            )
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
            r[0]
            for r in self._db.execute(
                "SELECT DISTINCT t.tag FROM job_tags t JOIN jobs j ON j.id=t.job_id"
                " WHERE j.owner=? ORDER BY t.tag",
                (owner,),
            )
        ]
