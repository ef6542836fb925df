"""The ``neuro`` entry point: a lazy command tree and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

import click

from .errors import ExitCode

# command name -> "module:attribute"; modules are imported only when the command runs
COMMANDS: dict[str, str] = {
    "run": "neuro_cli.commands.run:command",
    "ps": "neuro_cli.commands.ps:command",
    "status": "neuro_cli.commands.status:command",
    "logs": "neuro_cli.commands.logs:command",
    "kill": "neuro_cli.commands.kill:command",
    "wait": "neuro_cli.commands.wait:command",
    "job": "neuro_cli.commands.job:group",
    "config": "neuro_cli.commands.config:group",
    "server": "neuro_cli.commands.server:group",
    "login": "neuro_cli.commands.login:login",
    "logout": "neuro_cli.commands.login:logout",
    "capacity": "neuro_cli.commands.capacity:command",
    "attach": "neuro_cli.commands.attach:command",
    "exec": "neuro_cli.commands.exec:command",
    "port-forward": "neuro_cli.commands.port_forward:command",
    "top": "neuro_cli.commands.top:command",
    "completion": "neuro_cli.commands.completion:command",
    "secret": "neuro_cli.commands.secret:group",
    "share": "neuro_cli.commands.share:command",
    "storage": "neuro_cli.commands.storage:group",
    "disk": "neuro_cli.commands.disk:group",
    # shortcuts of the storage commands, as the Neu.ro CLI has them
    "ls": "neuro_cli.commands.storage:ls",
    "cp": "neuro_cli.commands.storage:cp",
    "mkdir": "neuro_cli.commands.storage:mkdir",
    "rm": "neuro_cli.commands.storage:rm",
}

SHORT_HELP: dict[str, str] = {
    "run": "Run a job",
    "ps": "List jobs",
    "status": "Show the status of a job",
    "logs": "Print the output of a job",
    "kill": "Kill jobs",
    "wait": "Wait until jobs finish (or start, or succeed)",
    "job": "Manage jobs",
    "config": "Show the client configuration",
    "server": "Manage the embedded local server",
    "login": "Log in to a neuro server",
    "logout": "Log out and go back to the local server",
    "capacity": "Show how many jobs of each preset fit now",
    "attach": "Attach to a running job",
    "exec": "Run a command in a running job",
    "port-forward": "Forward local ports to a job",
    "top": "Show live CPU, memory and GPU use of jobs",
    "completion": "Print a shell completion script",
    "secret": "Manage secrets",
    "share": "Share a job with another user",
    "storage": "Manage files in your storage",
    "disk": "Manage persistent disks",
    "ls": "List a storage directory",
    "cp": "Copy files to or from storage",
    "mkdir": "Make storage directories",
    "rm": "Remove files from storage",
}


class _PipeClosed(Exception):
    """The reader of our output went away (`neuro ps | head -1`)."""


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, so --help stays fast."""

    def __init__(self, *args: Any, lazy: dict[str, str], short: dict[str, str], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lazy = lazy
        self.short = short

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.lazy) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = self.lazy.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd: click.Command = getattr(importlib.import_module(module), attr)
        self.commands[name] = cmd
        return cmd

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        # click's completion (_NEURO_COMPLETE=bash_source neuro) would import every command
        # for its short help: list them from the table instead
        from click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=self.short.get(name, ""))
            for name in self.list_commands(ctx)
            if name.startswith(incomplete)
        ]
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:
            # click turns EPIPE into exit 1; output piped into `head` is not an error
            raise _PipeClosed from e

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # short help from the table: listing commands must not import them
        rows = [(name, self.short.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    short=SHORT_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="neuro", prog_name="neuro")
@click.option("-v", "--verbose", count=True, help="More output; also shows tracebacks.")
@click.option("--show-traceback", is_flag=True, help="Show the Python traceback on errors.")
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour in the output.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, show_traceback: bool, color: str) -> None:
    """Run compute jobs from container images on resource presets.

    With no login, neuro starts a local server for you and runs jobs on this machine.

    \b
    Examples:
      neuro run --preset cpu-small ubuntu -- echo hello
      neuro ps
      neuro logs JOB
      neuro kill JOB
    """
    from .deps import Deps
    from .iostreams import IOStreams

    ctx.obj = Deps(io=IOStreams.system(color), verbose=verbose)
    ctx.meta["show_traceback"] = show_traceback or verbose > 0


