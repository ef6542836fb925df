"""A log follower (`neuro logs`, an attached `neuro run`) across a server SIGKILL: the stream is
cut mid-flight; the CLI resumes by offset and prints every line exactly once, in order."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from typing import IO

import pytest

from tests.conftest import Neuro

LINES = 6000
# 6,000 numbered lines, fast (a short pause every 500 keeps the stream busy for a second or
# so), then the job keeps going a little while: the server is killed while the follower reads
SCRIPT = (
    f"i=0; while [ $i -lt {LINES} ]; do echo line-$i; i=$((i+1)); "
    "if [ $((i % 500)) -eq 0 ]; then sleep 0.1; fi; done; sleep 1.5; echo end"
)
EXPECTED = [f"line-{i}" for i in range(LINES)] + ["end"]
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")


class Follower:
    """A CLI process whose stdout lines (and stderr) are collected by threads, so the test can
    wait for a line with a deadline."""

    def __init__(self, neuro: Neuro, *args: str) -> None:
        self.proc = neuro.popen(*args, stdin=subprocess.DEVNULL)
        self.lines: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.err))
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_lines(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            assert self.proc.poll() is None, (self.lines[-3:], self.err)
            assert time.monotonic() < deadline, f"only {len(self.lines)} lines"
            time.sleep(0.01)

    def finish(self, timeout: float = 90) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for t in self._readers:
            t.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code, "\n".join(self.err)


def _kill_server_mid_stream(neuro: Neuro, follower: Follower, job: str) -> None:
    follower.wait_lines(1)  # connected and streaming
    pid = neuro.server_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    seen = len(follower.lines)
    assert seen < len(EXPECTED), "the stream ended before the kill"
    assert "Status:" in neuro.ok("status", job)  # restarts the server
    assert neuro.server_pid() != pid


def _check(follower: Follower, stamped: bool = False) -> int:
    """Every line once, in order, and how the command exited."""
    code, err = follower.finish()
    assert "Traceback" not in err, err
    lines = follower.lines
    if stamped:  # the resumed stream is the same stream: one stamp per line, in order
        stamps = [line.split(" ", 1)[0] for line in lines]
        assert all(STAMP.fullmatch(s) for s in stamps), stamps[:3]
        assert stamps == sorted(stamps)
        lines = [line.split(" ", 1)[-1] for line in lines]
    assert len(lines) == len(EXPECTED), (len(lines), lines[-3:], err)
    assert lines == EXPECTED
    return code


@pytest.mark.parametrize("stamped", [False, True], ids=["plain", "timestamps-since"])
def test_logs_resume_after_server_sigkill(neuro: Neuro, stamped: bool) -> None:
    job = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sh", "-c", SCRIPT).strip()
    flags = ("--timestamps", "--since", "1h") if stamped else ()
    follower = Follower(neuro, "logs", *flags, job)
    _kill_server_mid_stream(neuro, follower, job)
    assert _check(follower, stamped) == 0  # a complete log: exit 0
    assert "Status: succeeded" in neuro.ok("status", job)  # it ended only once the job had


def test_attached_run_resumes_after_server_sigkill(neuro: Neuro) -> None:
    follower = Follower(
        neuro, "run", "-n", "resumed", neuro.image, "--", "sh", "-c", SCRIPT + "; exit 3"
    )
    follower.wait_lines(1)
    _kill_server_mid_stream(neuro, follower, "resumed")
    assert _check(follower) == 3  # the job's own exit code
