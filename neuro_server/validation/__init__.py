"""Validation of job requests at the edge: every client mistake becomes a clear 400.

Both request bodies become a ``NewJob`` (model.py) whose ``spec``, a ``JobRequest``, is what
the store keeps and the scheduler runs.

    fields.py     typed fields of a JSON object, names, limits
    container.py  image, command, environment, HTTP port, volumes, disks, secrets
    job.py        the job as a whole: parse_start, parse_run, life span and its signal
"""

from __future__ import annotations

from .container import SECRET_KEY_RE, check_secret_owners, secret_key
from .fields import (
    ENV_NAME_RE,
    MAX_LIFE_SPAN,
    NAME_RE,
    ValidationError,
    finite,
    split_command,
)
from .job import check_job_name, parse_run, parse_start

__all__ = [
    "ENV_NAME_RE",
    "MAX_LIFE_SPAN",
    "NAME_RE",
    "SECRET_KEY_RE",
    "ValidationError",
    "check_job_name",
    "check_secret_owners",
    "finite",
    "parse_run",
    "parse_start",
    "secret_key",
    "split_command",
]
