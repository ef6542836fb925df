"""The user's settings: ``~/.neuro/user.toml`` (``$NEURO_CONFIG/user.toml``), overridden key by
key by a project's ``.neuro.toml`` (in the working directory or the nearest parent).

    [job]
    preset = "cpu-small"        # neuro run's default preset
    life-span = "1d"            # neuro run's default --life-span
    ps-format = "id/name status/when image command"   # neuro ps's default --format

    [alias]
    lsa = "ps -a"               # neuro lsa  ->  neuro ps -a
    [alias.train]
    cmd = "run -s gpu-small --detach"

Loaded only when a command needs it (tomllib stays out of `neuro --help`).  A malformed file
or value is a one-line error naming the file (exit code 70)."""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import Any

from .errors import CLIError, ExitCode

JOB_KEYS = ("preset", "life-span", "ps-format")


@dataclasses.dataclass(frozen=True)
class UserConfig:
    job: dict[str, str]
    aliases: dict[str, list[str]]
    files: tuple[Path, ...] = ()


def user_file() -> Path:
    return Path(os.environ.get("NEURO_CONFIG") or "~/.neuro").expanduser() / "user.toml"


def project_file(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        f = d / ".neuro.toml"
        if f.is_file():
            return f
    return None


def _read(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}", ExitCode.CONFIG) from None
    except tomllib.TOMLDecodeError as e:
        raise CLIError(f"{path}: invalid TOML: {e}", ExitCode.CONFIG) from None


def _merge(into: UserConfig, data: dict[str, Any], path: Path) -> UserConfig:
    job = dict(into.job)
    aliases = dict(into.aliases)
    for section, value in data.items():
        if section == "job":
            if not isinstance(value, dict):
                raise CLIError(f"{path}: [job] must be a table", ExitCode.CONFIG)
            for key, v in value.items():
                if key not in JOB_KEYS:
                    raise CLIError(
                        f"{path}: unknown key [job] {key}: use {', '.join(JOB_KEYS)}",
                        ExitCode.CONFIG,
                    )
                if not isinstance(v, str):
                    raise CLIError(f"{path}: [job] {key} must be a string", ExitCode.CONFIG)
                job[key] = v
        elif section == "alias":
            if not isinstance(value, dict):
                raise CLIError(f"{path}: [alias] must be a table", ExitCode.CONFIG)
            for name, v in value.items():
                cmd = v.get("cmd") if isinstance(v, dict) else v
                if not isinstance(cmd, str) or not cmd.strip():
                    raise CLIError(
                        f"{path}: alias {name!r} needs a command string", ExitCode.CONFIG
                    )
                try:
                    aliases[name] = shlex.split(cmd)
                except ValueError as e:
                    raise CLIError(f"{path}: alias {name!r}: {e}", ExitCode.CONFIG) from None
        else:
            raise CLIError(
                f"{path}: unknown section [{section}]: use [job] or [alias]", ExitCode.CONFIG
            )
    return UserConfig(job, aliases, (*into.files, path))


def load(cwd: Path | None = None) -> UserConfig:
    config = UserConfig({}, {})
    for path in (user_file(), project_file(cwd)):
        if path is not None and path.is_file():
            config = _merge(config, _read(path), path)
    return config


def expand_alias(args: list[str], commands: set[str]) -> list[str]:
    """``neuro [GLOBAL OPTIONS] ALIAS ARGS...`` -> the alias's words in place of ALIAS.  Commands
    win over aliases (an alias cannot shadow one), and an alias does not expand into another."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] == "--color" else 1  # the one global option that takes a value
    if i >= len(args) or args[i] in commands:
        return args
    aliases = load().aliases
    if args[i] in aliases:
        return [*args[:i], *aliases[args[i]], *args[i + 1 :]]
    return args
