"""`neuro cp` with a local `-`: stdin into storage and a storage file to stdout, streamed; and a
reader that goes away (`| head`) is not an error."""

from __future__ import annotations

import hashlib
from pathlib import Path

from neuro_cli.errors import ExitCode
from tests.conftest import SERVER_TOML, Neuro

BIG = b"".join(b"%07d\n" % i for i in range(400_000))  # 3.2 MB: more than a pipe holds


def test_cp_stdin_to_storage_and_storage_to_stdout(neuro: Neuro) -> None:
    r = neuro("cp", "-", "storage:in/big.txt", input=BIG.decode())  # storage:in is made
    assert r.returncode == 0, r.stderr
    assert neuro.ok("ls", "-l", "storage:in").split()[::2] == [str(len(BIG)), "big.txt"]
    p = neuro.popen("cp", "storage:in/big.txt", "-", text=False)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert hashlib.sha256(out).digest() == hashlib.sha256(BIG).digest()
    # an empty stdin makes an empty file
    assert neuro("cp", "-", "storage:in/empty", input="").returncode == 0
    assert neuro.ok("cp", "storage:in/empty", "-") == ""


def test_cp_makes_the_directories_of_a_file(neuro: Neuro, tmp_path: Path) -> None:
    (tmp_path / "m.pt").write_bytes(b"weights")
    neuro.ok("cp", str(tmp_path / "m.pt"), "storage:models/v2/m.pt")
    assert neuro.ok("ls", "storage:models/v2").split() == ["m.pt"]
    r = neuro("cp", str(tmp_path / "m.pt"), "storage:models/v2/m.pt/x")  # under a file
    assert r.returncode == 65 and "exists and is a file" in r.stderr


def test_cp_with_dash_refuses_directories_and_recursion(neuro: Neuro) -> None:
    neuro.ok("mkdir", "storage:d")
    r = neuro("cp", "storage:d", "-")
    assert r.returncode == 65 and "storage:d is a directory" in r.stderr
    r = neuro("cp", "-", "storage:d/", input="x")
    assert r.returncode == 2 and "needs a file's path" in r.stderr
    r = neuro("cp", "-r", "storage:d", "-")
    assert r.returncode == 2 and "-r does not go with -" in r.stderr
    r = neuro("cp", "storage:missing", "-")
    assert r.returncode == 72 and r.stdout == ""


def test_output_into_a_reader_that_went_away_is_not_an_error(neuro: Neuro) -> None:
    neuro("cp", "-", "storage:big.txt", input=BIG.decode())
    p = neuro.popen("cp", "storage:big.txt", "-", text=False)
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.read(8) == b"0000000\n"
    p.stdout.close()  # as `| head -1` does: the next write gets EPIPE
    assert p.wait(timeout=60) == 0
    assert p.stderr.read() == b""
    p.stderr.close()


def test_cp_over_the_storage_quota_says_so_in_one_line(neuro: Neuro, tmp_path: Path) -> None:
    neuro.write_server_config(
        SERVER_TOML.replace("[server]\n", '[server]\nstorage_quota = "1MiB"\n')
    )
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 3_000_000)
    r = neuro("cp", str(big), "storage:data/big.bin")
    assert r.returncode == ExitCode.NO_SPACE == 73, r.stderr
    assert r.stderr == (
        "ERROR: storage quota of 1.0 MiB exceeded: 0 bytes used; remove files "
        "(neuro rm) or ask the admin for more\n"
    )
    assert neuro.ok("ls", "storage:data") == ""  # nothing partial
    r = neuro("cp", "-", "storage:data/piped.bin", input="p" * 3_000_000)  # streamed
    assert r.returncode == 73 and "storage quota of 1.0 MiB exceeded" in r.stderr, r.stderr
