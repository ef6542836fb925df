"""Tokens and the data dir: what `neuro-server` admin commands change counts at once in a
server that already runs (revoke-token, remove-user, expiry), forged tokens stay refused, the
data dir is private, and a job may name only its owner's secrets."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from neuro_server.auth import Authenticator, AuthError
from neuro_server.portfence import remove_chain
from neuro_server.store import Store
from tests.conftest import kill_tree_of
from tests.server.conftest import Api, job_uid_range

SERVER_TOML = """
[server]
kill_grace_seconds = 1
runtime = "process"

[resources]
cpu = 8
memory = "16GiB"
"""


def admin(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`neuro-server ARGS --data-dir DATA`, as an admin runs it: a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "neuro_server", *args, "--data-dir", str(data)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def admin_ok(data: Path, *args: str) -> str:
    r = admin(data, *args)
    assert r.returncode == 0, f"neuro-server {' '.join(args)} -> {r.returncode}\n{r.stderr}"
    return r.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class Server:
    """A real `neuro-server serve` on a free loopback port."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log = data, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "neuro_server",
                    "serve",
                    "--data-dir",
                    str(data),
                    "--port",
                    "0",
                    "--runtime",
                    "process",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
            if m:
                self.url = m.group(1) + "/api/v1"
                return
            assert self.proc.poll() is None, log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"the server did not start: {log.read_text()}")

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def data(tmp_path: Path, homes: Path) -> Iterator[Path]:
    d = tmp_path / "server"
    d.mkdir(mode=0o700)
    # (users' jobs apart, in homes of the test's own: jobusers.py)
    (d / "server.toml").write_text(
        SERVER_TOML.replace(
            "[server]\n", f'[server]\njob_uids = "{job_uid_range()}"\nhomes_dir = "{homes}"\n'
        )
    )
    try:
        yield d
    finally:
        kill_tree_of(d)
        remove_chain(d)


@pytest.fixture
def server(data: Path, tmp_path: Path) -> Iterator[Server]:
    s = Server(data, tmp_path / "server.log")
    try:
        yield s
    finally:
        s.stop()