def main(argv: list[str] | None = None, *, fast_exit: bool = True) -> None:
    """Run the CLI and turn every outcome into an exit code (see neuro_cli.errors).

    With ``fast_exit`` the process ends with ``os._exit`` once the output is flushed: tearing
    down the modules a command imported (aiohttp, rich...) costs ~30 ms of every run and does
    nothing useful, since every session and file was closed by then."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["__complete"]:
        # the shell scripts' entry point: answers from a local cache, no click tree, no network
        from .completion.cache import main as complete

        _exit(complete(args[1:]), fast_exit)
        return
    if not any(a in ("--help", "-h") for a in args) and args:
        from ._fast_tls import install_before

        # CA certificates load at the first TLS handshake, not when aiohttp is imported
        install_before("aiohttp")
    # -v/--verbose are global options: before the command (a command's own -v is its own)
    globals_ = args[: _command_index(args)]
    show_tb = "--show-traceback" in globals_ or any(
        a in ("-v", "--verbose") or a.startswith("-vv") for a in globals_
    )
    by_sigint = False  # Ctrl-C ended it: leave the way SIGINT does (see _exit)
    try:
        if (word := _command_word(args)) is not None and word not in COMMANDS:
            from .user_config import expand_alias  # an alias? (the user config is read only now)

            args = expand_alias(args, set(COMMANDS))
        code = cli.main(args=args, prog_name="neuro", standalone_mode=False)
    except click.exceptions.Abort as e:
        # (click turns a KeyboardInterrupt outside our event loop into Abort)
        by_sigint = isinstance(e.__context__, KeyboardInterrupt)
        sys.stderr.write("Interrupted.\n" if by_sigint else "Aborted.\n")
        code = ExitCode.INTERRUPTED
    except click.UsageError as e:
        message, hint = usage_error_lines(e)
        sys.stderr.write(f"ERROR: {message}\n")
        if hint:
            sys.stderr.write(f"  hint: {hint}\n")
        code = e.exit_code
    except click.ClickException as e:
        sys.stderr.write(f"ERROR: {_sentence(e.format_message())}\n")
        code = e.exit_code
    except click.exceptions.Exit as e:
        code = e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        code = ExitCode.INTERRUPTED
        by_sigint = True
    except (BrokenPipeError, _PipeClosed):
        # output piped into `head` etc.: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = ExitCode.OK
    except BaseException as e:
        from .errors import Interrupted, JobExit, classify

        if isinstance(e, JobExit):
            code = e.code
            by_sigint = isinstance(e, Interrupted)
        elif isinstance(e, SystemExit):
            raise
        else:
            code, message, hint = classify(e)
            if show_tb:
                import traceback

                traceback.print_exc()
            sys.stderr.write(f"ERROR: {message}\n")
            if hint:
                sys.stderr.write(f"  hint: {hint}\n")
    if by_sigint and fast_exit:
        _die_by_sigint()
    _exit(code, fast_exit)


# docker's and kubectl's habits that `neuro run`/`exec` spell differently: the hint names ours
DOCKER_HINTS: dict[str, str] = {
    "-i": "`neuro run -t` is docker's -it: a TTY with your keyboard (the default on a terminal)",
    "--interactive": "`neuro run -t` is docker's -it: a TTY with your keyboard (the default on a "
    "terminal)",
    "--rm": "there is nothing to remove: a finished job leaves only its record (`neuro ps -a`); "
    "drop --rm",
    "-p": "--port-forward LOCAL:REMOTE forwards a port while attached (or `neuro port-forward`); "
    "--http-port PORT serves HTTP at the job's URL",
    "--publish": "--port-forward LOCAL:REMOTE forwards a port while attached (or `neuro "
    "port-forward`); --http-port PORT serves HTTP at the job's URL",
    "--gpus": "GPUs, CPUs and memory come from the preset: --preset (`neuro config show` lists them)",
    "--cpus": "GPUs, CPUs and memory come from the preset: --preset (`neuro config show` lists them)",
    "-m": "GPUs, CPUs and memory come from the preset: --preset (`neuro config show` lists them)",
    "--memory": "GPUs, CPUs and memory come from the preset: --preset (`neuro config show` lists them)",
}


def _sentence(text: str) -> str:
    """click's "No such option '-x'." in our style: lower-case first letter, no period."""
    text = text.strip()
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    return text.removesuffix(".")


def usage_error_lines(e: click.UsageError) -> tuple[str, str]:
    """(message, hint) of a usage error, in the one style of every error: ``ERROR: ...``, then
    a hint (a close command name, our spelling of a docker flag, else the usage line)."""
    import difflib

    ctx = e.ctx
    hint = ""
    if isinstance(e, click.NoSuchOption):
        message = f"no such option: {e.option_name}"
        if e.option_name in DOCKER_HINTS and ctx is not None and ctx.info_name == "run":
            hint = DOCKER_HINTS[e.option_name]
        elif e.possibilities:
            hint = "did you mean " + " or ".join(sorted(e.possibilities)) + "?"
    else:
        # (click adds its own "Did you mean" once the commands are imported: ours is the hint)
        message = _sentence(re.sub(r"\. Did you mean .*", "", e.format_message()))
        found = re.fullmatch(r"no such command '(.+)'", message)
        if found and ctx is not None and isinstance(ctx.command, click.Group):
            names = ctx.command.list_commands(ctx)
            close = difflib.get_close_matches(found.group(1), names, n=3, cutoff=0.6)
            if close:
                hint = (
                    "did you mean " + " or ".join(f"`{ctx.command_path} {c}`" for c in close) + "?"
                )
            else:
                hint = f"`{ctx.command_path} --help` lists the commands"
    if not hint and ctx is not None:
        pieces = " ".join(ctx.command.collect_usage_pieces(ctx))
        hint = f"usage: {ctx.command_path} {pieces}  (`{ctx.command_path} --help` says more)"
    return message, hint


def _die_by_sigint() -> None:
    """End the process by SIGINT, as a program Ctrl-C stopped: the shell shows 130 and, unlike
    for a plain exit 130, stops the loop or script around it (bash's wait-and-see handling)."""
    import signal

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(int(ExitCode.INTERRUPTED))  # (not reached)


def _command_index(args: list[str]) -> int:
    """Where the command's name is in ``neuro [GLOBAL OPTIONS] COMMAND ...``."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] == "--color" else 1  # the one global option that takes a value
    return i


def _command_word(args: list[str]) -> str | None:
    """The command's name in ``neuro [GLOBAL OPTIONS] COMMAND ...`` (None without one)."""
    i = _command_index(args)
    return args[i] if i < len(args) else None


def _exit(code: int | None, fast_exit: bool) -> None:
    if fast_exit:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(int(code or 0))
    sys.stdout.flush()
    sys.exit(int(code or 0))
