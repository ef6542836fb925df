"""The docker runtime holds a container's first output back while it may be its init's
"could not exec" line, which our one-line error replaces (pure: no engine needed)."""

from __future__ import annotations

from neuro_server.runtime.docker.container import InitError, init_could_not_exec

LINE = b"ERROR (catatonit:6): failed to exec pid1: No such file or directory\n"


def test_the_init_line_is_held_in_pieces_and_replaced() -> None:
    held = InitError()
    for piece in (LINE[:3], LINE[3:20], LINE[20:]):  # an attach stream may split it anywhere
        assert held.hold(piece, 2, 1.0)
    assert held.text == LINE
    assert init_could_not_exec(held.text, 127, "nosuch") == (
        127,
        'cannot run "nosuch": No such file or directory',
    )


def test_other_output_is_not_held() -> None:
    held = InitError()
    assert not held.hold(b"hello\n", 1, 1.0)
    assert not held.hold(LINE, 2, 1.0)  # only the container's first output may be the init's

    held = InitError()
    assert held.hold(b"ERR", 1, 1.0)  # could be the start of it...
    assert not held.hold(b"OR: not the init\n", 1, 1.0)  # ...and is not: written after all
    assert [data for data, _, _ in held.release()] == [b"ERR"]

    held = InitError()
    assert held.hold(LINE, 2, 1.0)
    assert not held.hold(b"more output\n", 1, 1.0)  # a second line: the job ran
    assert init_could_not_exec(LINE + b"more output\n", 127, "x") is None

    assert not InitError(first=False).hold(LINE, 2, 1.0)  # a pump resuming after some output
