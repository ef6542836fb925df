"""IOStreams: the one owner of terminal policy (TTY, colour, console width).

On a terminal: rich tables, colour, relative times.  Piped (or NO_COLOR): plain tab-separated
text, no ANSI codes, ISO-8601 UTC times.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@dataclasses.dataclass
class IOStreams:
    stdin: IO[str]
    stdout: IO[str]
    stderr: IO[str]
    stdout_tty: bool
    stderr_tty: bool
    stdin_tty: bool
    color: bool
    width: int | None = None

    @classmethod
    def system(cls, color: str = "auto") -> IOStreams:
        out_tty = sys.stdout.isatty()
        use_color = out_tty and "NO_COLOR" not in os.environ
        if color == "always" or os.environ.get("CLICOLOR_FORCE"):
            use_color = True
        elif color == "never":
            use_color = False
        return cls(
            sys.stdin,
            sys.stdout,
            sys.stderr,
            out_tty,
            sys.stderr.isatty(),
            sys.stdin.isatty(),
            use_color,
        )

    @classmethod
    def test(cls, *, tty: bool = False, color: bool = False, width: int = 100) -> IOStreams:
        return cls(io.StringIO(), io.StringIO(), io.StringIO(), tty, tty, tty, color, width)

    @property
    def interactive(self) -> bool:
        return self.stdout_tty and self.stderr_tty and self.stdin_tty

    def console(self, *, stderr: bool = False) -> Console:
        from rich.console import Console

        tty = self.stderr_tty if stderr else self.stdout_tty
        kw: dict[str, Any] = {
            "file": self.stderr if stderr else self.stdout,
            "force_terminal": tty,
            "no_color": not self.color,
            "color_system": "auto" if self.color else None,
            "highlight": False,
            "soft_wrap": not tty,
            "emoji": False,
        }
        if self.width or not tty:
            kw["width"] = self.width or 2048
        return Console(**kw)

    def page(self, renderable: Any) -> None:
        """Print to stdout; on a terminal, through a pager ($PAGER, else ``less -FRX``) when
        it is longer than 2/3 of the screen (as the official client).  NEURO_PAGER=0 or
        PAGER=cat turns it off."""
        console = self.console()
        if not self.stdout_tty or os.environ.get("NEURO_PAGER") == "0":
            console.print(renderable)
            return
        lines = console.render_lines(renderable, console.options, pad=False)
        if len(lines) <= console.size.height * 2 // 3:
            console.print(renderable)
            return
        os.environ.setdefault("LESS", "-FRX")  # colours pass; a short text does not wait
        with console.pager(styles=self.color):
            console.print(renderable)

    def write_bytes(self, data: bytes) -> None:
        buf = getattr(self.stdout, "buffer", None)
        if buf is not None:
            buf.write(data)
            buf.flush()
        else:
            self.stdout.write(data.decode("utf-8", "replace"))
            self.stdout.flush()

    def err(self, line: str) -> None:
        self.stderr.write(line + "\n")
        self.stderr.flush()

    def out(self, line: str) -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()
