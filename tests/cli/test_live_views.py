"""Live views on a real pseudo-terminal, read back through a terminal emulator (pyte): `ps
--watch` and `top` redraw in place and leave a clean screen (one table, cursor shown) after
Ctrl-C; `run` redraws its pending progress on one line per reason.  Piped, `ps --watch` prints
a line per change."""

from __future__ import annotations

import signal
import sys
import time

import pexpect
import pyte

from tests.conftest import Neuro

ROWS, COLS = 30, 140


class Screen:
    """A pexpect child whose output feeds a pyte screen."""

    def __init__(self, neuro: Neuro, *args: str) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "neuro_cli", *args],
            env=neuro.env,
            cwd=str(neuro.home),
            timeout=20,
            dimensions=(ROWS, COLS),
        )

    def pump(self) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.05)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return
            self.raw += data
            self.stream.feed(data)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, pred, timeout: float = 20) -> list[str]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if pred(self.lines()):
                return self.lines()
            assert time.monotonic() < deadline, "\n".join(self.lines())

    def interrupt_and_finish(self) -> int | None:
        """Ctrl-C; the signal that ended the child (None: it exited instead)."""
        self.child.kill(signal.SIGINT)
        deadline = time.monotonic() + 20
        while self.child.isalive():
            self.pump()
            assert time.monotonic() < deadline, "did not exit after Ctrl-C"
        self.pump()
        self.child.close()
        return self.child.signalstatus


def _count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


def test_ps_watch_redraws_in_place(neuro: Neuro) -> None:
    a = neuro.ok("run", "-q", "--detach", "-n", "first", "ubuntu", "--", "sleep", "60").strip()
    s = Screen(neuro, "ps", "--watch")
    s.wait_for(lambda lines: _count(lines, a) == 1)
    b = neuro.ok("run", "-q", "--detach", "-n", "second", "ubuntu", "--", "sleep", "60").strip()
    s.wait_for(lambda lines: _count(lines, b) == 1)
    neuro.ok("kill", a)
    lines = s.wait_for(lambda lines: _count(lines, a) == 0)
    assert _count(lines, "ID/NAME") == 1 and _count(lines, b) == 1  # one table, redrawn
    # Ctrl-C ends it as it ends `logs`: 130, by SIGINT (it was exit 0)
    assert s.interrupt_and_finish() == signal.SIGINT
    lines = s.lines()
    assert _count(lines, "ID/NAME") == 1 and "Traceback" not in "\n".join(lines)
    assert s.raw.rfind(b"\x1b[?25h") > s.raw.rfind(b"\x1b[?25l")  # the cursor is shown again
    neuro.ok("kill", b)


def test_top_redraws_in_place(neuro: Neuro) -> None:
    job = neuro.ok(
        "run", "-q", "--detach", "ubuntu", "--", "sh", "-c", "while :; do :; done"
    ).strip()
    s = Screen(neuro, "top")
    s.wait_for(lambda lines: any(job in line and "." in line.split(job)[1] for line in lines))
    s.wait_for(lambda lines: s.raw.count(job.encode()) >= 2)  # redrawn at least once
    assert s.interrupt_and_finish() == signal.SIGINT  # 130 in a shell, as `logs` (it was 0)
    lines = s.lines()
    assert _count(lines, job) == 1 and _count(lines, "ID") == 1
    assert s.raw.rfind(b"\x1b[?25h") > s.raw.rfind(b"\x1b[?25l")
    neuro.ok("kill", job)


def test_run_progress_is_one_line_per_reason(neuro: Neuro) -> None:
    s = Screen(neuro, "run", "-T", "ubuntu", "--", "sh", "-c", "echo out-$((6*7))")
    s.wait_for(lambda lines: _count(lines, "out-42") == 1)
    s.child.expect(pexpect.EOF)
    s.pump()
    lines = [line for line in s.lines() if line]
    statuses = [line for line in lines if line.startswith("Status: ")]
    # (the job may end before its start is seen: then the last line says so)
    assert statuses and statuses[-1].startswith(("Status: running", "Status: succeeded"))
    assert len(statuses) == len({line.split("  [")[0] for line in statuses})  # no repeats


def test_ps_watch_piped_prints_changes(neuro: Neuro) -> None:
    a = neuro.ok("run", "-q", "--detach", "ubuntu", "--", "sleep", "60").strip()
    p = neuro.popen("ps", "--watch", "--format", "id status")
    assert p.stdout is not None
    assert p.stdout.readline() == "ID\tSTATUS\n"
    assert p.stdout.readline() == f"{a}\trunning\n"
    neuro.ok("kill", a)
    assert p.stdout.readline() == f"{a}\tcancelled\n"  # its last line as it leaves the list
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    # 130 in a shell, by SIGINT, as `logs` (it was 0)
    assert p.returncode == -signal.SIGINT and out == "" and "Traceback" not in err


def test_long_ps_goes_through_the_pager(neuro: Neuro, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for i in range(12):  # 2 lines each on a 20-row terminal: longer than 2/3 of it
        neuro.ok("run", "-q", "--detach", "-n", f"many-{i}", "ubuntu", "--", "true")
    pager = tmp_path / "pager.sh"
    pager.write_text("#!/bin/sh\necho PAGER-STARTED\ncat\n")
    pager.chmod(0o755)
    env = {**neuro.env, "PAGER": str(pager)}

    def run_ps(extra_env: dict[str, str]) -> str:
        child = pexpect.spawn(
            sys.executable,
            ["-m", "neuro_cli", "ps", "-a"],
            env={**env, **extra_env},
            cwd=str(neuro.home),
            timeout=20,
            dimensions=(20, 140),
            encoding="utf-8",
        )
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        return child.before

    out = run_ps({})
    assert "PAGER-STARTED" in out and "many-11" in out
    out = run_ps({"NEURO_PAGER": "0"})
    assert "PAGER-STARTED" not in out and "many-11" in out
    piped = neuro.ok("ps", "-a")  # never in a pipe
    assert "PAGER-STARTED" not in piped and len(piped.splitlines()) == 13
