"""output.log + output.idx: the writer's records and the reader's since / timestamps / follow."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from neuro_server.runtime.logfile import (
    RECORD,
    STDERR,
    STDOUT,
    LogWriter,
    first_record_since,
    read_log,
    rfc3339_ns,
)
from tests.server.runtime.conftest import eventually

T0 = 1_628_846_580.0  # 2021-08-13T09:23:00Z


async def collect(job_dir: Path, **kw: object) -> bytes:
    kw.setdefault("finished", lambda: True)
    return b"".join([c async for c in read_log(str(job_dir), **kw)])  # type: ignore[arg-type]


def write(job_dir: Path, chunks: list[tuple[bytes, int, float]]) -> None:
    w = LogWriter(str(job_dir))
    for data, stream, when in chunks:
        w.write(data, stream, when)
    w.close()


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (T0, "2021-08-13T09:23:00.000000000Z"),
        (T0 + 0.25, "2021-08-13T09:23:00.250000000Z"),
        (T0 + 0.9999999999, "2021-08-13T09:23:01.000000000Z"),  # rounds up into the next second
    ],
    ids=["whole", "fraction", "carry"],
)
def test_logfile_rfc3339_ns(t: float, text: str) -> None:
    assert rfc3339_ns(t) == text


def test_logfile_writer_records(tmp_path: Path) -> None:
    write(tmp_path, [(b"ab", STDOUT, T0), (b"", STDOUT, T0), (b"cde", STDERR, T0 + 1)])
    assert (tmp_path / "output.log").read_bytes() == b"abcde"
    records = list(RECORD.iter_unpack((tmp_path / "output.idx").read_bytes()))
    assert records == [(0, T0, STDOUT, 2), (2, T0 + 1, STDERR, 3)]
    # a second writer (a restarted job) appends, offsets go on
    write(tmp_path, [(b"f", STDOUT, T0 + 2)])
    records = list(RECORD.iter_unpack((tmp_path / "output.idx").read_bytes()))
    assert records[-1] == (5, T0 + 2, STDOUT, 1)


def test_logfile_writer_drops_a_torn_record(tmp_path: Path) -> None:
    write(tmp_path, [(b"ab", STDOUT, T0)])
    with open(tmp_path / "output.idx", "ab") as f:
        f.write(b"\x01\x02\x03")
    write(tmp_path, [(b"c", STDOUT, T0 + 1)])
    records = list(RECORD.iter_unpack((tmp_path / "output.idx").read_bytes()))
    assert records == [(0, T0, STDOUT, 2), (2, T0 + 1, STDOUT, 1)]


@pytest.mark.parametrize(
    ("since", "expected"),
    [(None, (0, 0)), (T0 - 5, (0, 0)), (T0 + 1, (1, 2)), (T0 + 1.5, (2, 5)), (T0 + 9, (3, 6))],
    ids=["none", "before", "exact", "between", "after"],
)
def test_logfile_first_record_since(
    tmp_path: Path, since: float | None, expected: tuple[int, int]
) -> None:
    write(tmp_path, [(b"ab", STDOUT, T0), (b"cde", STDERR, T0 + 1), (b"f", STDOUT, T0 + 2)])
    fd = os.open(tmp_path / "output.idx", os.O_RDONLY)
    try:
        assert first_record_since(fd, T0 - 100 if since is None else since) == expected
    finally:
        os.close(fd)


async def test_logfile_since_and_timestamps(tmp_path: Path) -> None:
    write(
        tmp_path,
        [
            (b"one\ntw", STDOUT, T0),
            (b"o\nthree\n", STDERR, T0 + 1.5),
            (b"four", STDOUT, T0 + 2),
        ],
    )
    assert await collect(tmp_path) == b"one\ntwo\nthree\nfour"
    assert await collect(tmp_path, since=T0 + 1) == b"o\nthree\nfour"
    stamped = await collect(tmp_path, timestamps=True)
    assert stamped == (
        b"2021-08-13T09:23:00.000000000Z one\n"
        b"2021-08-13T09:23:00.000000000Z two\n"  # the line started in the first chunk
        b"2021-08-13T09:23:01.500000000Z three\n"
        b"2021-08-13T09:23:02.000000000Z four"
    )
    assert await collect(tmp_path, timestamps=True, since=T0 + 2) == (
        b"2021-08-13T09:23:02.000000000Z four"
    )


async def test_logfile_timestamps_in_small_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuro_server.runtime import logfile

    monkeypatch.setattr(logfile, "TS_BATCH_RECORDS", 3)
    monkeypatch.setattr(logfile, "TS_BATCH_BYTES", 4)
    chunks = [(f"l{i}\n".encode(), STDOUT, T0 + i) for i in range(10)]
    write(tmp_path, chunks)
    stamped = (await collect(tmp_path, timestamps=True)).decode().splitlines()
    assert [line.split(" ")[1] for line in stamped] == [f"l{i}" for i in range(10)]
    assert stamped[9].startswith("2021-08-13T09:23:09.000000000Z ")


async def test_logfile_follow_until_finished(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path))
    done = asyncio.Event()
    got: list[bytes] = []

    async def follow() -> None:
        async for chunk in read_log(str(tmp_path), finished=done.is_set, poll=0.01):
            got.append(chunk)

    task = asyncio.create_task(follow())
    for i in range(5):
        line = f"{i}\n".encode()
        w.write(line, STDOUT)
        await eventually(lambda line=line: b"".join(got).endswith(line))
    w.write(b"last\n", STDERR)  # written before "finished": must not be lost
    w.close()
    done.set()
    await asyncio.wait_for(task, 5)
    assert b"".join(got) == b"0\n1\n2\n3\n4\nlast\n"


async def test_logfile_missing_files(tmp_path: Path) -> None:
    assert await collect(tmp_path / "nothing", follow=True) == b""
    assert await collect(tmp_path / "nothing", follow=False, finished=lambda: False) == b""
