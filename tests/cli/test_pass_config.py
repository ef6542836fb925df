"""pass_config: `neuro` inside a job acts as the job's owner (process runtime: the job runs the
CLI of this checkout); a job without it gets no credentials."""

from __future__ import annotations

import re
import sys

from tests.conftest import Neuro


def test_job_starts_a_sub_job_as_its_owner(neuro: Neuro) -> None:
    script = (
        f"{sys.executable} -m neuro_cli run -q --detach -n child ubuntu -- echo child-ran"
        f" && {sys.executable} -m neuro_cli ps -a --format 'name' | tail -n +2"
    )
    r = neuro("run", "--pass-config", "ubuntu", "--", "sh", "-c", script, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.split()
    child = next(x for x in lines if re.fullmatch(r"job-[0-9a-f-]{36}", x))
    assert "child" in lines  # it listed the owner's jobs, the new one included
    neuro.wait_status(child, {"succeeded"})
    assert neuro.ok("logs", child) == "child-ran\n"
    assert "--pass-config" in neuro.ok(
        "job", "generate-run-command", r.stderr.split("Job ID: ")[1].split()[0]
    )
    r = neuro("run", "ubuntu", "--", "sh", "-c", "echo [${NEURO_PASSED_CONFIG:-none}]")
    assert r.stdout == "[none]\n"
