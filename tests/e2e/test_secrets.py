"""Secrets end to end, on both runtimes: added with `neuro secret`, delivered as environment
variables and read-only files, never shown anywhere else, and
nobody else's to use."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import Neuro

VALUE = "s3cr3t-Value-7f3a9c"
FILE_VALUE = "-----BEGIN KEY-----\nzz-9b1e-private\n-----END KEY-----\n"


def test_secret_env_files_and_isolation(neuro: Neuro, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert "Secret tok saved" in neuro("secret", "add", "tok", VALUE).stderr
    keyfile = tmp_path / "key.pem"
    keyfile.write_text(FILE_VALUE)
    neuro.ok("secret", "add", "pem", f"@{keyfile}")
    r = neuro("secret", "add", "piped", "-", input="from-stdin")
    assert r.returncode == 0, r.stderr
    listed = neuro.ok("secret", "ls")
    assert listed.splitlines()[0] == "KEY\tURI"
    assert [line.split("\t")[0] for line in listed.splitlines()[1:]] == ["pem", "piped", "tok"]
    assert VALUE not in listed

    r = neuro(
        "run",
        "-e",
        "TOK=secret:tok",
        "-e",
        "PLAIN=x",
        neuro.image,
        "--",
        "sh",
        "-c",
        'echo "tok=$TOK plain=$PLAIN"',
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"tok={VALUE} plain=x\n"
    job = r.stderr.split("Job ID: ")[1].split()[0]

    mount = ("-v", "secret:pem:/etc/app/key.pem")
    script = "cat /etc/app/key.pem; (echo x > /etc/app/key.pem) 2>/dev/null && echo WROTE || echo read-only"
    r = neuro("run", *mount, neuro.image, "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == FILE_VALUE + "read-only\n"
    files_job = r.stderr.split("Job ID: ")[1].split()[0]
    st = neuro.ok("status", files_job)
    assert "/etc/app/key.pem <- secret://" in st and "zz-9b1e" not in st

    # the value appears in no response, no error and no server log line
    st = neuro.ok("status", job)
    assert "TOK=secret://" in st and VALUE not in st
    detail = json.loads(neuro.ok("status", "--json", job))
    assert detail["secret_env"]["TOK"].endswith("/tok") and "TOK" not in detail["env"]
    shown = neuro.ok("ps", "-a", "--json") + neuro.ok("ps", "-a") + neuro.ok("logs", job)
    assert VALUE in neuro.ok("logs", job)  # (what the job itself printed is its output)
    assert VALUE not in shown.replace(f"tok={VALUE} plain=x", "")
    log = (neuro.server_dir / "server.log").read_text()
    assert VALUE not in log and "zz-9b1e" not in log

    # another user: cannot list, read or use them
    token = subprocess.run(
        ["neuro-server", "add-user", "bob", "--data-dir", str(neuro.server_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=neuro.env,
    ).stdout.strip()
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    bob_home = tmp_path / "bob"
    bob_home.mkdir()
    bob = Neuro(bob_home)
    bob.ok("login", url, "--token", token)
    assert bob.ok("secret", "ls").splitlines() == ["KEY\tURI"]
    r = bob("run", "-e", "T=secret:tok", neuro.image, "--", "sh", "-c", "echo $T")
    assert r.returncode == 65 and "no secret 'tok'" in r.stderr and VALUE not in r.stdout + r.stderr
    r = bob("secret", "rm", "tok")
    assert r.returncode == 1 and "no secret 'tok'" in r.stderr

    # removed: refused for new jobs, one line
    assert neuro.ok("secret", "rm", "tok").split() == ["tok"]
    r = neuro("run", "-e", "TOK=secret:tok", neuro.image, "--", "true")
    assert r.returncode == 65 and "no secret 'tok'" in r.stderr
    r = neuro("secret", "add", "bad key", "x")
    assert r.returncode == 65 and "invalid secret key" in r.stderr
    r = neuro("run", "-v", "disk:d:/data", neuro.image, "--", "true")
    assert r.returncode == 65 and "no disk 'd'" in r.stderr
