"""run -t, attach, exec, port-forward, top and signals, driven through real pseudo-terminals,
on both runtimes."""

from __future__ import annotations

import contextlib
import hashlib
import re
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pexpect
import pytest

from tests.conftest import Neuro
from tests.e2e.conftest import http_server_job, on_host

PROMPT = "PS1> "


def spawn(neuro: Neuro, *args: str, rows: int = 24, cols: int = 80) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "neuro_cli", *args],
        env=neuro.env,
        cwd=str(neuro.home),
        encoding="utf-8",
        timeout=20,
        dimensions=(rows, cols),
    )
    return child


def shell_job(neuro: Neuro, name: str) -> pexpect.spawn:
    """`neuro run -t` of an interactive shell with a known prompt."""
    child = spawn(
        neuro, "run", "-t", "-n", name, "-e", f"PS1={PROMPT}", neuro.image, "--", "sh", "-i"
    )
    child.expect_exact(PROMPT)
    return child


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_tty_typing_resize_detach_and_reattach(neuro: Neuro) -> None:
    child = shell_job(neuro, "shell")
    child.sendline("echo sum=$((40+2))")
    child.expect_exact("sum=42")
    child.expect_exact(PROMPT)
    child.setwinsize(33, 111)  # SIGWINCH -> the CLI sends the new size to the job
    child.sendline("stty size")
    child.expect_exact("33 111")
    child.send("\x10\x11")  # Ctrl-P Ctrl-Q
    child.expect("Detached from")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Status: running" in neuro.ok("status", "shell")

    again = spawn(neuro, "attach", "shell", rows=20, cols=90)
    again.expect("Attached to")
    again.sendline("stty size")
    again.expect_exact("20 90")
    again.sendline("exit 7")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 7
    st = neuro.ok("status", "shell")
    assert "Exit code: 7" in st


def test_attach_at_the_ttys_own_size_redraws_the_screen(neuro: Neuro) -> None:
    """Attaching at the size the job's TTY already has (24x80) still makes the shell redraw
    its prompt, before any key (a line-editing shell: bash here, busybox sh in the image)."""
    shell = ["bash", "--norc", "--noprofile", "-i"] if on_host(neuro) else ["sh", "-i"]
    job = neuro.ok(
        "run", "-q", "--detach", "-t", "-e", f"PS1={PROMPT}", neuro.image, "--", *shell
    ).strip()
    logs = spawn(neuro, "logs", job)
    logs.expect_exact(PROMPT)  # the first prompt, drawn long before the attach
    logs.close(force=True)
    child = spawn(neuro, "attach", job, rows=24, cols=80)
    child.expect("Attached to")
    child.expect_exact(PROMPT, timeout=10)  # drawn again for this attach
    child.send("\x10\x11")
    child.expect(pexpect.EOF)
    child.close()
    neuro.ok("kill", job)


def test_terminal_is_restored(neuro: Neuro) -> None:
    script = (
        f"{sys.executable} -m neuro_cli run -t -e PS1='{PROMPT}' {neuro.image} -- sh -i; "
        "echo RC=$?; stty -a"
    )
    child = pexpect.spawn(
        "sh", ["-c", script], env=neuro.env, cwd=str(neuro.home), encoding="utf-8", timeout=20
    )
    child.expect_exact(PROMPT)
    child.sendline("exit 3")
    child.expect(r"RC=(\d+)")
    assert child.match.group(1) == "3"
    child.expect(pexpect.EOF)
    modes = child.before
    assert re.search(r"(?<!-)icanon", modes) and re.search(r"(?<!-)echo\b", modes), modes


