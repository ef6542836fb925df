"""Issue 16's rough edges, as a new user meets them: one style for every error (usage errors
too), login errors that say what is wrong, one wording for a missing job and for a job that
is not running, local file errors that are not the server's, paths as the user wrote them,
hints that name our spelling of docker's habits, and tables that a terminal shows straight."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import tomllib

import pexpect
import pytest

from tests.conftest import ROOT, Neuro


def error_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    return r.stderr.splitlines()


@pytest.mark.parametrize(
    "args, message, hint",
    [
        (("run",), "ERROR: missing argument 'IMAGE'", "usage: neuro run [OPTIONS] IMAGE [CMD]..."),
        (("run", "--bogus", "x"), "ERROR: no such option: --bogus", "usage: neuro run"),
        (("run", "--presett", "x"), "ERROR: no such option: --presett", "did you mean --preset"),
        (("stauts",), "ERROR: no such command 'stauts'", "did you mean `neuro status`?"),
        (("job", "brwose"), "ERROR: no such command 'brwose'", "did you mean `neuro job browse`?"),
        (("xyzzy",), "ERROR: no such command 'xyzzy'", "`neuro --help` lists the commands"),
        (
            ("run", "-it", "ubuntu", "bash"),
            "ERROR: no such option: -i",
            "`neuro run -t` is docker's -it",
        ),
        (("run", "--rm", "ubuntu"), "ERROR: no such option: --rm", "nothing to remove"),
        (
            ("run", "-p", "8888:8888", "x"),
            "ERROR: no such option: -p",
            "--port-forward LOCAL:REMOTE",
        ),
        (
            ("login", "not-a-url", "--token", "t"),
            "ERROR: invalid value for URL: 'not-a-url' is not a server URL",
            "usage: neuro login",
        ),
    ],
    ids=[
        "missing-arg",
        "bad-option",
        "close-option",
        "close-command",
        "close-subcommand",
        "no-close-command",
        "docker-it",
        "docker-rm",
        "docker-p",
        "login-not-a-url",
    ],
)
def test_usage_errors_are_one_error_line_and_a_hint(
    neuro: Neuro, args: tuple[str, ...], message: str, hint: str
) -> None:
    r = neuro(*args)
    assert r.returncode == 2, r.stderr
    lines = error_lines(r)
    assert len(lines) == 2 and lines[0].startswith(message), lines  # not click's 3 lines
    assert lines[1].startswith("  hint: ") and hint in lines[1], lines
    assert "Usage:" not in r.stderr and "Error:" not in r.stderr and "Try " not in r.stderr


def test_login_errors_say_what_is_wrong(neuro: Neuro) -> None:
    r = neuro("login", "http://127.0.0.1:1/api/v1", "--token", "t")
    assert r.returncode == 74
    lines = error_lines(r)
    assert lines[0] == "ERROR: cannot reach http://127.0.0.1:1/api/v1: connection refused", lines
    assert "neuro-server serve" in lines[1] and "neuro server status" not in r.stderr, lines
    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    r = neuro("login", url, "--token", "not-a-token")
    assert r.returncode == 77
    assert error_lines(r)[0] == f"ERROR: the server at {url} refused the token: invalid token"
    assert "log in again" not in r.stderr and "neuro-server token" in r.stderr


def test_missing_and_not_running_jobs_in_one_wording(neuro: Neuro) -> None:
    missing_id = "job-00000000-0000-0000-0000-000000000000"
    for ref in ("no-such-name", missing_id):
        r = neuro("status", ref)
        assert r.returncode == 72
        hint = "JOB is an id or the name of one of your jobs; `neuro ps -a` lists them all"
        assert error_lines(r) == [f"ERROR: no such job: {ref}", f"  hint: {hint}"], r.stderr
    job = neuro.ok("run", "-q", "--detach", "-n", "done-job", "ubuntu", "--", "true").strip()
    assert neuro.wait_status(job, {"succeeded"}) == "succeeded"
    for args in (
        ("exec", "-T", "done-job", "--", "true"),
        ("attach", "done-job"),
        ("kill", "done-job"),
        ("port-forward", "done-job", "9:9"),
    ):
        r = neuro(*args)
        assert r.returncode != 0
        assert "it has already finished (succeeded)" in r.stderr, (args, r.stderr)
        assert "is succeeded" not in r.stderr and "is already succeeded" not in r.stderr


def test_local_file_errors_are_ours_and_paths_as_written(neuro: Neuro) -> None:
    r = neuro("secret", "add", "k", "@/no/such/file")
    assert r.returncode == 2, r.stderr  # a usage error, as --env-file's; 65 is the server's
    assert error_lines(r) == ["ERROR: cannot read /no/such/file: No such file or directory"]
    r = neuro("cp", "/no/such/file", "storage:x")
    assert r.returncode == 2 and "no such file or directory: /no/such/file" in r.stderr
    for args in (("rm", "storage:nope"), ("ls", "storage:nope"), ("cp", "storage:nope", "-")):
        r = neuro(*args)
        assert r.returncode == 72
        assert error_lines(r) == ["ERROR: no such file or directory: storage:nope"], r.stderr


def test_share_with_an_unknown_user_says_how_to_add_one(neuro: Neuro) -> None:
    job = neuro.ok("run", "-q", "--detach", "ubuntu", "--", "sleep", "60").strip()
    r = neuro("share", job, "alice", "read")
    assert r.returncode == 72
    hint = "users are added on the server: `neuro-server add-user alice` (it prints their token)"
    assert error_lines(r) == ["ERROR: no user 'alice'", f"  hint: {hint}"]
    neuro.ok("kill", job)


def test_run_says_what_it_understood_of_docker_habits(neuro: Neuro) -> None:
    # docker's -d is --detach; ours (the platform's) is --description: IMAGE became a command
    r = neuro("run", "--detach", "-d", "ubuntu", "echo", "hi")
    assert (
        "Note: understood description 'ubuntu', image 'echo', command 'hi' (-d is "
        "--description, as on the platform; docker's -d is --detach here)"
    ) in r.stderr
    r = neuro("run", "--detach", "python", "train.py")
    assert "Note: understood image 'python', command 'train.py' (IMAGE comes first" in r.stderr
    r = neuro("run", "--detach", "-d", "nightly run", "ubuntu", "--", "true")
    assert "understood" not in r.stderr


def test_config_show_is_aligned_on_a_terminal(neuro: Neuro) -> None:
    neuro.ok("server", "start")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "neuro_cli", "config", "show"],
        env=neuro.env,
        cwd=str(neuro.home),
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 120),
    )
    child.expect(pexpect.EOF)
    lines = child.before.replace("\r", "").splitlines()
    table = lines[lines.index("Presets:") + 1 :]
    assert "\t" not in "".join(table)
    header = table[0]
    for column in ("CPU", "MEMORY", "GPU", "JOBS AVAILABLE"):
        at = header.index(column)  # every row's cell starts under its title
        assert all(row[at - 1] == " " and row[at] != " " for row in table[1:] if row), table


def test_port_forward_ctrl_c_is_an_interrupt(neuro: Neuro) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    job = neuro.ok("run", "-q", "--detach", "ubuntu", "--", "sleep", "60").strip()
    p = subprocess.Popen(
        [sys.executable, "-m", "neuro_cli", "port-forward", job, f"{local}:9"],
        env=neuro.env,
        cwd=neuro.home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        deadline = time.monotonic() + 20
        line = ""
        while "Ctrl-C" not in line:
            assert time.monotonic() < deadline
            line = p.stderr.readline()
            assert line or p.poll() is None, "port-forward ended"
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=20)
        assert p.returncode == -signal.SIGINT  # 130 in a shell, as `logs`, `top`, `ps --watch`
    finally:
        p.kill()
        neuro.ok("kill", job)


def test_pyproject_license_is_an_spdx_expression() -> None:
    # `license = { text = ... }` is deprecated by setuptools (a warning in every build)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    bound = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    found = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", bound)
    assert found and int(found.group(1)) >= 77, bound  # PEP 639 license expressions


def test_readme_and_help_examples_use_valid_job_names() -> None:
    """Names need 3+ characters: `neuro run -n nb` was refused, and every line after it."""
    texts = [(ROOT / "README.md").read_text(), (ROOT / "docs" / "cli.md").read_text()]
    for text in texts:
        for name in re.findall(r"neuro run [^\n]*?(?:-n|--name) ([\w-]+)", text):
            assert re.fullmatch(r"[a-z](?:-?[a-z0-9])+", name) and len(name) >= 3, name
