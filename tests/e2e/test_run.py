"""neuro run end to end: CLI -> SDK -> embedded server -> runtime (process and docker)."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import Neuro
from tests.e2e.conftest import server_toml

JOB_ID = re.compile(r"job-[0-9a-f-]{36}")


def test_run_prints_output_and_exits_0(neuro: Neuro) -> None:
    r = neuro("run", "--preset", "cpu-small", neuro.image, "--", "echo", "hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n"
    assert JOB_ID.search(r.stderr)
    if neuro.runtime in ("process", "slurm"):
        assert "does not use the image ubuntu" in r.stderr
    else:
        assert "does not use the image" not in r.stderr


def test_run_as_the_servers_own_user_as_ever(neuro: Neuro, tmp_path) -> None:
    """The embedded server's user (the one platform user of a single-user machine) runs as
    the server's uid, in the job's own working dir, writing host paths as that user."""
    if neuro.runtime != "process":
        pytest.skip("the process runtime's jobs run on the host")
    out = tmp_path / "out"
    r = neuro("run", neuro.image, "--", "sh", "-c", f'id -u; pwd; echo "${{HOME-unset}}" > {out}')
    assert r.returncode == 0, r.stderr
    uid, cwd = r.stdout.split()
    assert uid == str(os.getuid()) and cwd.endswith("/work") and "/jobs/job-" in cwd
    assert out.read_text() == f"{neuro.home}\n" and out.stat().st_uid == os.getuid()


def test_process_jobs_get_the_users_environment_as_srun_passes_it(neuro: Neuro, tmp_path) -> None:
    """Issue 16 item 6: the job got an empty HOME and a reset PATH, so `python train.py` and
    `neuro` inside a job were not found.  The embedded server's environment (its user's) goes
    through; -e wins."""
    if neuro.runtime != "process":
        pytest.skip("a container has its image's environment")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    tool = venv / "bin" / "mytool"
    tool.write_text("#!/bin/sh\necho mytool-ran\n")
    tool.chmod(0o755)
    neuro.env = {
        **neuro.env,
        "VIRTUAL_ENV": str(venv),
        "LANG": "C.UTF-8",
        "PATH": f"{venv / 'bin'}:{neuro.env['PATH']}",
    }
    script = 'echo "$HOME|$VIRTUAL_ENV|$LANG"; mytool; command -v neuro >/dev/null && echo found'
    out = neuro.ok("run", neuro.image, "--", "sh", "-c", script).splitlines()
    assert out == [f"{neuro.home}|{venv}|C.UTF-8", "mytool-ran", "found"]
    out = neuro.ok(
        "run",
        "-e",
        "HOME=/elsewhere",
        "-e",
        "LANG=C",
        neuro.image,
        "--",
        "sh",
        "-c",
        'echo "$HOME $LANG"',
    )
    assert out == "/elsewhere C\n"


def test_run_exit_code_passes_through(neuro: Neuro) -> None:
    r = neuro("run", neuro.image, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert "out\n" in r.stdout and "err\n" in r.stdout
    assert "failed (Error, exit code 3)" in r.stderr


def test_run_env_workdir_entrypoint(neuro: Neuro, tmp_path) -> None:
    envfile = tmp_path / "vars.env"
    envfile.write_text("# comment\nA=from-file\nB=file\n")
    r = neuro(
        "run",
        "--env-file",
        str(envfile),
        "-e",
        "B=cli",
        "-e",
        "C=x y",
        "--workdir",
        "/tmp",
        "--entrypoint",
        "sh -c",
        neuro.image,
        "--",
        'echo "$A $B $C $(pwd)"; env | grep -c NEURO_CONFIG || true',
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "from-file cli x y /tmp"
    assert lines[1] == "0"  # the client's environment does not leak into the job


def test_run_detach_then_logs_and_status(neuro: Neuro) -> None:
    r = neuro(
        "run",
        "--detach",
        "-n",
        "det-job",
        "--tag",
        "a",
        "--tag",
        "b",
        "-d",
        "my desc",
        neuro.image,
        "--",
        "sh",
        "-c",
        "echo one; echo two",
    )
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    assert JOB_ID.fullmatch(job_id)
    neuro.wait_status("det-job", {"succeeded"})
    assert neuro.ok("logs", "det-job") == "one\ntwo\n"
    st = neuro.ok("status", job_id)
    assert f"Job: {job_id}" in st
    assert "Name: det-job" in st
    assert "Tags: a, b" in st
    assert "Description: my desc" in st
    assert "Status: succeeded (Completed)" in st
    assert "Exit code: 0" in st
    assert "Preset: cpu-small" in st
    if neuro.runtime in ("process", "slurm"):
        assert f"Runtime: {neuro.runtime} (the image is not used" in st
    else:
        assert "Runtime: docker" in st
    assert "Limits: " in st
    assert re.search(r"Created: \d{4}-\d\d-\d\dT", st)


def test_run_quiet_detach_prints_only_id(neuro: Neuro) -> None:
    r = neuro("run", "-q", "--detach", neuro.image, "--", "true")
    assert r.returncode == 0
    assert JOB_ID.fullmatch(r.stdout.strip())
    assert r.stderr == ""


def test_run_command_not_found_127(neuro: Neuro) -> None:
    r = neuro("run", neuro.image, "--", "no-such-command-xyz")
    assert r.returncode == 127
    assert "no-such-command-xyz" in r.stdout + r.stderr
    assert "ContainerCannotRun" in r.stderr


def test_run_life_span_ends_job(neuro: Neuro) -> None:
    r = neuro("run", "--life-span", "2s", neuro.image, "--", "sh", "-c", "echo started; sleep 60")
    assert "started" in r.stdout
    assert "cancelled (LifeSpanEnded)" in r.stderr
    assert r.returncode == 143  # SIGTERM


def test_run_oom_killed(neuro: Neuro) -> None:
    neuro.write_server_config(
        server_toml(neuro.runtime, '[[presets]]\nname = "tiny"\ncpu = 0.5\nmemory = "64MiB"\n')
    )
    # dd fills a 400 MiB buffer: over the 64 MiB limit
    r = neuro(
        "run",
        "--preset",
        "tiny",
        neuro.image,
        "--",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=400M",
        "count=1",
    )
    assert r.returncode == 137, r.stderr
    assert "OOMKilled" in r.stderr


def test_bad_input_clear_errors(neuro: Neuro) -> None:
    r = neuro("run", "--preset", "nope", neuro.image, "--", "true")
    assert r.returncode == 65
    assert r.stderr.startswith("ERROR: unknown preset 'nope'")
    assert "Traceback" not in r.stderr
    r = neuro("run", "-n", "Bad_Name", neuro.image, "--", "true")
    assert r.returncode == 65 and "invalid job name" in r.stderr
    for span in ("0s", "-5m", "abc"):
        r = neuro("run", "--life-span", span, neuro.image, "--", "true")
        assert r.returncode == 2, (span, r.stderr)
        assert "life-span" in r.stderr
    r = neuro("status", "job-00000000-0000-0000-0000-000000000000")
    assert r.returncode == 72 and "no such job" in r.stderr
    r = neuro("status", "no-such-name")
    assert r.returncode == 72 and "neuro ps -a" in r.stderr
    # nothing was stored by the refused requests
    assert neuro.ok("ps", "-a", "-q") == ""


def test_config_show_and_token(neuro: Neuro) -> None:
    out = neuro.ok("config", "show")
    assert "cpu-small" in out and "gpu-small" in out
    if neuro.runtime == "process" and os.geteuid() == 0:  # (the process runtime: jobusers.py)
        assert "  users: each user's jobs run as a uid of their own\n" in out, out
        assert "  ports: each user's jobs reach only their own jobs' ports directly" in out
    gpu_line = next(line for line in out.splitlines() if "gpu-small" in line)
    assert gpu_line.rstrip().endswith("\t0")  # no GPU on this machine
    token = neuro.ok("config", "show-token").strip()
    assert token.count(".") == 2
    info = json.loads((neuro.server_dir / "server.json").read_text())
    assert info["url"].startswith("http://127.0.0.1:")
    mode = (neuro.server_dir / "token").stat().st_mode & 0o777
    assert mode == 0o600


def test_privileged_only_where_allowed(neuro: Neuro) -> None:
    caps = ["sh", "-c", "grep CapEff /proc/self/status"]
    r = neuro("run", "--privileged", neuro.image, "--", *caps)
    assert r.returncode == 65, r.stderr
    assert "privileged jobs are not allowed on this server" in r.stderr
    neuro("server", "stop")
    neuro.write_server_config(server_toml(neuro.runtime, server="allow_privileged = true\n"))
    r = neuro("run", "--privileged", neuro.image, "--", *caps)
    if neuro.runtime in ("process", "slurm"):
        assert r.returncode == 65 and "privileged jobs need the docker runtime" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    full = int(r.stdout.split()[1], 16)
    plain = int(neuro.ok("run", neuro.image, "--", *caps).split()[1], 16)
    assert full & ~plain, (hex(full), hex(plain))  # more capabilities than a plain container
    assert full & (1 << 21)  # CAP_SYS_ADMIN


def test_job_tags_and_extshm(neuro: Neuro) -> None:
    neuro.ok(
        "run", "-q", "--detach", "--tag", "nightly", "--tag", "exp:3", neuro.image, "--", "true"
    )
    neuro.ok("run", "-q", "--detach", "--tag", "adhoc", neuro.image, "--", "true")
    assert neuro.ok("job", "tags").split() == ["adhoc", "exp:3", "nightly"]
    shm = "df -m /dev/shm | tail -1 | awk '{print $2}'"
    if neuro.runtime == "docker":  # a container's /dev/shm: large by default, 64 MiB without
        big = int(neuro.ok("run", neuro.image, "--", "sh", "-c", shm).strip())
        small = int(neuro.ok("run", "--no-extshm", neuro.image, "--", "sh", "-c", shm).strip())
        assert small <= 64 < big, (small, big)
