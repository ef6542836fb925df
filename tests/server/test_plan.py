"""The scheduler's plan and a run's end, as tables: snapshots in, decisions out (no store, no
processes, no clock)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from neuro_server.model import (
    Container,
    DiskVolume,
    JobRecord,
    JobRequest,
    JobStatus,
    LifeSpanSignal,
    Resources,
    RestartPolicy,
)
from neuro_server.runtime.base import Capacity, ExitInfo
from neuro_server.scheduler import lifecycle
from neuro_server.scheduler.plan import (
    Decision,
    Fail,
    Resume,
    Signal,
    Snapshot,
    Start,
    Stop,
    Suspend,
    Wait,
    plan,
)

GiB = 1 << 30
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CAP = Capacity.one_node("here", cpu=4.0, memory=8 * GiB)
GPUS = Capacity.one_node("here", cpu=4.0, memory=8 * GiB, nvidia_gpu=2)
SUSPENDED_FOR = "its processes are frozen and go on when resources are free"


def job(
    id: str,
    status: JobStatus = JobStatus.PENDING,
    *,
    cpu: float = 1.0,
    memory: int = GiB,
    gpu: int = 0,
    owner: str = "alice",
    age: float = 0.0,
    preemptible: bool = False,
    disks: tuple[tuple[str, bool], ...] = (),
    devices: tuple[int, ...] = (),
    kill_reason: str | None = None,
    schedule_timeout: float | None = None,
    life_span: float | None = None,
    ran: float = 0.0,
    warn: float | None = None,
    warned: float | None = None,
    name: str | None = None,
    reason: str = "",
) -> JobRecord:
    """A job created ``age`` seconds before T0 (older jobs first: give larger ages), running
    for ``ran`` seconds by T0 when it runs."""
    spec = JobRequest(
        Container(
            "ubuntu",
            Resources(cpu=cpu, memory=memory, nvidia_gpu=gpu),
            disk_volumes=tuple(
                DiskVolume(ref, f"disk:{ref}", f"/mnt/{ref}", ro, id=ref) for ref, ro in disks
            ),
        ),
        cluster_name="local",
        org_name="local",
        project_name="default",
        scheduler_enabled=preemptible,
        schedule_timeout=schedule_timeout,
        life_span_signal=None if warn is None else LifeSpanSignal("SIGUSR1", 10, warn),
    )
    running = status == JobStatus.RUNNING
    return JobRecord(
        id=id,
        owner=owner,
        name=name,
        status=status,
        reason=reason,
        description="",
        exit_code=None,
        created_at=T0 - timedelta(seconds=age),
        started_at=None,
        finished_at=None,
        restarts=0,
        life_span=life_span,
        kill_reason=kill_reason,
        limits="",
        spec=spec,
        tags=(),
        devices=devices,
        running_since=T0 - timedelta(seconds=ran) if running else None,
        warned_life_span=warned,
    )


def restarting(id: str, **kw: Any) -> JobRecord:
    """A job between two runs (its restart policy): running, reason Restarting."""
    return job(id, JobStatus.RUNNING, reason="Restarting", **kw)


def snap(*jobs: JobRecord, capacity: Capacity = CAP, **kw: Any) -> Snapshot:
    ordered = sorted(jobs, key=lambda j: (j.created_at, j.id))
    return Snapshot(jobs=ordered, capacity=capacity, clock=1000.0, now=T0, **kw)


# -- starting, waiting, failing -------------------------------------------------------------
CASES: list[tuple[str, Snapshot, list[Decision]]] = [
    ("nothing", snap(), []),
    ("fits", snap(job("a")), [Start("a")]),
    (
        "oldest first",
        snap(job("young", cpu=3), job("old", cpu=3, age=10)),
        [
            Start("old"),
            Wait("young", "Scheduling", "Waiting for resources: needs cpu 3 (free 1 of 4)"),
        ],
    ),
    (
        "running jobs use capacity",
        snap(job("r", JobStatus.RUNNING, cpu=3.5), job("p")),
        [Wait("p", "Scheduling", "Waiting for resources: needs cpu 1 (free 0.5 of 4)")],
    ),
    (
        "memory limits",
        snap(job("p", memory=9 * GiB)),
        [
            Wait(
                "p",
                "Scheduling",
                "Waiting for resources: needs memory 9.0 GiB (free 8.0 GiB of 8.0 GiB)",
            )
        ],
    ),
    (
        "a suspended job's CPU is free, not its memory",
        snap(job("s", JobStatus.SUSPENDED, cpu=4, memory=7 * GiB), job("p", memory=2 * GiB)),
        [
            Wait(
                "p",
                "Scheduling",
                "Waiting for resources: needs memory 2.0 GiB (free 1.0 GiB of 8.0 GiB)",
            ),
            Resume("s"),
        ],
    ),
    (
        "a starting job uses capacity",
        snap(job("p", cpu=3), starting=[job("s", cpu=2)]),
        [Wait("p", "Scheduling", "Waiting for resources: needs cpu 3 (free 2 of 4)")],
    ),
    (
        "starting, killed and watched jobs are left alone",
        snap(
            job("s"),
            job("k", kill_reason="UserRequested"),
            job("w"),
            starting=[job("s")],
            watched=frozenset({"w"}),
        ),
        [],
    ),
    (
        "GPUs of its own",
        snap(job("r", JobStatus.RUNNING, gpu=1, devices=(0,)), job("p", gpu=1), capacity=GPUS),
        [Start("p", (1,))],
    ),
    (
        "GPUs not given twice in one step",
        snap(job("a", gpu=1, age=2), job("b", gpu=1, age=1), job("c", gpu=1), capacity=GPUS),
        [
            Start("a", (0,)),
            Start("b", (1,)),
            Wait("c", "Scheduling", "Waiting for resources: needs 1 NVIDIA GPU (free 0 of 2)"),
        ],
    ),
    (
        "no GPU here",
        snap(job("p", gpu=1)),
        [
            Wait(
                "p",
                "Scheduling",
                "Waiting for resources: needs 1 NVIDIA GPU (this machine has none)",
            )
        ],
    ),
    ("restart backoff", snap(restarting("p"), restart_at={"p": 1003.0}), []),
    ("restart backoff over", snap(restarting("p"), restart_at={"p": 999.0}), [Start("p")]),
    (
        "a restart with its backoff forgotten (a new server): at once",
        snap(restarting("p")),
        [Start("p")],
    ),
    (
        "a restart keeps its resources: it starts when nothing else fits",
        snap(restarting("p", cpu=4, age=1), job("q")),
        [Start("p"), Wait("q", "Scheduling", "Waiting for resources: needs cpu 1 (free 0 of 4)")],
    ),
    (
        "resources held during the backoff",
        snap(restarting("p", cpu=4, age=1), job("q"), restart_at={"p": 1003.0}),
        [Wait("q", "Scheduling", "Waiting for resources: needs cpu 1 (free 0 of 4)")],
    ),
    (
        "a restart keeps its GPUs",
        snap(restarting("p", gpu=1, devices=(1,)), job("q", gpu=1), capacity=GPUS),
        [Start("p", (1,)), Start("q", (0,))],
    ),
    (
        "a restart keeps its seat",
        snap(restarting("p", age=1), job("q"), max_running_jobs=1, restart_at={"p": 1003.0}),
        [Wait("q", "Scheduling", "Waiting for a seat: 1 of your 1 jobs are running")],
    ),
    (
        "a restart keeps its disk",
        snap(
            restarting("p", disks=(("d", False),), name="train"),
            job("q", disks=(("d", False),)),
            restart_at={"p": 1003.0},
        ),
        [
            Wait(
                "q",
                "DiskUnavailable",
                "Waiting for job train to release disk d (one writer at a time)",
            )
        ],
    ),
    (
        "killed, wound up or starting between two runs: not started (again)",
        snap(
            restarting("k", kill_reason="UserRequested"),
            restarting("w"),
            restarting("s"),
            watched=frozenset({"w"}),
            starting=[restarting("s")],
        ),
        [],
    ),
    (
        "a seat of one's own",
        snap(
            job("r", JobStatus.RUNNING), job("a", age=1), job("b", owner="bob"), max_running_jobs=1
        ),
        [Wait("a", "Scheduling", "Waiting for a seat: 1 of your 1 jobs are running"), Start("b")],
    ),
    (
        "seats taken in this step",
        snap(job("a", age=1), job("b"), max_running_jobs=1),
        [Start("a"), Wait("b", "Scheduling", "Waiting for a seat: 1 of your 1 jobs are running")],
    ),
    (
        "one writer per disk",
        snap(
            job("r", JobStatus.RUNNING, disks=(("d", False),), name="train"),
            job("p", disks=(("d", True),)),
        ),
        [
            Wait(
                "p",
                "DiskUnavailable",
                "Waiting for job train to release disk d (one writer at a time)",
            )
        ],
    ),
    (
        "readers share a disk",
        snap(job("r", JobStatus.RUNNING, disks=(("d", True),)), job("p", disks=(("d", True),))),
        [Start("p")],
    ),
    (
        "a disk taken in this step",
        snap(job("a", disks=(("d", False),), age=1), job("b", disks=(("d", False),))),
        [
            Start("a"),
            Wait(
                "b", "DiskUnavailable", "Waiting for job a to release disk d (one writer at a time)"
            ),
        ],
    ),
    (
        "schedule timeout",
        snap(job("p", cpu=5, age=30, schedule_timeout=20)),
        [
            Fail(
                "p",
                "ClusterScaleUpFailed",
                "Not scheduled within its schedule timeout of 20s: needs cpu 5 (free 4 of 4)",
            )
        ],
    ),
    (
        "within its schedule timeout",
        snap(job("p", cpu=5, age=10, schedule_timeout=20)),
        [Wait("p", "Scheduling", "Waiting for resources: needs cpu 5 (free 4 of 4)")],
    ),
]


@pytest.mark.parametrize(
    ("snapshot", "decisions"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plan_decides(snapshot: Snapshot, decisions: list[Decision]) -> None:
    assert list(plan(snapshot).decisions) == decisions


NEXT: list[tuple[str, Snapshot, float]] = [
    ("idle", snap(), 5.0),
    ("a restart's backoff", snap(restarting("p"), restart_at={"p": 1003.0}), 3.0),
    (
        "a life span goes on between two runs",
        snap(restarting("r", life_span=60, ran=58), restart_at={"r": 1010.0}),
        2.0,
    ),
    ("a schedule timeout", snap(job("p", cpu=5, age=18, schedule_timeout=20)), 2.0),
    ("a life span", snap(job("r", JobStatus.RUNNING, life_span=60, ran=59)), 1.0),
    ("a life-span signal", snap(job("r", JobStatus.RUNNING, life_span=60, ran=37, warn=20)), 3.0),
    ("never sooner than 50 ms", snap(restarting("p"), restart_at={"p": 1000.001}), 0.05),
]


@pytest.mark.parametrize(("snapshot", "seconds"), [c[1:] for c in NEXT], ids=[c[0] for c in NEXT])
def test_plan_next_check(snapshot: Snapshot, seconds: float) -> None:
    assert plan(snapshot).next_check == pytest.approx(seconds)


# -- preemption, round robin, resumption ------------------------------------------------------
def _why(job: str, how: str) -> str:
    return f"Suspended to let {job} run ({how}); {SUSPENDED_FOR}"


PREEMPT: list[tuple[str, Snapshot, list[Decision]]] = [
    (
        "a preemptible job makes room",
        snap(job("v", JobStatus.RUNNING, cpu=4, preemptible=True), job("p", cpu=2)),
        [Suspend("v", _why("p", "preempted"))],
    ),
    (
        "the longest-running first, as few as needed",
        snap(
            job("v1", JobStatus.RUNNING, cpu=2, preemptible=True, age=2),
            job("v2", JobStatus.RUNNING, cpu=2, preemptible=True, age=1),
            job("p", cpu=2),
            running_since={"v1": 900.0, "v2": 100.0},
        ),
        [Suspend("v2", _why("p", "preempted"))],
    ),
    (
        "not a job that is not preemptible",
        snap(job("r", JobStatus.RUNNING, cpu=4), job("p", cpu=2)),
        [Wait("p", "Scheduling", "Waiting for resources: needs cpu 2 (free 0 of 4)")],
    ),
    (
        "not when it would not fit anyway",
        snap(job("v", JobStatus.RUNNING, cpu=1, preemptible=True), job("p", memory=8 * GiB)),
        [
            Wait(
                "p",
                "Scheduling",
                "Waiting for resources: needs memory 8.0 GiB (free 7.0 GiB of 8.0 GiB)",
            )
        ],
    ),
    (
        "round robin: not before its time",
        snap(
            job("v", JobStatus.RUNNING, cpu=4, preemptible=True),
            job("p", cpu=4, preemptible=True),
            running_since={"v": 990.0},
        ),
        [Wait("p", "Scheduling", "Waiting for resources: needs cpu 4 (free 0 of 4)")],
    ),
    (
        "round robin: after its time",
        snap(
            job("v", JobStatus.RUNNING, cpu=4, preemptible=True),
            job("p", cpu=4, preemptible=True, name="next"),
            running_since={"v": 900.0},
        ),
        [Suspend("v", _why("next", "round robin"))],
    ),
    (
        "not one between two runs (nothing to freeze)",
        snap(
            restarting("v", cpu=4, preemptible=True),
            job("p", cpu=2),
            restart_at={"v": 1003.0},
            running_since={"v": 0.0},
        ),
        [Wait("p", "Scheduling", "Waiting for resources: needs cpu 2 (free 0 of 4)")],
    ),
    (
        "not one being suspended already",
        snap(
            job("v", JobStatus.RUNNING, cpu=4, preemptible=True),
            job("p", cpu=2),
            suspending=frozenset({"v"}),
        ),
        [Start("p")],
    ),
    (
        "resumed when its CPU is free",
        snap(job("s", JobStatus.SUSPENDED, cpu=2, memory=7 * GiB)),
        [Resume("s")],
    ),
    ("not resumed twice", snap(job("s", JobStatus.SUSPENDED), resuming=frozenset({"s"})), []),
    (
        "the oldest suspension first",
        snap(
            job("s1", JobStatus.SUSPENDED, cpu=3),
            job("s2", JobStatus.SUSPENDED, cpu=3),
            running_since={"s1": 500.0, "s2": 100.0},
        ),
        [Resume("s2")],
    ),
    (
        "a suspended job takes the place of one past its round-robin time",
        snap(
            job("v", JobStatus.RUNNING, cpu=4, preemptible=True),
            job("s", JobStatus.SUSPENDED, cpu=4, preemptible=True, name="back"),
            running_since={"v": 900.0, "s": 100.0},
        ),
        [Suspend("v", _why("back", "round robin"))],
    ),
]


@pytest.mark.parametrize(
    ("snapshot", "decisions"), [c[1:] for c in PREEMPT], ids=[c[0] for c in PREEMPT]
)
def test_plan_preempts_and_resumes(snapshot: Snapshot, decisions: list[Decision]) -> None:
    assert list(plan(snapshot).decisions) == decisions


def test_plan_suspended_job_waits_a_quarter_round_robin() -> None:
    s = snap(
        job("r", JobStatus.RUNNING, cpu=4),
        job("s", JobStatus.SUSPENDED, cpu=1),
        round_robin_seconds=8.0,
    )
    p = plan(s)
    assert p.decisions == () and p.next_check == 2.0


# -- life spans -----------------------------------------------------------------------------
LIFE: list[tuple[str, JobRecord, list[Decision]]] = [
    ("no life span", job("r", JobStatus.RUNNING, ran=1e6), []),
    ("within it", job("r", JobStatus.RUNNING, life_span=60, ran=59), []),
    ("past it", job("r", JobStatus.RUNNING, life_span=60, ran=60), [Stop("r", "LifeSpanEnded")]),
    (
        "being killed already",
        job("r", JobStatus.RUNNING, life_span=60, ran=90, kill_reason="UserRequested"),
        [],
    ),
    (
        "its signal is due",
        job("r", JobStatus.RUNNING, life_span=60, ran=45, warn=20),
        [Signal("r", 10, 60)],
    ),
    (
        "its signal was sent",
        job("r", JobStatus.RUNNING, life_span=60, ran=45, warn=20, warned=60),
        [],
    ),
    (
        "a bump re-arms it",
        job("r", JobStatus.RUNNING, life_span=120, ran=105, warn=20, warned=60),
        [Signal("r", 10, 120)],
    ),
    (
        "past it between two runs: stopped, not restarted",
        restarting("r", life_span=60, ran=60),
        [Stop("r", "LifeSpanEnded")],
    ),
    (
        "between two runs its signal waits for the next run",
        restarting("r", life_span=60, ran=45, warn=20),
        [Start("r")],
    ),
    (
        "a suspended job's life span waits",
        job("s", JobStatus.SUSPENDED, cpu=8, life_span=1, ran=100),
        [],
    ),
]


@pytest.mark.parametrize(("running", "decisions"), [c[1:] for c in LIFE], ids=[c[0] for c in LIFE])
def test_plan_life_spans(running: JobRecord, decisions: list[Decision]) -> None:
    assert list(plan(snap(running)).decisions) == decisions


# -- the end of a run -----------------------------------------------------------------------
def _ended(code: int = 0, **kw: Any) -> ExitInfo:
    return ExitInfo(exit_code=code, finished_at=T0, **kw)


def _with(j: JobRecord, **spec: Any) -> JobRecord:
    return dataclasses.replace(j, spec=dataclasses.replace(j.spec, **spec))


RUNNING = job("r", JobStatus.RUNNING, ran=5)
ALWAYS = _with(RUNNING, restart_policy=RestartPolicy.ALWAYS)
ON_FAILURE = _with(RUNNING, restart_policy=RestartPolicy.ON_FAILURE)

RESTARTS: list[tuple[str, JobRecord, ExitInfo, bool]] = [
    ("never", RUNNING, _ended(1), False),
    ("always, after success", ALWAYS, _ended(0), True),
    ("on-failure, after success", ON_FAILURE, _ended(0), False),
    ("on-failure, after a failure", ON_FAILURE, _ended(3), True),
    ("on-failure, after OOM", ON_FAILURE, _ended(137, oom_killed=True), True),
    (
        "not after a kill",
        dataclasses.replace(ALWAYS, kill_reason="UserRequested"),
        _ended(143),
        False,
    ),
    ("not when it cannot run", ALWAYS, _ended(127, error="no such command"), False),
    ("not when its supervisor was lost", ALWAYS, _ended(137, lost="lost"), False),
    ("not past its life span", dataclasses.replace(ALWAYS, life_span=5.0), _ended(0), False),
    ("within its life span", dataclasses.replace(ALWAYS, life_span=6.0), _ended(0), True),
]


@pytest.mark.parametrize(
    ("j", "ex", "restarts"), [c[1:] for c in RESTARTS], ids=[c[0] for c in RESTARTS]
)
def test_lifecycle_restarts(j: JobRecord, ex: ExitInfo, restarts: bool) -> None:
    assert lifecycle.restarts(j, ex) is restarts


@pytest.mark.parametrize(
    ("count", "ran", "delay"),
    [(1, 5, 1), (2, 5, 2), (3, 5, 4), (5, 5, 16), (6, 5, 30), (20, 5, 30), (7, 600, 1)],
    ids=["first", "second", "third", "fifth", "capped", "still capped", "after a long run"],
)
def test_lifecycle_backoff(count: int, ran: float, delay: float) -> None:
    assert lifecycle.backoff(count, ran) == delay


ENDINGS: list[tuple[str, JobRecord, ExitInfo, lifecycle.Ending]] = [
    ("completed", RUNNING, _ended(0), lifecycle.Ending(JobStatus.SUCCEEDED, "Completed", "", 0)),
    (
        "error",
        RUNNING,
        _ended(2),
        lifecycle.Ending(JobStatus.FAILED, "Error", "The job exited with code 2", 2),
    ),
    (
        "oom",
        RUNNING,
        _ended(137, oom_killed=True),
        lifecycle.Ending(
            JobStatus.FAILED,
            "OOMKilled",
            "The job ran out of memory: the limit of its preset is 1.0 GiB",
            137,
        ),
    ),
    (
        "cannot run",
        RUNNING,
        _ended(127, error="sh: no such file"),
        lifecycle.Ending(JobStatus.FAILED, "ContainerCannotRun", "sh: no such file", 127),
    ),
    (
        "supervisor lost",
        RUNNING,
        _ended(137, lost="its supervisor was killed"),
        lifecycle.Ending(JobStatus.FAILED, "SupervisorLost", "Its supervisor was killed", 137),
    ),
    (
        "killed",
        dataclasses.replace(RUNNING, kill_reason="UserRequested"),
        _ended(143),
        lifecycle.Ending(
            JobStatus.CANCELLED, "UserRequested", "The job was killed on request", 143
        ),
    ),
    (
        "life span",
        dataclasses.replace(RUNNING, kill_reason="LifeSpanEnded"),
        _ended(143),
        lifecycle.Ending(
            JobStatus.CANCELLED,
            "LifeSpanEnded",
            "The job ran for its whole life span and was stopped",
            143,
        ),
    ),
]


@pytest.mark.parametrize(("j", "ex", "end"), [c[1:] for c in ENDINGS], ids=[c[0] for c in ENDINGS])
def test_lifecycle_ending(j: JobRecord, ex: ExitInfo, end: lifecycle.Ending) -> None:
    assert lifecycle.ending(j, ex) == end


def test_lifecycle_restart_description() -> None:
    assert lifecycle.restart_description(ON_FAILURE, _ended(3), 2, 2.0) == (
        "The job exited with code 3; restart 2 in 2s (restart policy on-failure)"
    )
    assert lifecycle.restart_description(ON_FAILURE, _ended(137, oom_killed=True), 1, 1.0) == (
        "The job ran out of memory; restart 1 in 1s (restart policy on-failure)"
    )
