"""neuro job: the job commands under one group (run, ls, status, logs, kill, bump-life-span)."""

from __future__ import annotations

from ..main import LazyGroup
from .bump_life_span import command as bump_life_span

group = LazyGroup(
    "job",
    lazy={
        "run": "neuro_cli.commands.run:command",
        "ls": "neuro_cli.commands.ps:command",
        "status": "neuro_cli.commands.status:command",
        "logs": "neuro_cli.commands.logs:command",
        "kill": "neuro_cli.commands.kill:command",
        "attach": "neuro_cli.commands.attach:command",
        "exec": "neuro_cli.commands.exec:command",
        "port-forward": "neuro_cli.commands.port_forward:command",
        "top": "neuro_cli.commands.top:command",
        "send-signal": "neuro_cli.commands.send_signal:command",
        "generate-run-command": "neuro_cli.commands.generate_run_command:command",
        "browse": "neuro_cli.commands.browse:command",
        "tags": "neuro_cli.commands.tags:command",
    },
    short={
        "run": "Run a job",
        "ls": "List jobs",
        "status": "Show the status of a job",
        "logs": "Print the output of a job",
        "kill": "Kill jobs",
        "bump-life-span": "Extend the life span of a job",
        "attach": "Attach to a running job",
        "exec": "Run a command in a running job",
        "port-forward": "Forward local ports to a job",
        "top": "Show live CPU, memory and GPU use of jobs",
        "send-signal": "Send a signal to a job",
        "generate-run-command": "Print the run command of a job",
        "browse": "Open a job's HTTP URL in a browser",
        "tags": "List the tags of your jobs",
    },
    short_help="Manage jobs",
    help=(
        "Manage jobs: every job command under one group.\n\n"
        "Most are also top-level commands (neuro job ls is neuro ps). JOB is a job id, or "
        "the name of your most recent job with that name.\n\n"
        "\b\nExamples:\n"
        "  neuro job ls -a\n"
        "  neuro job bump-life-span train 2h\n"
        "  neuro job send-signal train USR1"
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
)
group.add_command(bump_life_span, "bump-life-span")
