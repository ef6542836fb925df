"""The slurm runtime's pure parts: Slurm 22.05's JSON (and later versions' forms) parsed, only
our own jobs seen, states and reasons in words, the batch script and sbatch command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from neuro_server.runtime.base import JobSpec
from neuro_server.runtime.slurm import states
from neuro_server.runtime.slurm.capacity import capacity_of, is_local
from neuro_server.runtime.slurm.commands import (
    gres_gpus,
    parse_oneline,
    parse_sacct,
    parse_sinfo,
    parse_squeue,
)
from neuro_server.runtime.slurm.script import batch_script, parse_sbatch, sbatch_argv, time_limit

SQUEUE_2205 = {
    "meta": {"Slurm": {"version": {"major": 22, "micro": 8, "minor": 5}}},
    "errors": [],
    "jobs": [
        {
            "job_id": 41,
            "name": "neuro-job-a",
            "comment": "neuro:job-a",
            "job_state": "RUNNING",
            "state_reason": "None",
            "batch_host": "n2",
            "nodes": "n2",
            "start_time": 1700000000,
        },
        {
            "job_id": 42,
            "name": "neuro-job-b",
            "comment": "neuro:job-b",
            "job_state": "PENDING",
            "state_reason": "Resources",
            "batch_host": "",
            "start_time": 1800000000,  # (Slurm's estimate: not a start)
        },
        # a foreign job named like ours, but not commented as ours: never ours
        {"job_id": 43, "name": "neuro-job-c", "comment": "", "job_state": "RUNNING"},
        {"job_id": 44, "name": "train", "comment": "neuro:train", "job_state": "RUNNING"},
    ],
}


def test_squeue_2205_only_our_jobs() -> None:
    jobs = {j.job_id: j for j in parse_squeue(json.dumps(SQUEUE_2205))}
    assert set(jobs) == {"job-a", "job-b"}
    a, b = jobs["job-a"], jobs["job-b"]
    assert (a.slurm_id, a.state, a.node, a.start_time) == (41, "RUNNING", "n2", 1700000000.0)
    assert (b.slurm_id, b.state, b.reason, b.node, b.start_time) == (
        42,
        "PENDING",
        "Resources",
        "",
        None,
    )


def test_squeue_later_versions_forms() -> None:
    """23.x: job_state a list, numbers as {set, number}."""
    text = json.dumps(
        {
            "jobs": [
                {
                    "job_id": 7,
                    "name": "neuro-x",
                    "comment": "neuro:x",
                    "job_state": ["RUNNING"],
                    "state_reason": "None",
                    "batch_host": "n1",
                    "start_time": {"set": True, "infinite": False, "number": 5},
                }
            ]
        }
    )
    (job,) = parse_squeue(text)
    assert (job.slurm_id, job.state, job.node, job.start_time) == (7, "RUNNING", "n1", 5.0)


def test_bad_json_is_a_slurm_error() -> None:
    from neuro_server.runtime.slurm.commands import SlurmError

    with pytest.raises(SlurmError, match="not JSON"):
        parse_squeue("squeue: error: slurm_load_jobs error: Unable to contact slurm controller")


SINFO_2205 = {
    "nodes": [
        {
            "name": "n1",
            "hostname": "vm",
            "address": "127.0.0.11",
            "cpus": 2,
            "real_memory": 4000,
            "gres": "",
            "state": "idle",
            "state_flags": [],
        },
        {
            "name": "n2",
            "hostname": "vm",
            "address": "127.0.0.12",
            "cpus": 4,
            "real_memory": 8000,
            "gres": "gpu:a100:2(S:0)",
            "state": "mixed",
            "state_flags": [],
        },
        {
            "name": "n3",
            "address": "10.0.0.3",
            "cpus": 8,
            "real_memory": 1000,
            "gres": "",
            "state": "idle",
            "state_flags": ["DRAIN"],
        },
        {"name": "n4", "address": "10.0.0.4", "cpus": 8, "real_memory": 1000, "state": "down"},
        # a node in two partitions: listed twice, counted once
        {"name": "n1", "address": "127.0.0.11", "cpus": 2, "real_memory": 4000, "state": "idle"},
    ]
}


def test_sinfo_capacity_counts_usable_nodes_once() -> None:
    nodes = parse_sinfo(json.dumps(SINFO_2205))
    assert [(n.name, n.address, n.cpus, n.memory, n.gpus) for n in nodes] == [
        ("n1", "127.0.0.11", 2, 4000 << 20, 0),
        ("n2", "127.0.0.12", 4, 8000 << 20, 2),
        ("n3", "10.0.0.3", 8, 1000 << 20, 0),
        ("n4", "10.0.0.4", 8, 1000 << 20, 0),
    ]
    cap = capacity_of(nodes)
    assert [n.name for n in cap.nodes] == ["n1", "n2"]  # drained and down ones left out
    assert (cap.cpu, cap.memory, cap.nvidia_gpu) == (6.0, 12000 << 20, 2)


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("", 0), ("gpu:2", 2), ("gpu:a100:4(S:0-1)", 4), ("gpu:1,shard:4", 1), ("(null)", 0)],
)
def test_gres_gpus(gres: str, gpus: int) -> None:
    assert gres_gpus(gres) == gpus


def test_loopback_addresses_are_local() -> None:
    assert is_local("127.0.0.12") and is_local("localhost")
    assert not is_local("10.0.0.3")


SACCT_2205 = {
    "jobs": [
        {
            "job_id": 50,
            "name": "neuro-job-d",
            "comment": {"administrator": None, "job": "neuro:job-d", "system": None},
            "state": {"current": "NODE_FAIL", "reason": "None"},
            "exit_code": {"status": "SIGNALED", "return_code": 0, "signal": {"signal_id": 9}},
            "nodes": "n1",
        },
        {
            "job_id": 51,
            "name": "neuro-job-e",
            "comment": {"job": "neuro:job-e"},
            "state": {"current": "COMPLETED", "reason": "None"},
            "exit_code": {"status": "SUCCESS", "return_code": 0},
            "nodes": "n2",
        },
        {"job_id": 52, "name": "neuro-job-f", "comment": {"job": None}, "state": {}},
    ]
}


def test_sacct_2205() -> None:
    found = {a.job_id: a for a in parse_sacct(json.dumps(SACCT_2205))}
    assert set(found) == {"job-d", "job-e"}
    d, e = found["job-d"], found["job-e"]
    assert (d.slurm_id, d.state, d.signal, d.node) == (50, "NODE_FAIL", 9, "n1")
    assert states.exit_code(d.state, d.return_code, d.signal) == 137
    assert states.exit_code(e.state, e.return_code, e.signal) == 0


def test_scontrol_oneline() -> None:
    line = "JobId=41 JobName=neuro-job-a UserId=root(0) JobState=RUNNING Reason=None NodeList=n2"
    got = parse_oneline(line + "\n")
    assert (got["JobId"], got["JobState"], got["NodeList"]) == ("41", "RUNNING", "n2")


def test_states_in_words() -> None:
    assert states.pending_words("Resources") == (
        "Pending in Slurm: no node has the CPUs, memory or GPUs it asks free now (Resources)"
    )
    assert states.pending_words("SomethingNew") == "Pending in Slurm: SomethingNew"
    # no reason yet: no "None" shown, and the status reason is Scheduling
    assert states.pending_words("None") == "Pending in Slurm: about to be placed on a node"
    assert (states.pending_reason("None"), states.pending_reason("")) == ("Submitted",) * 2
    assert states.pending_reason("Priority") == "Priority"
    assert states.end_words("NODE_FAIL") == "the job's node failed (Slurm took it down)"
    assert states.end_words("CANCELLED by 0") == "Slurm cancelled the job"
    assert states.end_words("TIMEOUT", "TimeLimit") == (
        "the job reached its time limit in Slurm: TimeLimit"
    )
    assert states.exit_code("FAILED", 3, None) == 3
    assert states.exit_code("TIMEOUT", 0, None) == 137


def spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {"job_id": "job-1", "argv": ["true"], "env": {}}
    base.update(working_dir=None, cpu=0.5, memory=100 << 20)
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def test_sbatch_argv(tmp_path: Path) -> None:
    d = tmp_path / "job-1"
    argv = sbatch_argv(
        spec(cpu=1.5, memory=(1 << 30) + 1, gpus=2), d, partition="gpu", life_span=61
    )
    assert argv[:2] == ["sbatch", "--parsable"]
    assert "--job-name=neuro-job-1" in argv and "--comment=neuro:job-1" in argv
    assert "--no-requeue" in argv and "--nodes=1" in argv
    assert "--cpus-per-task=2" in argv and "--mem=1025M" in argv and "--gres=gpu:2" in argv
    assert "--partition=gpu" in argv and "--time=2" in argv
    assert argv[-1] == str(d / "slurm.sh")
    plain = sbatch_argv(spec(cpu=0, memory=0), d)
    assert not [a for a in plain if a.startswith(("--cpus", "--mem", "--gres", "--part", "--time"))]


def test_time_limit_rounds_up_to_minutes() -> None:
    assert [time_limit(s) for s in (None, 0, 1, 60, 61, 3600)] == [None, None, "1", "1", "2", "60"]


def test_parse_sbatch() -> None:
    assert parse_sbatch("42\n") == 42
    assert parse_sbatch("43;local\n") == 43
    with pytest.raises(ValueError, match="no job id"):
        parse_sbatch("")


def test_batch_script_execs_the_supervisor(tmp_path: Path) -> None:
    d = tmp_path / "my job"
    text = batch_script(d, python="/usr/bin/python3")
    assert text.startswith("#!/bin/sh\n")
    assert text.rstrip().splitlines()[-1] == (
        f"exec /usr/bin/python3 -S -m neuro_server.runtime.process.supervisor '{d}' --foreground"
    )
    check = subprocess.run(["sh", "-n"], input=text.encode(), capture_output=True, check=False)
    assert check.returncode == 0, check.stderr


def test_supervisor_in_the_foreground_leaves_limits_to_slurm(tmp_path: Path) -> None:
    """What the batch script runs: the supervisor does not fork away (the batch step is its
    process), makes no cgroup nor rlimit, passes SLURM_* to the job, records the exit."""
    from neuro_server.runtime.jobdir import read_json, write_json
    from neuro_server.runtime.process.spec import spec_record
    from neuro_server.runtime.slurm.script import HOST_ENV_PREFIXES

    d = tmp_path / "job-1"
    d.mkdir()
    argv = [
        sys.executable,
        "-c",
        "import os, resource; print(os.environ['SLURM_JOB_ID'],"
        " resource.getrlimit(resource.RLIMIT_DATA)[0] == resource.RLIM_INFINITY)",
    ]
    record = spec_record(
        spec(argv=argv),
        cgroup_parent="neuro-never",
        cgroup_root="",
        attach_max_lag=None,
        pids_limit=0,
        output_limit=0,
    )
    record.update(limits_by="Slurm", host_env_prefixes=list(HOST_ENV_PREFIXES))
    write_json(str(d / "spec.json"), record)
    script = d / "slurm.sh"
    script.write_text(batch_script(d))
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "4242"}
    done = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    # it returned only once the job had ended: the exit is recorded, the output written
    exit_record = read_json(str(d / "exit.json"))
    assert exit_record is not None and exit_record["exit_code"] == 0
    assert exit_record["limits"] == "memory 100 MiB and cpu 0.5 enforced by Slurm"
    assert b"4242 True" in (d / "output.log").read_bytes()
    assert not Path("/sys/fs/cgroup/memory/neuro-never").exists()
