"""The pieces every request is checked with: typed fields of a JSON object, each mistake a
ValidationError that names the field (the handlers answer it with a 400)."""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

# \Z, not $: "$" also matches before a final newline ("train-1\n" would pass)
NAME_RE = re.compile(r"^[a-z](?:-?[a-z0-9])*\Z")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_TAGS = 16
MAX_STR = 64 * 1024
THIRTY_DAYS = 30 * 24 * 3600.0
MAX_LIFE_SPAN = 100 * 365 * 24 * 3600.0  # a century: more is a mistake (or infinity)


class ValidationError(Exception):
    pass


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    return body


def string(
    body: dict[str, Any],
    key: str,
    *,
    required: bool = False,
    max_len: int = MAX_STR,
    prefix: str = "",
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(f"'{prefix}{key}' is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"'{prefix}{key}' must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(f"'{prefix}{key}' is too long (more than {max_len} characters)")
    return value


def boolean(body: dict[str, Any], key: str, prefix: str = "") -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError(f"'{prefix}{key}' must be true or false")
    return value


def finite(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (a bool, NaN, infinity, an
    integer too large for a float: math.isfinite(10**400) itself raises OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def number(body: dict[str, Any], key: str, prefix: str = "") -> float | None:
    value = body.get(key)
    if value is None:
        return None
    result = finite(value)
    if result is None:
        raise ValidationError(f"'{prefix}{key}' must be a number")
    return result


def integer(body: dict[str, Any], key: str, prefix: str = "") -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"'{prefix}{key}' must be an integer")
    return value


def split_command(value: str | None, what: str) -> list[str]:
    if not value:
        return []
    try:
        return shlex.split(value)
    except ValueError as e:
        raise ValidationError(f"'{what}' cannot be parsed: {e}") from None


def env(body: dict[str, Any], prefix: str = "") -> dict[str, str]:
    value = body.get("env")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"'{prefix}env' must be an object of strings")
    for k, v in value.items():
        if not ENV_NAME_RE.fullmatch(k):
            raise ValidationError(f"invalid environment variable name: {k!r}")
        if not isinstance(v, str):
            raise ValidationError(f"environment variable {k!r} must be a string")
        if "\0" in v:
            raise ValidationError(
                f"environment variable {k!r} has a NUL character: a "
                "process environment cannot hold one"
            )
    return dict(value)


def container_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise ValidationError(f"{where}: must be an absolute path")
    if any(part == ".." for part in value.split("/")) or value.rstrip("/") == "":
        raise ValidationError(f"{where}: {value!r} is not a file path (no '..', not '/')")
    return value


def fmt_bytes(n: int) -> str:
    if n >= 1 << 60:
        return "more than an EiB"  # (n may be beyond what a float holds)
    return f"{n / (1 << 30):.4g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.4g} MiB"