def wait_for(check: Any, timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def jti_of(data: Path, user: str, note: str) -> list[str]:
    lines = admin_ok(data, "tokens", user).splitlines()
    assert lines[0].split()[:4] == ["JTI", "CREATED", "EXPIRES", "STATE"]
    return [ln.split()[0] for ln in lines[1:] if ln.rstrip().endswith(note)]


def test_revoke_token_counts_at_once_in_a_running_server(data: Path, tmp_path: Path) -> None:
    first = admin_ok(data, "add-user", "alice").strip()
    second = admin_ok(data, "token", "alice").strip()
    server = Server(data, tmp_path / "server.log")
    try:
        # both tokens are used (and so remembered) before they are revoked
        assert server.call("GET", "/jobs", first)[0] == 200
        assert server.call("GET", "/jobs", second)[0] == 200
        assert admin_ok(data, "revoke-token", first).startswith("Revoked token ")
        status, text = server.call("GET", "/jobs", first)
        assert status == 401 and "token revoked: log in again" in text, text
        # by its id, as `neuro-server tokens` lists it
        (jti,) = jti_of(data, "alice", "token")
        assert admin_ok(data, "revoke-token", jti) == f"Revoked token {jti} of alice\n"
        assert server.call("GET", "/jobs", second)[0] == 401
        assert "was already revoked" in admin_ok(data, "revoke-token", jti)
        listed = admin_ok(data, "tokens", "alice")
        assert listed.count("revoked") == 2 and "active" not in listed
        # a token issued now still works
        assert server.call("GET", "/jobs", admin_ok(data, "token", "alice").strip())[0] == 200
    finally:
        server.stop()
    r = admin(data, "revoke-token", "0" * 32)
    assert r.returncode == 1 and "no token 00000000" in r.stderr
    r = admin(data, "revoke-token", "x.y.z")
    assert r.returncode == 1 and "not a token of this server" in r.stderr


def test_expired_and_forged_tokens_are_refused(data: Path, server: Server) -> None:
    admin_ok(data, "add-user", "alice")
    token = admin_ok(data, "token", "alice", "--expires", "3s").strip()
    assert server.call("GET", "/jobs", token)[0] == 200
    assert re.search(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +active +token", admin_ok(data, "tokens", "alice")
    )
    status, text = wait_for(
        lambda: (r := server.call("GET", "/jobs", token))[0] == 401 and r,
        timeout=20,
        what="the token to expire",
    )
    assert "token expired: log in again" in text, text
    assert "expired" in admin_ok(data, "tokens", "alice")
    r = admin(data, "token", "alice", "--expires", "soon")
    assert r.returncode == 2 and "invalid duration 'soon'" in r.stderr
    # forged: alice's identity and a real token id, signed with another key, or with none
    claims = jwt.decode(
        admin_ok(data, "token", "alice").strip(), options={"verify_signature": False}
    )
    for forged in (
        jwt.encode(claims, b"k" * 32, algorithm="HS256"),
        jwt.encode(claims, "", algorithm="none"),
        jwt.encode(
            {**claims, "jti": uuid.uuid4().hex}, (data / "secret").read_bytes(), algorithm="HS256"
        ),
    ):
        status, text = server.call("GET", "/jobs", forged)
        assert status == 401 and ("invalid token" in text or "unknown token" in text), text


def test_remove_user_refuses_their_tokens_and_kills_their_jobs(
    data: Path, server: Server, homes: Path
) -> None:
    alice = admin_ok(data, "add-user", "alice").strip()
    bob = admin_ok(data, "add-user", "bob").strip()
    bob2 = admin_ok(data, "token", "bob").strip()
    # the job has a token of its own (pass_config): it goes with bob
    job = {
        "preset_name": "cpu-small",
        "image": "ubuntu",
        "pass_config": True,
        "command": "sh -c 'echo $NEURO_PASSED_CONFIG; exec sleep 600'",
    }
    status, text = server.call("POST", "/jobs?from_preset", bob, job)
    assert status == 202, text
    job_id = json.loads(text)["id"]
    wait_for(
        lambda: json.loads(server.call("GET", f"/jobs/{job_id}", bob)[1])["status"] == "running",
        what="bob's job to run",
    )
    output = data / "jobs" / job_id / "output.log"
    passed = wait_for(lambda: output.exists() and output.read_text().strip(), what="its config")
    job_token = json.loads(base64.b64decode(passed))["token"]
    assert server.call("GET", "/jobs", job_token)[0] == 200
    pid = int(json.loads((data / "jobs" / job_id / "started.json").read_text())["pid"])
    status, text = server.call("POST", "/secrets", bob, {"key": "k", "value": "dg=="})
    assert status == 201, text
    out = admin_ok(data, "remove-user", "bob")
    assert "Removed user bob: 3 tokens revoked, 1 secrets deleted" in out, out
    assert f"Killing 1 active jobs of bob: {job_id}" in out
    assert f"Kept: bob's home in {homes / 'bob'} (delete it yourself if unwanted)" in out
    for token in (bob, bob2, job_token):
        status, text = server.call("GET", "/jobs", token)
        assert status == 401 and "unknown token" in text, text
    wait_for(lambda: not _alive(pid), what="bob's job to end")
    db = sqlite3.connect(data / "neuro.db")
    try:

        def record() -> tuple[str, str, str]:
            row = db.execute(
                "SELECT status, reason, description FROM jobs WHERE id=?", (job_id,)
            ).fetchone()
            return (row[0], row[1], row[2])

        wait_for(lambda: record()[0] == "cancelled", what="the job to be cancelled")
        assert record() == ("cancelled", "UserRemoved", "The job's owner was removed")
        assert db.execute("SELECT count(*) FROM secrets WHERE owner='bob'").fetchone() == (0,)
    finally:
        db.close()
    assert server.call("GET", "/jobs", alice)[0] == 200  # nobody else is touched
    r = admin(data, "remove-user", "bob")
    assert r.returncode == 1 and "no such user: bob" in r.stderr
    # the name can be given again: the new bob's token works, the old ones do not
    bob3 = admin_ok(data, "add-user", "bob").strip()
    assert server.call("GET", "/jobs", bob3)[0] == 200
    assert server.call("GET", "/jobs", bob)[0] == 401


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_verify_sees_changes_by_its_own_and_other_connections(tmp_path: Path) -> None:
    store = Store(tmp_path / "neuro.db")
    other = Store(tmp_path / "neuro.db")
    try:
        store.add_user("alice")
        auth = Authenticator(store, b"s" * 32)
        t1, t2 = auth.issue("alice"), auth.issue("alice")
        assert auth.verify(t1) == auth.verify(t2) == "alice"
        store.revoke_tokens("alice")  # the same connection: data_version would not change
        with pytest.raises(AuthError, match="token revoked"):
            auth.verify(t1)
        t3 = auth.issue("alice")
        assert auth.verify(t3) == "alice"
        assert other.remove_user("alice")
        with pytest.raises(AuthError, match="unknown token"):
            auth.verify(t3)
        store.add_user("alice")
        # an exp in the past, with a valid signature and a known token id
        claims = jwt.decode(auth.issue("alice"), options={"verify_signature": False})
        old = jwt.encode({**claims, "exp": int(time.time()) - 5}, b"s" * 32, algorithm="HS256")
        with pytest.raises(AuthError, match="token expired"):
            auth.verify(old)
        soon = auth.issue("alice", expires_in=1.5)
        assert auth.verify(soon) == "alice"
        wait_for(lambda: _refused(auth, soon), timeout=5, what="expiry")
        with pytest.raises(AuthError, match="token expired"):
            auth.verify(soon)  # (its claims are remembered: the expiry is still checked)
    finally:
        store.close()
        other.close()


def _refused(auth: Authenticator, token: str) -> bool:
    try:
        auth.verify(token)
    except AuthError:
        return True
    return False


def test_tokens_table_of_an_older_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "neuro.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE users (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
        CREATE TABLE tokens (jti TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name),
                             created_at TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
        INSERT INTO users VALUES ('alice', '2024-01-01T00:00:00.000000+00:00');
        INSERT INTO tokens(jti, user, created_at) VALUES
            ('a' || hex(randomblob(15)), 'alice', '2024-01-01T00:00:00.000000+00:00');
    """)
    db.commit()
    db.close()
    store = Store(path)
    try:
        (tok,) = store.tokens("alice")
        assert tok.expires_at is None and not tok.revoked and tok.note == ""
        assert store.revoke_token(tok.jti) and store.token(tok.jti).revoked  # type: ignore[union-attr]
    finally:
        store.close()


# -- the data dir -----------------------------------------------------------------------------


def test_add_user_makes_a_private_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "new" / "server"
    old = os.umask(0o022)  # what a shell usually has: not what the files get
    try:
        admin_ok(data, "add-user", "alice")
    finally:
        os.umask(old)
    assert mode(data) == 0o700
    for name in ("neuro.db", "secret"):
        assert mode(data / name) == 0o600, name
    for name in ("neuro.db-wal", "neuro.db-shm"):
        assert not (data / name).exists() or mode(data / name) == 0o600


def test_serve_tightens_an_open_data_dir(data: Path, tmp_path: Path) -> None:
    admin_ok(data, "add-user", "alice")
    os.chmod(data, 0o755)
    for name in ("neuro.db", "secret"):
        os.chmod(data / name, 0o644)
    (data / "storage" / "alice").mkdir(parents=True)
    os.chmod(data / "storage", 0o755)
    server = Server(data, tmp_path / "server.log")
    try:
        token = admin_ok(data, "token", "alice").strip()
        assert server.call("GET", "/jobs", token)[0] == 200  # the server has its db open
        assert mode(data) == 0o700 and mode(data / "storage") == 0o700
        for name in ("neuro.db", "neuro.db-wal", "neuro.db-shm", "secret"):
            assert mode(data / name) == 0o600, name
        log = (tmp_path / "server.log").read_text()
        assert "made private (only its owner may read it): server 0755 -> 0700" in log
        assert "neuro.db 0644 -> 0600" in log
    finally:
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a dir of another user")
def test_a_data_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "theirs"
    data.mkdir(mode=0o700)
    os.chown(data, 54321, 54321)
    for args in (("add-user", "alice"), ("serve", "--port", "0")):
        r = admin(data, *args)
        assert r.returncode == 1, r
        assert r.stderr.strip().splitlines() == [
            (
                f"Error: cannot use the data dir: {data} belongs to uid 54321, not to this "
                "server's user root (uid 0): chown it, or use another --data-dir"
            )
        ], r.stderr
    assert not (data / "neuro.db").exists()
    # a file of another user inside our dir is refused too
    mine = tmp_path / "mine"
    admin_ok(mine, "add-user", "alice")
    os.chown(mine / "secret", 54321, 54321)
    r = admin(mine, "token", "alice")
    assert r.returncode == 1 and f"{mine / 'secret'} belongs to uid 54321" in r.stderr


# -- secret URIs: only the caller's own ------------------------------------------------------


async def test_a_job_may_name_only_its_owners_secrets(api: Api) -> None:
    s = api.session
    for user in ("alice", "bob"):
        async with s.post(
            f"{api.url}/secrets", json={"key": "KEY", "value": "dg=="}, headers=api.headers(user)
        ) as r:
            assert r.status == 201
    job = {"preset_name": "cpu-small", "image": "ubuntu", "command": "true"}

    async def create(uri: str, **extra: Any) -> list[tuple[int, str]]:
        """bob's job with the secret as a variable, and as a file."""
        answers = []
        for body in (
            {**job, **extra, "secret_env": {"S": uri}},
            {**job, **extra, "secret_volumes": [{"src_secret_uri": uri, "dst_path": "/etc/s"}]},
        ):
            async with s.post(
                f"{api.url}/jobs?from_preset", json=body, headers=api.headers("bob")
            ) as r:
                answers.append((r.status, await r.text()))
        return answers

    for uri in (
        "secret:KEY",
        "secret://local/KEY",
        "secret://local/bob/KEY",
        "secret://local/default/KEY",
        "secret://local/local/default/KEY",
        "secret://local/local/bob/KEY",
        "secret://local/NO_ORG/default/KEY",
    ):
        answers = await create(uri)
        assert [a[0] for a in answers] == [202, 202], (uri, answers)
    answers = await create("secret://local/local/mine/KEY", project_name="mine")
    assert [a[0] for a in answers] == [202, 202], answers
    for uri, whose, extra in [
        ("secret://local/alice/KEY", "alice", {}),
        ("secret://local/local/alice/KEY", "alice", {}),
        ("secret://local/local/alice/KEY", "alice", {"project_name": "alice"}),
        ("secret://local/nobody/KEY", "nobody", {}),
        ("secret://local/elsewhere/default/KEY", "org elsewhere", {}),
    ]:
        for status, text in await create(uri, **extra):
            assert status == 400, (uri, text)
            assert json.loads(text)["error"] == (
                f"{uri} belongs to {whose}: you can use only your own secrets "
                "(secret:KEY, or secret://local/bob/KEY)"
            ), text
    for uri in ("secret://local/a/b/c/KEY", "secret://local//KEY"):
        for status, text in await create(uri):
            assert status == 400 and "is not a secret URI" in text, (uri, text)
