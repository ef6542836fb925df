"""Shared fixtures: every test owns its HOME, config dir and server, and leaves no process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.slurm_cluster import slurm_cluster, slurm_jobs  # noqa: F401  (fixtures for every test)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("NEURO_", "APOLO_")) or key in (
            "NO_COLOR",
            "CLICOLOR_FORCE",
            "PAGER",
            "COLUMNS",
        ):
            monkeypatch.delenv(key, raising=False)


def kill_tree_of(data_dir: Path) -> None:
    """Kill every process started for a server data dir: the server, supervisors, jobs."""
    import psutil

    marker = str(data_dir)
    victims = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.Error, TypeError):
            continue
        if marker in cmd:
            victims.append(p)
    # the jobs: whole process groups recorded by their supervisors
    for started in data_dir.glob("jobs/*/started.json"):
        try:
            import json

            pid = int(json.loads(started.read_text())["pid"])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(victims, timeout=5)
    kill_cgroups_of(data_dir)


def kill_cgroups_of(data_dir: Path) -> None:
    """Kill what is left in the cgroups of a data dir's jobs and remove them: a job frozen
    (suspended) when its supervisor was killed would otherwise stay frozen, and its cgroup
    with it, for good (a killed process in a frozen cgroup dies only once thawed)."""
    import json

    from neuro_server.runtime import cgroups

    for spec in data_dir.glob("jobs/*/spec.json"):
        try:
            data = json.loads(spec.read_text())
            parent, job_id = str(data.get("cgroup_parent") or "neuro"), str(data["job_id"])
        except (OSError, ValueError, KeyError):
            continue
        cg = cgroups.JobCgroup.find(parent, job_id)
        if cg is not None:
            cg.kill()  # (freezes, kills and thaws)
            cg.remove()


class Neuro:
    """Runs the `neuro` CLI as a user would, with its own HOME and config dir."""

    #: the server's runtime ("process" or "docker") and an image the tests' jobs run in
    runtime = "process"
    image = "ubuntu"  # not used by the process runtime

    def __init__(self, home: Path) -> None:
        self.home = home
        self.config_dir = home / ".neuro"
        self.server_dir = self.config_dir / "server"
        self.env = {
            "HOME": str(home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NEURO_CONFIG": str(self.config_dir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }

    def write_server_config(self, text: str) -> None:
        self.server_dir.mkdir(parents=True, exist_ok=True)
        (self.server_dir / "server.toml").write_text(text)

    def __call__(
        self,
        *args: str,
        timeout: float = 60,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "neuro_cli", *args],
            env={**self.env, **(env or {})},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        kw.setdefault("text", True)  # text=False for bytes
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            [sys.executable, "-m", "neuro_cli", *args],
            env=self.env,
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kw,
        )

    def ok(self, *args: str, timeout: float = 60) -> str:
        r = self(*args, timeout=timeout)
        assert r.returncode == 0, (
            f"neuro {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        )
        return r.stdout

    def wait_status(self, job: str, want: set[str], timeout: float = 30) -> str:
        """Wait until the job's status is one of ``want``.  The CLI resolves the job once
        (``status --json``: names too); then the server is asked directly, as ``neuro status``
        would (a CLI process per poll cost a core's worth of interpreter starts)."""
        import json

        deadline = time.monotonic() + timeout
        r = self("status", "--json", job)
        last = json.loads(r.stdout)["status"] if r.returncode == 0 else ""
        job_id = json.loads(r.stdout)["id"] if r.returncode == 0 else job
        while last not in want:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job} did not reach {want} (last: {last})")
            time.sleep(0.1)
            last = self.api_job(job_id).get("status", last)
        return last

    def api_job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}`` of the server the CLI talks to (its login, else the embedded
        server), as the API answers it; ``{}`` when it does not answer."""
        return self.api("GET", f"/jobs/{job_id}")

    def api(self, method: str, path: str) -> dict[str, Any]:
        """One request to the server the CLI talks to; its JSON answer, ``{}`` when it does
        not answer (or answers with no JSON)."""
        import json
        import urllib.error
        import urllib.request

        try:
            url, token = self._api()
            req = urllib.request.Request(
                f"{url}{path}", method=method, headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = resp.read()
            return json.loads(body) if body else {}  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            return {}

    def kill_all(self) -> None:
        """Kill the jobs that still run or wait (a test's teardown), through the API: a CLI
        process per job cost a second of CPU per test on the engines' runtimes."""
        listed = self.api("GET", "/jobs?status=pending&status=running&status=suspended")
        for job in listed.get("jobs", []):
            self.api("DELETE", f"/jobs/{job['id']}")

    def _api(self) -> tuple[str, str]:
        import json

        login = self.config_dir / "config.json"
        if login.exists():
            cfg = json.loads(login.read_text())
            return cfg["url"], cfg["token"]
        info = json.loads((self.server_dir / "server.json").read_text())
        return info["url"], Path(info["token_file"]).read_text().strip()

    def job_output(self, job: str) -> str:
        """What a job printed so far, read from its log file (`neuro logs` would follow it)."""
        path = self.server_dir / "jobs" / job / "output.log"
        return path.read_text() if path.exists() else ""

    def server_pid(self) -> int | None:
        import json

        try:
            return int(json.loads((self.server_dir / "server.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None


SERVER_TOML = """
[server]
kill_grace_seconds = 3
runtime = "process"

[resources]
cpu = 32
memory = "64GiB"
"""


@pytest.fixture
def neuro(tmp_path: Path) -> Iterator[Neuro]:
    home = tmp_path / "home"
    home.mkdir()
    n = Neuro(home)
    n.write_server_config(SERVER_TOML)
    try:
        yield n
    finally:
        n("server", "stop", timeout=30)
        kill_tree_of(n.server_dir)
