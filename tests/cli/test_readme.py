"""Every command of the README's ```sh blocks runs, as written, against a test server of its
own (in its own HOME), so the README cannot rot: its example `neuro run -n nb` was refused
(names need 3+ characters), and every line after it that named the job failed with it.

Lines run by default: a new README line is run unless it is listed below.  What the test
provides is what the README's lines assume a user has: files (./data, ~/.hf_token), a stored
file (storage:runs/metrics.json), a running job `other-job`, a user alice; the job programs of
images it cannot have are replaced by stand-ins (STAND_INS), placeholders by values."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Neuro

README = ROOT / "README.md"

# line (or a part of it, as far as ` && `) that this test cannot run -> what it would need
SKIP: dict[str, str] = {
    "pip install .": "installs the package (the test runs the installed one)",
    "pip install -e '.[test]'": "installs the package (the test runs the installed one)",
    "python -m pytest -n 2": "the test suite itself",
    "neuro run -t ubuntu -- bash": "a person typing at a terminal (tests/e2e/test_interactive.py "
    "drives -t shells on a pty)",
    "neuro exec -t train bash": "a person typing at a terminal (tests/e2e/test_interactive.py)",
    "neuro exec train -- nvidia-smi": "a GPU and its nvidia-smi",
    "--preset gpu-small IMAGE -- python train.py": "a GPU (preset gpu-small)",
    "neuro port-forward train 8888:8888 6006:6006": "local ports 8888 and 6006, which tests "
    "running beside this one may hold",
    "neuro run --pass-config IMAGE -- neuro run ...": "`neuro run ...` stands for a command "
    "of your own",
    "neuro-server serve --data-dir /srv/neuro --host 0.0.0.0 --port 8080": "a head node "
    "serving 0.0.0.0:8080",
    "neuro login http://head-node:8080/api/v1": "a head node",
    "apolo config login-with-token": "the official client (tests/compat runs it)",
}

# job programs from images the test does not have -> a stand-in that behaves alike
STAND_INS: dict[str, str] = {
    # trains until stopped, checkpoints on SIGUSR1 (send-signal, --life-span-signal)
    "-- python train.py": '-- sh -c \'trap "echo checkpoint" USR1; '
    "while :; do echo training; sleep 0.5; done'",
    "-- ./nightly.sh": "-- sh -c 'echo nightly run'",
    "jupyter/base-notebook": "jupyter/base-notebook -- sh -c 'sleep 300'",
}

# lines that go on until Ctrl-C (or their job's end): run until their first output, then
# Ctrl-C, as a user does; they must end by it (130), without an error
UNTIL_CTRL_C = (
    "neuro run --preset cpu-small -n train",  # attached to the (stand-in) training
    "neuro run --life-span 4h",
    "neuro logs train",
    "neuro attach train",
    "neuro top",
)

# what a line must print (on stdout), where the README says so
PRINTS: dict[str, str] = {
    "neuro run --preset cpu-small ubuntu -- echo hello": "hello\n",
    "neuro cp storage:runs/metrics.json - | jq .loss": "0.25\n",
}


def sh_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(section title, command lines) of each ```sh block: continuation lines joined, blank
    lines dropped."""
    blocks, title = [], ""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("## "):
            title = line[3:].strip()
        if line.strip() != "```sh":
            continue
        commands, current = [], ""
        for body in lines:
            if body.strip() == "```":
                break
            current += body.rstrip()
            if current.endswith("\\"):
                current = current[:-1].rstrip() + " "
                continue
            if current.strip():
                commands.append(re.sub(r"\s+", " ", current.strip()))
            current = ""
        blocks.append((title, commands))
    return blocks


BLOCKS = sh_blocks(README.read_text())


def _skip_reason(part: str) -> str | None:
    return next((why for key, why in SKIP.items() if key in part), None)


