"""cgroups.py on fake trees (v1 and v2 layouts) and the words for what is enforced."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuro_server.runtime import cgroups


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (
            ("cgroup v1", "cgroup v1", 1 << 30, 0.5),
            "memory 1.0 GiB and cpu 0.5 enforced by cgroup v1",
        ),
        (
            ("cgroup v2", None, 64 << 20, 2.0),
            "memory 64 MiB enforced by cgroup v2; cpu 2 not enforced (no writable cgroup)",
        ),
        (
            ("rlimit (RLIMIT_DATA)", None, 1536 << 20, 0.0),
            "memory 1.5 GiB enforced by rlimit (RLIMIT_DATA)",
        ),
        ((None, None, 0, 0.0), "no limits requested"),
        (("cgroup v1", "cgroup v1", None, None), "memory and cpu enforced by cgroup v1"),
        (
            ("rlimit (RLIMIT_DATA)", None, None, None),
            "memory enforced by rlimit (RLIMIT_DATA); cpu not enforced (no writable cgroup)",
        ),
    ],
    ids=["v1-both", "v2-memory-only", "rlimit", "nothing", "machine-v1", "machine-rlimit"],
)
def test_cgroups_describe(args: tuple, text: str) -> None:  # type: ignore[type-arg]
    assert cgroups.describe(*args) == text


def fake_v1(root: Path) -> None:
    for c in cgroups.V1_CONTROLLERS:
        (root / c).mkdir(parents=True)
        (root / c / "cgroup.procs").write_text("")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")


def test_cgroups_probe(tmp_path: Path) -> None:
    assert cgroups.probe(str(tmp_path)) == (None, ())
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert cgroups.probe(str(tmp_path)) == ("v2", ("memory", "cpu"))
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")
    assert cgroups.probe(str(tmp_path)) == (None, ())
    fake_v1(tmp_path)
    assert cgroups.probe(str(tmp_path)) == ("v1", ("memory", "cpu"))


def test_cgroups_setup_v1_fake_tree(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    (tmp_path / "memory" / "p").mkdir()
    cg, mem_by, cpu_by = cgroups.setup("p", "job", 256 << 20, 1.5, str(tmp_path))
    assert cg is not None and (mem_by, cpu_by) == ("cgroup v1", "cgroup v1")
    mem = tmp_path / "memory" / "p" / "job"
    assert (mem / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert (tmp_path / "cpu" / "p" / "job" / "cpu.cfs_quota_us").read_text() == "150000"
    assert set(cg.dirs) == set(cgroups.V1_CONTROLLERS)
    found = cgroups.JobCgroup.find("p", "job", str(tmp_path))
    assert found is not None and found.dirs == cg.dirs


def test_cgroups_setup_v2_fake_tree(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    cg, mem_by, cpu_by = cgroups.setup("p", "job", 64 << 20, 0.25, str(tmp_path))
    assert cg is not None and (mem_by, cpu_by) == ("cgroup v2", "cgroup v2")
    job = tmp_path / "p" / "job"
    assert (job / "memory.max").read_text() == str(64 << 20)
    assert (job / "cpu.max").read_text() == "25000 100000"
    assert (tmp_path / "p" / "cgroup.subtree_control").exists()
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_killed(137) is True
    cg.join(12345)
    assert (job / "cgroup.procs").read_text() == "12345"


def test_cgroups_setup_nothing_writable(tmp_path: Path) -> None:
    assert cgroups.setup("p", "job", 1 << 30, 1.0, str(tmp_path)) == (None, None, None)
    assert cgroups.JobCgroup.find("p", "job", str(tmp_path)) is None


def test_cgroups_oom_from_v1_counters(tmp_path: Path) -> None:
    cg = cgroups.JobCgroup("v1", {"memory": str(tmp_path)})
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_killed(137)
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    (tmp_path / "memory.failcnt").write_text("5\n")
    assert cg.oom_killed(137) and not cg.oom_killed(1)


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        (
            {"pids": 4096, "pids_by": "cgroup v1"},
            "memory 1.0 GiB, cpu 0.5 and pids 4096 enforced by cgroup v1",
        ),
        (
            {"pids": 4096},
            (
                "memory 1.0 GiB and cpu 0.5 enforced by cgroup v1; "
                "pids 4096 not enforced (no writable cgroup)"
            ),
        ),
        ({"pids": None}, "memory 1.0 GiB and cpu 0.5 enforced by cgroup v1"),
    ],
    ids=["enforced", "not-enforced", "not-mentioned"],
)
def test_cgroups_describe_pids(kw: dict, text: str) -> None:  # type: ignore[type-arg]
    assert cgroups.describe("cgroup v1", "cgroup v1", 1 << 30, 0.5, **kw) == text


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cgroups_setup_pids_limit_fake_tree(tmp_path: Path, version: str) -> None:
    if version == "v1":
        fake_v1(tmp_path)
        job = tmp_path / "pids" / "p" / "job"
    else:
        (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
        job = tmp_path / "p" / "job"
    assert cgroups.pids_writable(str(tmp_path)) == f"cgroup {version}"
    cg, _, _ = cgroups.setup("p", "job", 64 << 20, 0.5, str(tmp_path), pids=123)
    assert cg is not None and cg.pids_limit == 123
    assert (job / "pids.max").read_text() == "123"
    cg, _, _ = cgroups.setup("p", "other", 64 << 20, 0.5, str(tmp_path))
    assert cg is not None and cg.pids_limit == 0  # none asked: none written


def test_cgroups_pids_not_writable(tmp_path: Path) -> None:
    assert cgroups.pids_writable(str(tmp_path)) is None
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert cgroups.pids_writable(str(tmp_path)) is None
