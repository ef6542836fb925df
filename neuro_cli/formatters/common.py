"""Pure helpers for times and sizes: relative on a terminal, ISO-8601 UTC in a pipe."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(dt: datetime | None) -> str:
    if dt is None:
        return ""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def relative(dt: datetime | None, now: datetime) -> str:
    """'12 seconds ago', '5 minutes ago', 'yesterday', 'Jan 05'."""
    if dt is None:
        return ""
    secs = (now - dt).total_seconds()
    if secs < 0:
        secs = -secs
        future = True
    else:
        future = False

    def fmt(n: int, unit: str) -> str:
        text = f"{n} {unit}{'' if n == 1 else 's'}"
        return f"in {text}" if future else f"{text} ago"

    if secs < 60:
        return "just now" if secs < 1 else fmt(int(secs), "second")
    if secs < 3600:
        return fmt(int(secs // 60), "minute")
    if secs < 86400:
        return fmt(int(secs // 3600), "hour")
    if secs < 2 * 86400 and not future:
        return "yesterday"
    local = dt.astimezone()
    if local.year == now.astimezone().year:
        return local.strftime("%b %d")
    return local.strftime("%b %d %Y")


def when(dt: datetime | None, now: datetime, tty: bool) -> str:
    return relative(dt, now) if tty else iso(dt)


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def duration(seconds: float) -> str:
    s = round(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return "".join(f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if v) or "0s"
