"""neuro completion: print the completion script of a shell."""

from __future__ import annotations

import click


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Print a shell completion script",
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def command(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    TAB then completes commands, options, preset names, and the ids and names of active
    jobs. Jobs and presets come from a local cache that is refreshed in the background, so
    a TAB never waits for the server.

    \b
    Examples:
      neuro completion bash > ~/.local/share/bash-completion/completions/neuro
      neuro completion zsh > ~/.zfunc/_neuro
      neuro completion fish > ~/.config/fish/completions/neuro.fish
      source <(neuro completion bash)
    """
    from ..completion.scripts import render

    click.echo(render(shell), nl=False)
