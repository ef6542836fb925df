"""Parsing of user input that several commands share: time deltas, dates, env files."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .errors import CLIError, ExitCode

_DELTA_RE = re.compile(
    r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)


def parse_timedelta(value: str) -> timedelta:
    """``1d2h3m4s`` (each part optional, at least one) -> timedelta."""
    text = value.strip()
    m = _DELTA_RE.match(text)
    if not text or not m or not any(m.groupdict().values()):
        raise ValueError(f"invalid time delta {value!r}: use a form like 1d2h3m4s, 30m or 45s")
    g = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    return timedelta(days=g["d"], hours=g["h"], minutes=g["m"], seconds=g["s"])


def parse_life_span(value: str) -> float:
    delta = parse_timedelta(value)
    seconds = delta.total_seconds()
    if seconds <= 0:
        raise ValueError(f"the life span must be positive, got {value!r}")
    return seconds


def parse_signal(value: str) -> str:
    """Validate a signal name or number locally: 'USR1', 'SIGUSR1', 'usr1', '10' -> 'SIGUSR1'
    (a name as the server takes it), a number as it is."""
    from neuro_sdk._wire import signal_number, signal_spelling  # (only when a signal is given)

    if signal_number(value) is None:
        raise ValueError(f"invalid signal {value!r}: use a name like USR1, TERM, HUP or a number")
    return signal_spelling(value)


def parse_life_span_signal(value: str) -> tuple[str, float]:
    """``SIGNAL[@BEFORE]`` (``USR1@5m``, ``SIGTERM@30s``, ``10``) -> (``SIGUSR1``, 300.0), the
    signal as parse_signal gives it; BEFORE defaults to 60 s, as Slurm's --signal does."""
    from neuro_sdk._wire import UNCATCHABLE, signal_number

    name, _, before = value.partition("@")
    sig = parse_signal(name)
    if signal_number(sig) in UNCATCHABLE:
        raise ValueError(f"{name.strip()} cannot be caught: use a signal the job can handle")
    seconds = parse_timedelta(before).total_seconds() if before else 60.0
    if seconds <= 0:
        raise ValueError(f"the time before the end must be positive, got {before!r}")
    return sig, seconds


def parse_date_or_delta(value: str, *, now: datetime | None = None) -> datetime:
    """An ISO-8601 date/time (naive = local time) or a delta back from now (``1h``)."""
    try:
        delta = parse_timedelta(value)
    except ValueError:
        pass
    else:
        return (now or datetime.now(UTC)) - delta
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"invalid date {value!r}: use ISO-8601 (2026-01-31, 2026-01-31T12:00) or a delta (1h30m)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time
    return dt.astimezone(UTC)


def parse_env(
    items: tuple[str, ...], files: tuple[str, ...], environ: dict[str, str]
) -> dict[str, str]:
    """``--env-file`` lines first, then ``-e VAR=VAL`` (``-e VAR`` copies the local value)."""
    env: dict[str, str] = {}
    for f in files:
        try:
            lines = Path(f).read_text().splitlines()
        except OSError as e:
            raise CLIError(f"cannot read env file {f}: {e.strerror}", ExitCode.USAGE) from None
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise CLIError(f"{f}:{n}: expected VAR=VALUE, got {line!r}", ExitCode.USAGE)
            k, v = line.split("=", 1)
            env[k.strip()] = v
    for item in items:
        if "=" in item:
            k, v = item.split("=", 1)
        else:
            k = item
            if k not in environ:
                raise CLIError(f"-e {k}: no such variable in the local environment", ExitCode.USAGE)
            v = environ[k]
        if not k:
            raise CLIError(f"invalid -e {item!r}: expected VAR=VALUE", ExitCode.USAGE)
        env[k] = v
    return env


def format_timedelta(seconds: float) -> str:
    """3723 -> '1h2m3s'"""
    s = round(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    out = "".join(f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if v)
    return out or "0s"


def parse_volume(spec: str) -> tuple[str, str, str, bool]:
    """``-v`` of `neuro run`: ``secret:KEY:/path``, ``storage:PATH:/path[:ro|:rw]`` or
    ``disk:NAME:/path[:ro|:rw]`` ->
    (kind, what, path in the job, read-only)."""
    scheme, _, rest = spec.partition(":")
    if scheme not in ("secret", "storage", "disk"):
        raise CLIError(
            f"invalid -v {spec!r}: use storage:PATH:/path[:ro], disk:NAME:/path[:ro]"
            " or secret:KEY:/path",
            ExitCode.USAGE,
        )
    read_only = scheme == "secret"
    if scheme != "secret" and (rest.endswith((":ro", ":rw"))):
        read_only = rest.endswith(":ro")
        rest = rest[:-3]
    what, sep, path = rest.rpartition(":")
    if not sep or not path.startswith("/") or (scheme != "storage" and not what):
        example = {
            "secret": "secret:KEY:/absolute/path",
            "disk": "disk:NAME:/absolute/path[:ro]",
            "storage": "storage:PATH:/absolute/path[:ro]",
        }[scheme]
        raise CLIError(f"invalid -v {spec!r}: use {example}", ExitCode.USAGE)
    return scheme, what, path, read_only


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """docker's syntax: comma-separated keys, each a single character or ``ctrl-X``
    (``ctrl-@``, ``ctrl-a``..``ctrl-z``, ``ctrl-[``, ``ctrl-\\``, ``ctrl-]``, ``ctrl-^``,
    ``ctrl-_``).  An empty spec disables detaching."""
    if spec == "":
        return b""
    out = bytearray()
    for part in spec.split(","):
        key = part.strip()
        if len(key) == 1:
            out.append(ord(key))
            continue
        if key.lower().startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            specials = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if ch in specials:
                out.append(specials[ch])
                continue
        raise ValueError(
            f"invalid detach key {key!r}: use a character or ctrl-<letter>, "
            "comma-separated (e.g. ctrl-p,ctrl-q)"
        )
    return bytes(out)
