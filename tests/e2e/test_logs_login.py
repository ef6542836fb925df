"""logs (empty output, since, timestamps), Ctrl-C detach, login/logout and another user's job."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import UTC, datetime

from tests.conftest import Neuro


def test_logs_of_job_without_output_ends(neuro: Neuro) -> None:
    job = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "0.5").strip()
    r = neuro("logs", job, timeout=20)  # follows while running, ends when the job ends
    assert r.returncode == 0 and r.stdout == ""
    assert "Status: succeeded" in neuro.ok("status", job)
    r = neuro("logs", job, timeout=20)  # finished and empty
    assert r.returncode == 0 and r.stdout == ""


def test_logs_timestamps_and_since(neuro: Neuro) -> None:
    job = neuro.ok(
        "run", "-q", "--detach", neuro.image, "--", "sh", "-c", "echo early; sleep 1.2; echo late"
    ).strip()
    neuro.wait_status(job, {"succeeded"})
    lines = neuro.ok("logs", "--timestamps", job).splitlines()
    assert len(lines) == 2
    stamps = []
    for line, text in zip(lines, ("early", "late"), strict=False):
        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9})Z " + text, line)
        assert m, line
        stamps.append(datetime.fromisoformat(m.group(1)[:26]).replace(tzinfo=UTC))
    assert (stamps[1] - stamps[0]).total_seconds() >= 1.0
    middle = stamps[0].timestamp() + 0.6
    since = datetime.fromtimestamp(middle, UTC).isoformat()
    assert neuro.ok("logs", "--since", since, job) == "late\n"
    assert neuro.ok("logs", "--since", "1h", job) == "early\nlate\n"
    r = neuro("logs", "--since", "not-a-date", job)
    assert r.returncode == 2 and "invalid date" in r.stderr


def test_ctrl_c_detaches_and_job_goes_on(neuro: Neuro) -> None:
    p = neuro.popen(
        "run", "-n", "keeps-going", neuro.image, "--", "sh", "-c", "echo tick; sleep 30"
    )
    assert p.stdout is not None
    assert p.stdout.readline() == "tick\n"  # attached and streaming
    p.send_signal(signal.SIGINT)
    _out, err = p.communicate(timeout=20)
    # without a terminal to ask on, Ctrl-C detaches, and the command ends as interrupted (130
    # in a shell, by SIGINT: a script's loop stops too); the hints name the job by its name
    assert p.returncode == -signal.SIGINT
    assert "Detached from keeps-going" in err and "neuro logs keeps-going" in err
    assert "Traceback" not in err
    assert "Status: running" in neuro.ok("status", "keeps-going")
    neuro.ok("kill", "keeps-going")


def test_server_commands(neuro: Neuro) -> None:
    assert "stopped" in neuro.ok("server", "status")
    out = neuro.ok("server", "start")
    assert "Local server running at http://127.0.0.1:" in out
    assert "running at" in neuro.ok("server", "status")
    job = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "30").strip()
    assert "Stopped the local server" in neuro.ok("server", "stop")
    assert "stopped" in neuro.ok("server", "status")
    # the job went on without the server; the next command starts it again
    assert "Status: running" in neuro.ok("status", job)
    neuro.ok("kill", job)


def test_login_as_another_user_and_logout(neuro: Neuro, tmp_path) -> None:
    mine = neuro.ok(
        "run", "-q", "--detach", "-n", "private", neuro.image, "--", "sleep", "30"
    ).strip()
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    bob_token = subprocess.run(
        ["neuro-server", "add-user", "bob", "--data-dir", str(neuro.server_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=neuro.env,
    ).stdout.strip()
    bob_home = tmp_path / "bob"
    bob_home.mkdir()
    bob = Neuro(bob_home)
    r = bob("login", url, "--token", "not-a-token")
    assert r.returncode == 77 and r.stderr.startswith("ERROR: ")
    assert f"Logged into {url} as bob" in bob.ok("login", url, "--token", bob_token)
    r = bob("status", mine)
    assert r.returncode == 77 and "no permission" in r.stderr
    r = bob("kill", mine)
    assert r.returncode == 1 and "no permission" in r.stderr
    assert bob.ok("ps", "-a", "-q") == ""
    assert "private" not in bob.ok("ps", "-a")
    r = bob("logs", mine)
    assert r.returncode == 77
    assert "Logged out" in bob.ok("logout")
    assert not (bob.config_dir / "config.json").exists()
    assert "Status: running" in neuro.ok("status", mine)
    neuro.ok("kill", mine)
    assert not (bob.server_dir / "server.json").exists()  # bob never needed a local server
