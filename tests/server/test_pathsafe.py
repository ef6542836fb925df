"""pathsafe: a path opened beneath a root with no link followed, by openat2 and by the
component walk it falls back to (forced here), with the same answers."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from neuro_server import pathsafe


@pytest.fixture(params=["openat2", "walk"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        monkeypatch.setattr(pathsafe, "use_openat2", False)
    return str(request.param)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/a/b/c (directories), root/f (a file), root/fifo, links: root/a/in -> b (inside),
    root/out -> the directory above the root, root/dangling -> nowhere."""
    root = tmp_path / "root"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "f").write_text("file")
    os.mkfifo(root / "fifo")
    (root / "a" / "in").symlink_to("b")
    (root / "out").symlink_to(tmp_path)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    return root


@pytest.fixture
def root_fd(tree: Path) -> Iterator[int]:
    fd = os.open(tree, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def same_file(fd: int, path: Path) -> bool:
    a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@pytest.mark.parametrize(
    ("path", "where", "directory"),
    [
        ("a/b/c", "a/b/c", True),
        ("a//b/./c/", "a/b/c", True),
        ("", ".", True),
        (".", ".", True),
        ("f", "f", False),
        ("a", "a", False),
    ],
    ids=[
        "nested",
        "untidy",
        "empty-is-root",
        "dot-is-root",
        "a-file-where-allowed",
        "a-directory-where-files-are-allowed",
    ],
)
def test_open_beneath_opens_the_path_itself(
    how: str, tree: Path, root_fd: int, path: str, where: str, directory: bool
) -> None:
    fd = pathsafe.open_beneath(root_fd, path, directory=directory)
    try:
        assert same_file(fd, tree / where)
        # O_PATH: a handle on the inode, not an open for reading (a FIFO would not block)
        assert os.get_inheritable(fd) is False
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.read(fd, 1)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("path", "directory", "err", "message"),
    [
        ("a/in/c", True, errno.ELOOP, "a/in: is a symbolic link"),
        ("a/in", True, errno.ELOOP, "a/in: is a symbolic link"),
        ("out", True, errno.ELOOP, "out: is a symbolic link"),
        ("out/root/a", True, errno.ELOOP, "out: is a symbolic link"),
        ("dangling", False, errno.ELOOP, "dangling: is a symbolic link"),
        ("..", True, errno.EXDEV, "'..' is not allowed"),
        ("a/../../x", True, errno.EXDEV, "'..' is not allowed"),
        ("/etc", True, errno.EXDEV, "an absolute path"),
        ("a/nope/c", True, errno.ENOENT, "a/nope: no such file or directory"),
        ("nope", False, errno.ENOENT, "nope: no such file or directory"),
        ("f/x", True, errno.ENOTDIR, "f: not a directory"),
        ("f", True, errno.ENOTDIR, "f: not a directory"),
        ("fifo", False, errno.EINVAL, "fifo: not a regular file or a directory"),
        ("a\0b", True, errno.EINVAL, "a NUL byte"),
    ],
    ids=[
        "link-in-the-middle",
        "link-last",
        "link-out",
        "through-a-link-out",
        "dangling-link",
        "dotdot",
        "dotdot-inside",
        "absolute",
        "missing-in-the-middle",
        "missing-last",
        "under-a-file",
        "file-for-a-directory",
        "fifo",
        "nul",
    ],
)
def test_open_beneath_refuses(
    how: str, root_fd: int, path: str, directory: bool, err: int, message: str
) -> None:
    with pytest.raises(pathsafe.PathError) as e:
        os.close(pathsafe.open_beneath(root_fd, path, directory=directory))
    assert e.value.errno == err, e.value
    assert message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_magic_links_are_not_followed(how: str) -> None:
    """/proc's links (a process's cwd, its fds) lead anywhere: refused like any other."""
    fd = os.open("/proc/self", os.O_PATH | os.O_DIRECTORY)
    try:
        for path in ("cwd", "root/etc", "fd/0"):
            with pytest.raises(pathsafe.PathError) as e:
                os.close(pathsafe.open_beneath(fd, path, directory=False))
            assert e.value.errno == errno.ELOOP, (path, e.value)
    finally:
        os.close(fd)


def test_openat2_does_it_in_one_call_where_the_kernel_has_it(
    monkeypatch: pytest.MonkeyPatch, tree: Path, root_fd: int
) -> None:
    if pathsafe._openat2(root_fd, "a") is None:
        pytest.skip("no openat2 here (Linux < 5.6, or filtered): the walk serves")

    def no_walk(*_a: object) -> int:
        raise AssertionError("walked although openat2 is there")

    monkeypatch.setattr(pathsafe, "_walk", no_walk)
    fd = pathsafe.open_beneath(root_fd, "a/b/c")
    try:
        assert same_file(fd, tree / "a" / "b" / "c")
    finally:
        os.close(fd)


def test_the_walk_serves_where_openat2_is_missing(
    monkeypatch: pytest.MonkeyPatch, tree: Path, root_fd: int
) -> None:
    """ENOSYS (an old kernel) or EPERM (a seccomp filter that does not know it): the walk."""
    for err in (errno.ENOSYS, errno.EPERM):
        monkeypatch.setattr(pathsafe._libc, "syscall", lambda *_a: -1)
        monkeypatch.setattr(pathsafe.ctypes, "get_errno", lambda err=err: err)
        fd = pathsafe.open_beneath(root_fd, "a/b")
        try:
            assert same_file(fd, tree / "a" / "b")
        finally:
            os.close(fd)
        with pytest.raises(pathsafe.PathError, match="a/in: is a symbolic link"):
            pathsafe.open_beneath(root_fd, "a/in/c")


def test_open_under_opens_the_root_as_given(tree: Path, tmp_path: Path) -> None:
    fd = pathsafe.open_under(str(tree), "a/b")
    try:
        assert same_file(fd, tree / "a" / "b")
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        pathsafe.open_under(str(tmp_path / "missing"), "a")