def test_exec_tty_and_plain(neuro: Neuro) -> None:
    job = neuro.ok(
        "run",
        "-q",
        "--detach",
        "-n",
        "target",
        "-e",
        "FROM_JOB=yes",
        "--workdir",
        "/tmp",
        neuro.image,
        "--",
        "sleep",
        "60",
    ).strip()
    r = neuro(
        "exec",
        "-T",
        "target",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; echo $FROM_JOB; pwd; exit 3",
    )
    assert r.returncode == 3
    assert r.stdout == "out\nyes\n/tmp\n" and r.stderr == "err\n"
    r = neuro(
        "exec", "-i", "-T", "target", "--", "sh", "-c", "cat; echo done", input="piped-data\n"
    )
    assert r.returncode == 0 and r.stdout == "piped-data\ndone\n"
    # without -i stdin is not read (docker's and kubectl's rule): the command sees EOF at once
    r = neuro("exec", "-T", "target", "--", "sh", "-c", "cat; echo done", input="not-read\n")
    assert r.returncode == 0 and r.stdout == "done\n"
    child = spawn(neuro, "exec", "-t", "target", "sh", rows=30, cols=70)
    child.expect(r"[#$] ")  # typed at the prompt, as a user does
    child.sendline("tty; stty size")
    child.expect(r"/dev/pts/\d+")
    child.expect_exact("30 70")
    child.sendline("exit 5")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5
    # a command that reads the size at once sees the terminal's, not 24x80: the exec opens
    # at the client's size
    for rows, cols in ((31, 77), (40, 132)):
        child = spawn(neuro, "exec", "-t", "target", "--", "stty", "size", rows=rows, cols=cols)
        child.expect(pexpect.EOF)
        child.close()
        assert child.before.strip() == f"{rows} {cols}" and child.exitstatus == 0
    r = neuro("exec", "-t", "target", "--", "true")  # no terminal here
    assert r.returncode == 2 and "-t needs a terminal" in r.stderr
    neuro.ok("kill", job)
    r = neuro("exec", "-T", job, "--", "true")
    assert r.returncode == 65 and "not running" in r.stderr


def test_port_forward_http_and_100mib(neuro: Neuro, tmp_path: Path) -> None:
    job_port, local = free_port(), free_port()
    job, blob_sha = http_server_job(
        neuro, job_port, "hello through the tunnel\n", tmp_path / "www", blob_mib=100
    )
    fwd = neuro.popen("port-forward", job, f"{local}:{job_port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                body = urllib.request.urlopen(
                    f"http://127.0.0.1:{local}/index.html", timeout=5
                ).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the forward never answered"
                time.sleep(0.1)
        assert body == b"hello through the tunnel\n"
        data = urllib.request.urlopen(f"http://127.0.0.1:{local}/blob", timeout=60).read()
        assert len(data) == 100 << 20
        assert hashlib.sha256(data).hexdigest() == blob_sha
        # a taken local port is a clear error
        r = neuro("port-forward", job, f"{local}:{job_port}")
        assert r.returncode == 1 and f"local port {local} is already in use" in r.stderr
        neuro.ok("kill", job)
        _out, err = fwd.communicate(timeout=30)
        assert fwd.returncode == 0
        assert "cancelled" in err and "forwarding stopped" in err
    finally:
        fwd.kill()


@pytest.mark.parametrize("spec", ["0:80", "80:70000", "80", "a:b"])
def test_port_forward_bad_ports(neuro: Neuro, spec: str) -> None:
    r = neuro("port-forward", "job-00000000-0000-0000-0000-000000000000", spec)
    assert r.returncode == 2 and "invalid port" in r.stderr


def test_signals_and_top(neuro: Neuro) -> None:
    job = neuro.ok(
        "run",
        "-q",
        "--detach",
        neuro.image,
        "--",
        "sh",
        "-c",
        "trap 'echo got-usr1' USR1; echo ready; while :; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; done",
    ).strip()
    deadline = time.monotonic() + 10
    while "ready" not in neuro.job_output(job):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert neuro.ok("job", "send-signal", job, "USR1").startswith("Sent SIGUSR1")
    neuro.ok("kill", "--signal", "usr1", job)
    deadline = time.monotonic() + 10
    while neuro.job_output(job).count("got-usr1") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = neuro("job", "send-signal", job, "NOPE")
    assert r.returncode == 2 and "invalid signal" in r.stderr
    out = neuro.ok("top", "--no-stream", job)
    header, row = out.splitlines()[:2]
    cols = dict(zip(header.split("\t"), row.split("\t"), strict=False))
    assert cols["ID"] == job
    assert 0.2 < float(cols["CPU"]) < 0.8  # a busy loop under a 0.5 CPU preset
    assert 0 < float(cols["MEMORY (MiB)"]) < 64  # a shell's: some, and far from the preset's
    neuro.ok("kill", job)


def test_port_forward_survives_a_server_restart(neuro: Neuro, tmp_path: Path) -> None:
    import os
    import signal

    job_port, local = free_port(), free_port()
    job, _ = http_server_job(neuro, job_port, "still here\n", tmp_path / "www2")
    fwd = neuro.popen("port-forward", job, f"{local}:{job_port}")

    def get(deadline: float) -> bytes:
        while True:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5).read()
            except OSError:
                assert time.monotonic() < deadline, "the forward never answered"
                time.sleep(0.2)

    try:
        assert get(time.monotonic() + 20) == b"still here\n"
        pid = neuro.server_pid()
        assert pid
        os.kill(pid, signal.SIGKILL)
        # the forwarder notices, the local server comes back, new connections work again
        assert get(time.monotonic() + 30) == b"still here\n"
        assert neuro.server_pid() != pid
    finally:
        neuro.ok("kill", job)
        fwd.communicate(timeout=30)
        assert fwd.returncode == 0


