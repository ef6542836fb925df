"""Parameter types whose values complete from the local cache: JOB arguments and presets.

The shell scripts know these parameters by their type (see ``spec``); click's own completion
(``_NEURO_COMPLETE=bash_source neuro``) calls ``shell_complete``.  Imports only click."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class CachedType(click.types.StringParamType):
    """A plain string whose completions come from the completion cache."""

    kind = ""

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        from .cache import values

        return [CompletionItem(v, help=h) for v, h in values(self.kind) if v.startswith(incomplete)]


class JobType(CachedType):
    """A job id or name; completes to the ids and names of active jobs."""

    name = "job"
    kind = "jobs"


class PresetType(CachedType):
    """A preset name; completes to the presets of the current cluster."""

    name = "preset"
    kind = "presets"


JOB = JobType()
PRESET = PresetType()
