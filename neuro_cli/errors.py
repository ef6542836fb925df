"""Exit codes and the mapping of errors to them: the one place that decides both.

| code | meaning |
|------|---------|
| 0    | success (also: detached from a job with the detach keys or the dialog's [d]) |
| 1    | generic failure; ``kill`` when any job could not be killed |
| 2    | usage error (bad option or argument, or a local file it names cannot be read) |
| 65   | the server refused the request as invalid (HTTP 400/409/413) |
| 70   | local configuration problem (not logged in, broken config) |
| 72   | no such job or resource (HTTP 404) |
| 73   | out of storage: over the storage quota, or the server's disk full (HTTP 507) |
| 74   | cannot reach the server (connection refused, timeout, 503) |
| 77   | authentication or permission problem (HTTP 401/403) |
| 124  | a wait timed out |
| 125  | platform failure: the job failed without an exit code, server error (5xx) |
| 130  | interrupted: Ctrl-C, also when it detached from a job (by SIGINT: a shell loop stops) |
| N    | ``run`` (attached) exits with the job's own exit code |
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    BAD_INPUT = 65
    CONFIG = 70
    NOT_FOUND = 72
    NO_SPACE = 73  # sysexits' EX_CANTCREAT: the output could not be created
    UNREACHABLE = 74
    AUTH = 77
    TIMEOUT = 124
    PLATFORM = 125
    INTERRUPTED = 130


class CLIError(Exception):
    """An error the CLI reports in one line, with an exit code and an optional hint."""

    def __init__(self, message: str, code: int = ExitCode.FAILURE, hint: str = "") -> None:
        super().__init__(message)
        self.code = int(code)
        self.hint = hint


class JobExit(Exception):
    """Not an error: leave with this exit code (the job's own, or a platform failure)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Interrupted(JobExit):
    """Ctrl-C ended the command (what it had to say is said): exit 130 the way a program
    that SIGINT stopped does, so that a shell loop around it stops too."""

    def __init__(self) -> None:
        super().__init__(ExitCode.INTERRUPTED)


def unreachable_reason(exc: BaseException) -> str:
    """Why a server could not be reached, in words ("connection refused"), not the transport's
    ``Cannot connect to host ... ssl:default [Connect call failed (...)]``."""
    import os
    import socket

    seen: list[BaseException] = []
    cause: BaseException | None = exc.__cause__ or exc
    while cause is not None and cause not in seen and len(seen) < 10:
        seen.append(cause)
        error = getattr(cause, "os_error", None) or cause
        if isinstance(error, socket.gaierror):
            return "no such host (its name does not resolve)"
        if isinstance(error, TimeoutError) or "timeout" in type(error).__name__.lower():
            return "the connection timed out"
        if isinstance(error, OSError) and error.errno:
            return os.strerror(error.errno).lower()
        cause = cause.__cause__ or cause.__context__
    last = seen[-1] if seen else exc
    return str(last) or type(last).__name__


def classify(exc: BaseException) -> tuple[int, str, str]:
    """(exit code, one-line message, hint) for any exception reaching the top."""
    import asyncio

    from neuro_sdk import (
        AuthError,
        BadGateway,
        ClientError,
        ConfigError,
        IllegalArgumentError,
        InsufficientStorage,
        NDJSONError,
        ResourceNotFound,
        ServerError,
        ServerNotAvailable,
        ServerUnreachable,
    )

    msg = str(exc) or type(exc).__name__
    if isinstance(exc, CLIError):
        return exc.code, msg, exc.hint
    if isinstance(exc, ResourceNotFound):
        if msg.startswith("no such job"):
            from .commands._jobs_common import NO_SUCH_JOB_HINT

            return ExitCode.NOT_FOUND, msg, NO_SUCH_JOB_HINT
        return ExitCode.NOT_FOUND, msg, ""
    if isinstance(exc, AuthError):
        return ExitCode.AUTH, msg, ""
    if isinstance(exc, ServerUnreachable):
        where = exc.url.split("?", 1)[0] if exc.url else "the server"
        return (
            ExitCode.UNREACHABLE,
            f"cannot reach {where}: {unreachable_reason(exc)}",
            "is the server running? `neuro server status` tells (for the local one)",
        )
    if isinstance(exc, ServerNotAvailable):
        return ExitCode.UNREACHABLE, msg, "is the server running? `neuro server status` tells"
    if isinstance(exc, InsufficientStorage):
        return ExitCode.NO_SPACE, msg, ""
    if isinstance(exc, (ServerError, BadGateway)):
        return ExitCode.PLATFORM, msg, ""
    if isinstance(exc, IllegalArgumentError):
        return ExitCode.BAD_INPUT, msg, ""
    if isinstance(exc, ConfigError):
        return ExitCode.CONFIG, msg, ""
    if isinstance(exc, (ClientError, NDJSONError)):
        return ExitCode.CONFIG, msg, ""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ExitCode.TIMEOUT, "timed out", ""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED, "interrupted", ""
    if isinstance(exc, PermissionError):
        return ExitCode.AUTH, msg, ""
    if isinstance(exc, FileNotFoundError):
        return ExitCode.NOT_FOUND, msg, ""
    if isinstance(exc, OSError):
        return ExitCode.UNREACHABLE, msg, ""
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            return ExitCode.UNREACHABLE, f"connection failed: {msg}", ""
    except ImportError:  # pragma: no cover
        pass
    return (
        ExitCode.FAILURE,
        f"unexpected error: {type(exc).__name__}: {msg}",
        "run again with --show-traceback for details",
    )