@pytest.fixture
def readme_user(neuro: Neuro, tmp_path: Path) -> Neuro:
    """The state the README's lines assume."""
    (neuro.home / "data").mkdir()
    (neuro.home / "data" / "train.csv").write_text("x,y\n1,2\n")
    (neuro.home / ".hf_token").write_text("hf_not_a_real_token\n")
    (neuro.home / ".config" / "fish" / "completions").mkdir(parents=True)  # (fish makes it)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"loss": 0.25}))
    neuro.ok("cp", str(metrics), "storage:runs/metrics.json")
    neuro.ok("run", "-q", "--detach", "-n", "other-job", "ubuntu", "--", "sleep", "300")
    server = [sys.executable, "-m", "neuro_server"]
    r = subprocess.run(
        [*server, "add-user", "alice"],
        env=neuro.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    bindir = str(Path(sys.executable).parent)  # where `neuro` and `neuro-server` are
    neuro.env = {
        **neuro.env,
        "PATH": bindir + os.pathsep + neuro.env["PATH"],
        "BROWSER": "true",
    }  # `job browse` opens "a browser" that accepts the link
    return neuro


def _run_until_ctrl_c(neuro: Neuro, line: str) -> str | None:
    p = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", line],
        env=neuro.env,
        cwd=neuro.home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert p.stdout is not None
    try:
        deadline = time.monotonic() + 30
        while not select.select([p.stdout], [], [], 0.1)[0]:
            if p.poll() is not None or time.monotonic() > deadline:
                _, err = p.communicate(timeout=10)
                return f"ended before any output ({p.returncode}): {err.decode()[-300:]}"
        p.stdout.readline()
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C, to the whole command as a terminal sends it
        _, err_bytes = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    err = err_bytes.decode()
    if p.returncode not in (-signal.SIGINT, 130) or "ERROR:" in err or "Traceback" in err:
        return f"Ctrl-C: exit {p.returncode}: {err[-300:]}"
    return None


def _run(neuro: Neuro, line: str, values: dict[str, str]) -> str | None:
    """Run one README line; None when it did what it says, else what went wrong."""
    for placeholder, value in values.items():
        line = (
            re.sub(rf"\b{placeholder}\b", value, line)
            if placeholder.isalnum() or "_" in placeholder
            else line.replace(placeholder, value)
        )
    for program, stand_in in STAND_INS.items():
        line = line.replace(program, stand_in)
    if any(line.startswith(prefix) for prefix in UNTIL_CTRL_C):
        return _run_until_ctrl_c(neuro, line)
    r = subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        env=neuro.env,
        cwd=neuro.home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if r.returncode != 0:
        return f"exit {r.returncode}: {r.stderr.strip()[-400:]}"
    want = PRINTS.get(line.split(" #")[0].strip())
    if want is not None and r.stdout != want:
        return f"printed {r.stdout!r}, not {want!r}"
    if line.startswith("neuro-server token "):
        values["TOKEN_OR_ID"] = r.stdout.strip()  # for revoke-token, further on
    return None


@pytest.mark.parametrize(
    "block",
    range(len(BLOCKS)),
    ids=[f"{i}-{re.sub(r'[^a-z]+', '-', t.lower()).strip('-')}" for i, (t, _) in enumerate(BLOCKS)],
)
def test_readme_commands_run(readme_user: Neuro, tmp_path: Path, block: int) -> None:
    values = {"IMAGE": "ubuntu", "/srv/neuro": str(tmp_path / "srv-neuro")}
    failures = []
    for line in BLOCKS[block][1]:
        runnable = [part for part in line.split(" && ") if _skip_reason(part) is None]
        if not runnable:
            continue
        what = _run(readme_user, " && ".join(runnable), values)
        if what is not None:
            failures.append(f"{line}\n    -> {what}")
    assert not failures, "README lines that fail:\n" + "\n".join(failures)


def test_readme_lists_are_current() -> None:
    """The lists above name lines the README still has (a stale entry would hide nothing)."""
    lines = [line for _, block in BLOCKS for line in block]
    for key in [*SKIP, *STAND_INS, *UNTIL_CTRL_C, *PRINTS]:
        assert any(key in line for line in lines), f"{key!r} is in no README command"
    assert len(BLOCKS) >= 6 and sum(len(b) for _, b in BLOCKS) >= 40
