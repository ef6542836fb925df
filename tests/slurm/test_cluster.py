"""The CI Slurm cluster itself (.ci/slurm-setup.sh): two nodes, each with its own network,
sized so that a job can fit the cluster but not a partly busy node, with accounting and REST."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import pytest

from tests.slurm_cluster import ENDED, SlurmCluster, SlurmError, SlurmJobs

SLEEPER = "#!/bin/sh\nexec sleep 120\n"


def wait_file(path: Path, needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {needle!r} not in {text!r}")
        time.sleep(0.05)


def test_two_nodes_are_up_with_their_size(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.run("sinfo", "-h", "-N", "-p", slurm_cluster.partition, "-o", "%N %c %m %t")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert len(slurm_cluster.nodes) >= 2
    for node in slurm_cluster.nodes:
        cpus, mem, state = rows[node]
        assert (cpus, mem) == ("2", "4000")
        assert state in {"idle", "mix", "alloc"}, f"{node} is {state}"
    addrs = [slurm_cluster.node_addrs[n] for n in slurm_cluster.nodes]
    assert len(set(addrs)) == len(addrs)
    for node in slurm_cluster.nodes:
        show = slurm_cluster.run("scontrol", "show", "node", node)
        assert f"NodeAddr={slurm_cluster.node_addrs[node]} " in show


def test_a_job_pinned_to_each_node_runs_there(
    slurm_cluster: SlurmCluster, slurm_jobs: SlurmJobs, tmp_path: Path
) -> None:
    outs = {}
    for node in slurm_cluster.nodes:
        out = tmp_path / f"{node}.out"
        script = '#!/bin/sh\necho "node=$SLURMD_NODENAME"\nip -o -4 addr show eth0\necho done\n'
        slurm_jobs.sbatch("-w", node, "-o", str(out), script=script)
        outs[node] = out
    for node, out in outs.items():
        text = wait_file(out, "done")
        assert f"node={node}\n" in text
        assert f" {slurm_cluster.node_addrs[node]}/" in text  # the job sees its node's network


def test_a_job_too_big_for_a_busy_node_waits_for_resources_then_runs(
    slurm_cluster: SlurmCluster, slurm_jobs: SlurmJobs
) -> None:
    n1, n2 = slurm_cluster.nodes[:2]
    with pytest.raises(SlurmError, match="Requested node configuration is not available"):
        slurm_jobs.sbatch("-c", "3", script=SLEEPER)  # more than any one node has
    holders = [
        slurm_jobs.sbatch("-w", n, "-c", "1", "--mem=100M", script=SLEEPER) for n in (n1, n2)
    ]
    for job in holders:
        slurm_cluster.wait_state(job, {"RUNNING"})
    big = slurm_jobs.sbatch("-c", "2", "--mem=100M", script=SLEEPER)  # 2 free CPUs, on 2 nodes
    assert slurm_cluster.wait_job(big, {"PENDING"}, reason="Resources")["state"] == "PENDING"
    slurm_cluster.run("scancel", str(holders[0]))
    assert slurm_cluster.wait_state(big, {"RUNNING"})["nodes"] == n1


def test_a_port_in_a_job_on_n2_is_reached_at_n2s_address(
    slurm_cluster: SlurmCluster, slurm_jobs: SlurmJobs
) -> None:
    n1, n2 = slurm_cluster.nodes[:2]
    port = random.randint(20000, 40000)
    server = (
        "#!/bin/sh\nexec python3 -c '\n"
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f's.bind(("0.0.0.0", {port})); s.listen()\n'
        "while True:\n"
        '    c, _ = s.accept(); c.sendall(b"hello from " + socket.gethostname().encode()); c.close()\n'
        "'\n"
    )
    job = slurm_jobs.sbatch("-w", n2, script=server)
    slurm_cluster.wait_state(job, {"RUNNING"})
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection((slurm_cluster.node_addrs[n2], port), timeout=2) as c:
                assert c.recv(100).startswith(b"hello from ")
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    # n1 is another network: nothing listens on that port there, nor on the login side's loopback
    for addr in (slurm_cluster.node_addrs[n1], "127.0.0.1"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((addr, port), timeout=2).close()


def test_an_overlap_step_runs_in_a_running_job_on_its_node(
    slurm_cluster: SlurmCluster, slurm_jobs: SlurmJobs
) -> None:
    node = slurm_cluster.nodes[-1]
    job = slurm_jobs.sbatch("-w", node, "--mem=100M", script=SLEEPER)
    slurm_cluster.wait_state(job, {"RUNNING"})
    out = slurm_cluster.run(
        "srun", f"--jobid={job}", "--overlap", "--mem=10M", "sh", "-c", "echo $SLURMD_NODENAME"
    )
    assert out.strip() == node


def test_sacct_knows_a_finished_job(slurm_cluster: SlurmCluster, slurm_jobs: SlurmJobs) -> None:
    job = slurm_jobs.sbatch("-o", "/dev/null", script="#!/bin/sh\nexit 3\n")
    assert slurm_cluster.wait_state(job, set(ENDED))["state"] == "FAILED"
    deadline = time.monotonic() + 20
    while True:
        out = slurm_cluster.run(
            "sacct", "-n", "-P", "-X", "-j", str(job), "-o", "JobID,State,ExitCode"
        )
        # slurmctld sends the record to slurmdbd as the job goes: it may still say PENDING
        if out.strip().split("|")[1:2] and out.strip().split("|")[1] in ENDED:
            assert out.strip() == f"{job}|FAILED|3:0"
            break
        assert time.monotonic() < deadline, f"sacct has no finished record of job {job}: {out!r}"
        time.sleep(0.1)


def test_slurmrestd_answers_ping_with_a_token(slurm_cluster: SlurmCluster) -> None:
    data = slurm_cluster.rest_get("/slurm/v0.0.38/ping")
    pings = data["pings"]
    assert isinstance(pings, list) and pings[0]["ping"] == "UP"
    nodes = slurm_cluster.rest_get("/slurm/v0.0.38/nodes")["nodes"]
    assert isinstance(nodes, list)
    assert {n["name"] for n in nodes} >= set(slurm_cluster.nodes)