def test_ctrl_c_dialog_continue_detach_and_kill(neuro: Neuro) -> None:
    # a terminal, but no TTY for the job (-T): Ctrl-C asks what to do
    child = spawn(
        neuro,
        "run",
        "-T",
        "-n",
        "dialog",
        neuro.image,
        "--",
        "sh",
        "-c",
        "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
    )
    child.expect("tick-1")
    child.sendintr()
    child.expect(r"\[k\]ill the job, \[d\]etach")
    child.send("c")  # continue: the output goes on
    child.expect("tick-1[0-9]")
    child.sendintr()
    child.expect(r"\[d\]etach")
    child.send("d")
    child.expect("Detached from")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Status: running" in neuro.ok("status", "dialog")

    again = spawn(neuro, "attach", "dialog")
    again.expect("tick-")
    again.sendintr()
    again.expect(r"\[k\]ill")
    again.send("k")
    again.expect("Killed")
    again.expect(pexpect.EOF)
    again.close()
    assert again.signalstatus == signal.SIGINT  # 130 in a shell: Ctrl-C ended it
    assert "Status: cancelled (UserRequested)" in neuro.ok("status", "dialog")


class CuttableProxy:
    """A loopback TCP proxy whose open connections can be cut (a network blip)."""

    def __init__(self, target_port: int) -> None:
        import threading

        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        a.close()

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.server.close()
        self.cut()


def test_exec_survives_a_dropped_connection(neuro: Neuro, tmp_path: Path) -> None:
    import json

    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    token = neuro.ok("config", "show-token").strip()
    job = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "120").strip()
    proxy = CuttableProxy(int(url.split(":")[2].split("/")[0]))
    remote_home = tmp_path / "remote"
    remote_home.mkdir()
    remote = Neuro(remote_home)
    remote.ok("login", f"http://127.0.0.1:{proxy.port}/api/v1", "--token", token)
    try:
        script = "i=0; while [ $i -lt 40 ]; do echo n-$i; i=$((i+1)); sleep 0.1; done; exit 9"
        p = remote.popen("exec", "-T", job, "--", "sh", "-c", script)
        assert p.stdout is not None
        assert p.stdout.readline() == "n-0\n"
        proxy.cut()  # the connection drops mid-stream; the command goes on on the server
        out, err = p.communicate(timeout=60)
        assert p.returncode == 9, err
        assert ("n-0\n" + out).splitlines() == [f"n-{i}" for i in range(40)]
        assert "reconnecting" in err
    finally:
        proxy.close()
        neuro.ok("kill", job)


def test_attach_survives_a_dropped_connection(neuro: Neuro, tmp_path: Path) -> None:
    import json

    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    token = neuro.ok("config", "show-token").strip()
    proxy = CuttableProxy(int(url.split(":")[2].split("/")[0]))
    remote_home = tmp_path / "remote"
    remote_home.mkdir()
    remote = Neuro(remote_home)
    remote.ok("login", f"http://127.0.0.1:{proxy.port}/api/v1", "--token", token)
    # started after the login: the attach needs to be in before the job's 5 s are over
    script = "sleep 1; i=0; while [ $i -lt 40 ]; do echo n-$i; i=$((i+1)); sleep 0.1; done; exit 5"
    job = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sh", "-c", script).strip()
    try:
        p = remote.popen("attach", job)
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first.startswith("n-")
        proxy.cut()
        out, err = p.communicate(timeout=60)
        assert p.returncode == 5, err
        lines = (first + out).splitlines()
        start = int(first[2:])
        assert lines == [f"n-{i}" for i in range(start, 40)]  # no gap, no repeat
        assert "reconnecting" in err
    finally:
        proxy.close()


def test_readme_first_command_in_a_terminal(neuro: Neuro) -> None:
    """On a terminal `run` attaches a TTY; a job that ends before the attach still prints."""
    for _ in range(3):  # the race between the job's end and the attach, several times
        child = spawn(neuro, "run", "--preset", "cpu-small", neuro.image, "--", "echo", "hello")
        child.expect_exact("hello")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
