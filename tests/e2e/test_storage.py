"""Storage end to end, on both runtimes: files go in and out with `neuro storage`, jobs mount
them (read-only when asked, enforced): in the container, or in the host job's own mount
namespace."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Neuro


def test_storage_cp_ls_rm_and_volumes(neuro: Neuro, tmp_path: Path) -> None:
    src = tmp_path / "data"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4000)
    r = neuro("storage", "cp", "-r", str(src), "storage:ds/")
    assert r.returncode == 0 and "Copied 2 files" in r.stderr, r.stderr
    assert neuro.ok("storage", "ls", "storage:ds").split() == ["data/"]
    assert neuro.ok("storage", "ls", "storage:ds/data").split() == ["a.txt", "sub/"]
    listing = json.loads(neuro.ok("storage", "ls", "--json", "storage:ds/data/sub"))
    assert listing[0]["name"] == "b.bin" and listing[0]["size"] == 256 * 4000
    back = tmp_path / "back"
    neuro.ok("storage", "cp", "-r", "storage:ds/data", str(back))
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    r = neuro("storage", "cp", "storage:ds/data", str(tmp_path / "x"))
    assert r.returncode == 65 and "is a directory: use -r" in r.stderr
    r = neuro("storage", "ls", "storage:../../etc")
    assert r.returncode == 65 and "'..' is not allowed" in r.stderr

    ro = ("-v", "storage:ds/data:/data:ro", "-v", "storage:out:/out")
    script = (
        "cat /data/a.txt; (echo x > /data/new) 2>/dev/null && echo WROTE || echo read-only;"
        " echo result > /out/r.txt"
    )
    r = neuro("run", *ro, neuro.image, "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "alpha\nread-only\n"
    job = r.stderr.split("Job ID: ")[1].split()[0]
    neuro.ok("storage", "cp", "storage:out/r.txt", str(tmp_path))
    assert (tmp_path / "r.txt").read_text() == "result\n"
    st = neuro.ok("status", job)
    assert "/data <- storage:ds/data (read-only)" in st and "/out <- storage:out" in st
    # exec beside a running job sees its volumes
    box = neuro.ok("run", "-q", "--detach", *ro, neuro.image, "--", "sleep", "60").strip()
    neuro.wait_status(box, {"running"})
    r = neuro("exec", box, "--", "sh", "-c", "cat /data/a.txt; ls /out")
    assert (r.returncode, r.stdout) == (0, "alpha\nr.txt\n"), r.stderr
    neuro.ok("kill", box)
    r = neuro("run", "-v", "storage:missing:/m:ro", neuro.image, "--", "true")
    assert r.returncode == 65 and "no such file or directory" in r.stderr
    neuro.ok("storage", "rm", "-r", "storage:ds")
    assert neuro.ok("storage", "ls").split() == ["out/"]
    # the Neu.ro CLI's shortcuts: neuro mkdir, cp, ls, rm
    neuro.ok("mkdir", "storage:short/cut")
    neuro.ok("mkdir", "-p", "storage:short/cut")  # as mkdir -p: an existing one is fine
    neuro.ok("cp", str(tmp_path / "r.txt"), "storage:short/cut/")
    assert neuro.ok("ls", "storage:short/cut").split() == ["r.txt"]
    neuro.ok("rm", "-r", "storage:short")
    assert neuro.ok("ls").split() == ["out/"]
