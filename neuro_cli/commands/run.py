"""neuro run: start a job, show its progress, stream its output, exit with its exit code."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import click

from ..completion.types import PRESET
from ..deps import Deps
from ..errors import CLIError, ExitCode, Interrupted
from ..parse import (
    format_timedelta,
    parse_env,
    parse_life_span,
    parse_life_span_signal,
    parse_volume,
)
from ._attach import attach_loop, interruptible
from ._jobs_common import (
    Attempts,
    Progress,
    final_status,
    follow_attempts,
    follow_output,
    job_exit_code,
    job_ref,
    result_line,
    run_async,
    runtime_note,
    wait_started,
)
from ._options import detach_keys_option, keys_text, parsed, port_forward_option, tty_option
from .port_forward import forwarding

if TYPE_CHECKING:
    from yarl import URL

    from neuro_sdk import Client, JobDescription


@dataclasses.dataclass(frozen=True)
class Options:
    image: str
    cmd: tuple[str, ...]
    preset: str | None
    name: str | None
    tags: tuple[str, ...]
    description: str | None
    env: tuple[str, ...]
    env_files: tuple[str, ...]
    workdir: str | None
    entrypoint: str | None
    life_span: float | None
    detach: bool
    wait_start: bool
    quiet: bool
    tty: bool | None = None
    detach_keys: bytes = b"\x10\x11"
    port_forwards: tuple[tuple[int, int], ...] = ()
    privileged: bool = False
    restart: str = "never"
    wait_for_seat: bool = False
    schedule_timeout: float | None = None
    volumes: tuple[str, ...] = ()
    http_port: int | None = None
    http_auth: bool = True
    pass_config: bool = False
    extshm: bool = True
    life_span_signal: tuple[str, float] | None = None
    share: tuple[str, ...] = ()  # users the job is shared with (write), as it is created


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Run a job",
)
@click.argument("image")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "-s",
    "--preset",
    type=PRESET,
    help="Resource preset (see `neuro config show`) [default: the first].",
)
@click.option("-n", "--name", help="Job name: 3-40 lower-case letters, digits, dashes.")
@click.option("--tag", "tags", multiple=True, help="Tag the job (repeatable).")
@click.option("-d", "--description", help="A free-text description.")
@click.option(
    "-e",
    "--env",
    multiple=True,
    metavar="VAR=VAL",
    help="Environment variable (repeatable); VAR alone copies the local value; "
    "VAR=secret:KEY takes a secret.",
)
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="File of VAR=VAL lines (repeatable); -e wins over it.",
)
@click.option(
    "-v",
    "--volume",
    "volumes",
    multiple=True,
    metavar="MOUNT",
    help="Mount storage:PATH:/path[:ro], disk:NAME:/path[:ro] or secret:KEY:/path (repeatable).",
)
@click.option("-w", "--workdir", help="Working directory of the command.")
@click.option("--entrypoint", help="Override the image's entrypoint.")
@click.option(
    "--life-span",
    callback=parsed(parse_life_span),
    metavar="TIMEDELTA",
    help="Stop the job after it ran this long, e.g. 1d2h3m4s [default: no limit].",
)
@click.option(
    "--life-span-signal",
    callback=parsed(parse_life_span_signal),
    metavar="SIG[@BEFORE]",
    help="Send SIG this long before the life span ends (to checkpoint), e.g. "
    "USR1@5m [BEFORE default: 1m].",
)
@click.option(
    "--detach", is_flag=True, help="Do not stream the output: print the job id and return."
)
@click.option(
    "--wait-start/--no-wait-start",
    default=True,
    show_default=True,
    help="Wait for the job to start before returning (--no-wait-start implies --detach).",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only the job id (and the output when attached)."
)
@click.option(
    "--restart",
    type=click.Choice(["never", "on-failure", "always"]),
    default="never",
    show_default=True,
    help="Restart the job when it exits (with a growing delay).",
)
@click.option(
    "--wait-for-seat",
    is_flag=True,
    help="Over your quota of running jobs: wait in the queue instead of failing.",
)
@click.option(
    "--schedule-timeout",
    callback=parsed(parse_life_span),
    metavar="TIMEDELTA",
    help="Fail if the job has not started within this time, e.g. 10m.",
)
@click.option(
    "--http-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve the job's HTTP port at its own URL (see `neuro job browse`).",
)
@click.option(
    "--http-auth/--no-http-auth",
    default=True,
    show_default=True,
    help="Require your token (or a shared user's) for the HTTP URL.",
)
@click.option(
    "--extshm/--no-extshm",
    default=True,
    show_default=True,
    help="Give the job a large /dev/shm (containers; e.g. PyTorch data loaders).",
)
@click.option(
    "--pass-config",
    is_flag=True,
    help="Let `neuro` and the SDK inside the job act as you (e.g. start jobs).",
)
@click.option(
    "--privileged", is_flag=True, help="Run the container privileged (where the server allows it)."
)
@click.option(
    "--share",
    "share",
    multiple=True,
    metavar="USER",
    help="Share the job with USER (write: also attach, exec and kill it), as `neuro share` does.",
)
@tty_option
@detach_keys_option
@port_forward_option
@click.pass_context
def command(
    ctx: click.Context,
    image: str,
    cmd: tuple[str, ...],
    preset: str | None,
    name: str | None,
    tags: tuple[str, ...],
    description: str | None,
    env: tuple[str, ...],
    env_files: tuple[str, ...],
    volumes: tuple[str, ...],
    workdir: str | None,
    entrypoint: str | None,
    life_span: float | None,
    detach: bool,
    wait_start: bool,
    quiet: bool,
    restart: str,
    wait_for_seat: bool,
    schedule_timeout: float | None,
    http_port: int | None,
    http_auth: bool,
    extshm: bool,
    pass_config: bool,
    privileged: bool,
    tty: bool | None,
    detach_keys: bytes,
    port_forwards: tuple[tuple[int, int], ...],
    life_span_signal: tuple[str, float] | None,
    share: tuple[str, ...] = (),
) -> None:
    """Run a job: start IMAGE with CMD on a resource preset.

    Shows the job's progress while it is pending, then streams its output and exits with the
    job's exit code (125 if it failed without one). With -t (the default when stdin, stdout
    and stderr are terminals) the terminal is attached to the job: Ctrl-P Ctrl-Q detaches.
    Without a TTY, Ctrl-C asks whether to kill the job, detach or continue (Ctrl-C again:
    detach and quit); while the job waits to start, whether to kill it or leave it pending.
    With no terminal to ask on (a script), Ctrl-C detaches and exits 130. A job that
    restarts (--restart) is followed through every attempt.

    \b
    Examples:
      neuro run --preset cpu-small ubuntu -- echo hello
      neuro run -t ubuntu -- bash
      neuro run -n train --life-span 2h -e SEED=1 pytorch -- python train.py
      neuro run --life-span 4h --life-span-signal USR1@10m pytorch -- python train.py
      neuro run --detach --tag nightly ubuntu -- ./nightly.sh
    """
    if workdir is not None and not workdir.startswith("/"):
        raise click.BadParameter("must be an absolute path", param_hint="'--workdir'")
    opts = Options(
        image,
        cmd,
        preset,
        name,
        tags,
        description,
        env,
        env_files,
        workdir,
        entrypoint,
        life_span,
        detach or not wait_start,
        wait_start,
        quiet,
        tty,
        detach_keys,
        port_forwards,
        privileged,
        restart,
        wait_for_seat,
        schedule_timeout,
        volumes,
        http_port,
        http_auth,
        pass_config,
        extshm,
        life_span_signal,
        share,
    )
    run_async(ctx, lambda deps: run(opts, deps))


async def _share(client: Client, job_id: str, user: str) -> None:
    """--share USER: the job runs; a user that cannot be given it is an error that says so."""
    from neuro_sdk import ResourceNotFound

    try:
        await client.jobs.share(job_id, user, "write")
    except ResourceNotFound as e:
        raise CLIError(
            f"job {job_id} was started, but not shared with {user}: {e}",
            ExitCode.NOT_FOUND,
            hint=f"share it once the user exists: `neuro share {job_id} {user} write`",
        ) from None


def _secret_uri(client: Client, key: str) -> URL:
    """``secret:KEY`` in full, as the platform names it: secret://CLUSTER/ORG/PROJECT/KEY."""
    from yarl import URL

    if key.startswith("//"):
        return URL("secret:" + key)
    parts = [p for p in (client.org_name, client.project_name) if p]
    return URL.build(
        scheme="secret", host=client.cluster_name or "", path="/" + "/".join([*parts, key])
    )


def _user_defaults(preset: str | None, life_span: float | None) -> tuple[str | None, float | None]:
    """The user config's [job] preset and life-span where the command line gave none."""
    from ..user_config import load

    config = load()
    if preset is None:
        preset = config.job.get("preset")
    if life_span is None and "life-span" in config.job:
        try:
            life_span = parse_life_span(config.job["life-span"])
        except ValueError as e:
            where = config.files[-1] if config.files else "user config"
            raise CLIError(f"{where}: [job] life-span: {e}", ExitCode.CONFIG) from None
    return preset, life_span


_IMAGE_RE = re.compile(
    r"([\w.-]+(:\d+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[\w][\w.-]*)?(@sha256:[0-9a-f]{64})?"
)


def understood(opts: Options) -> str | None:
    """What the command line was taken to mean, when it looks like it meant something else:
    a description that looks like an image (docker's -d is --detach; ours, as the platform's,
    is --description), or an image that looks like a command (IMAGE comes first)."""
    import shutil

    desc = opts.description
    # (an image named as a local command, followed by no command or by words that are none:
    # `neuro run python train.py`; `neuro run python -- python3 x.py` is an image's command)
    image_is_command = (
        "/" not in opts.image
        and ":" not in opts.image
        and bool(shutil.which(opts.image))
        and not (opts.cmd and shutil.which(opts.cmd[0]))
    )
    desc_is_image = (
        desc is not None
        and _IMAGE_RE.fullmatch(desc) is not None
        and (image_is_command or not opts.cmd)
    )
    if not desc_is_image and not (image_is_command and desc is None):
        return None
    parts = [f"description {desc!r}"] if desc is not None else []
    parts.append(f"image {opts.image!r}")
    parts.append(f"command {shlex.join(opts.cmd)!r}" if opts.cmd else "the image's own command")
    why = (
        "-d is --description, as on the platform; docker's -d is --detach here"
        if desc_is_image
        else "IMAGE comes first: neuro run IMAGE -- CMD..."
    )
    return f"Note: understood {', '.join(parts)} ({why})"


def _command_string(cmd: tuple[str, ...]) -> str | None:
    """The wire carries one string that the server splits with shlex: quote every word so the
    job gets exactly the argv typed after ``--`` (as docker does; no shell unless asked)."""
    if not cmd:
        return None
    return " ".join(shlex.quote(c) for c in cmd)


async def run(opts: Options, deps: Deps) -> int:
    from yarl import URL

    from neuro_sdk import (
        DiskVolume,
        HTTPPort,
        JobRestartPolicy,
        LifeSpanSignal,
        RemoteImage,
        SecretFile,
        Volume,
    )

    env = parse_env(opts.env, opts.env_files, dict(os.environ))
    secret_keys = {k: v[len("secret:") :] for k, v in env.items() if v.startswith("secret:")}
    for k in secret_keys:
        del env[k]
    mounts = [parse_volume(v) for v in opts.volumes]
    secret_paths = [(what, path) for kind, what, path, _ro in mounts if kind == "secret"]
    storage_mounts = [(what, path, ro) for kind, what, path, ro in mounts if kind == "storage"]
    disk_mounts = [(what, path, ro) for kind, what, path, ro in mounts if kind == "disk"]
    io = deps.io
    tty = opts.tty
    if tty is None:
        tty = io.interactive and not opts.detach
    elif tty and not io.interactive and not opts.detach:
        raise CLIError(
            "-t needs a terminal: stdin, stdout and stderr must all be terminals",
            ExitCode.USAGE,
            hint="use -T, or --detach",
        )
    try:
        image = RemoteImage.parse(opts.image)
    except ValueError as e:
        raise CLIError(f"invalid image {opts.image!r}: {e}", ExitCode.USAGE) from None
    if not opts.quiet and (note := understood(opts)):
        io.err(note)
    preset, life_span = opts.preset, opts.life_span
    if preset is None or life_span is None:
        preset, life_span = _user_defaults(preset, life_span)
    if opts.life_span_signal is not None and life_span is None:
        raise CLIError("--life-span-signal needs a life span: add --life-span", ExitCode.USAGE)
    if opts.life_span_signal is not None and opts.life_span_signal[1] >= (life_span or 0):
        raise CLIError(
            f"--life-span-signal comes {format_timedelta(opts.life_span_signal[1])} "
            f"before the end of a {format_timedelta(life_span or 0)} life span: it "
            "must come within it",
            ExitCode.USAGE,
        )
    async with deps.client() as client:
        if preset is None:
            cfg = await client.get_server_config()
            cluster = cfg.clusters.get(client.cluster_name or "")
            preset = next(iter(cluster.presets)) if cluster and cluster.presets else "cpu-small"
        job = await client.jobs.start(
            image=image,
            preset_name=preset,
            entrypoint=opts.entrypoint,
            command=_command_string(opts.cmd),
            working_dir=opts.workdir,
            env=env,
            name=opts.name,
            tags=opts.tags,
            description=opts.description,
            life_span=life_span,
            tty=tty,
            privileged=opts.privileged,
            pass_config=opts.pass_config,
            shm=opts.extshm,
            http=HTTPPort(opts.http_port, opts.http_auth) if opts.http_port else None,
            restart_policy=JobRestartPolicy(opts.restart),
            wait_for_jobs_quota=opts.wait_for_seat,
            secret_env={k: _secret_uri(client, key) for k, key in secret_keys.items()} or None,
            secret_files=[SecretFile(_secret_uri(client, key), path) for key, path in secret_paths],
            volumes=[Volume(URL("storage:" + what), path, ro) for what, path, ro in storage_mounts],
            disk_volumes=[
                DiskVolume(URL("disk:" + what), path, ro) for what, path, ro in disk_mounts
            ],
            schedule_timeout=opts.schedule_timeout,
            life_span_signal=LifeSpanSignal(*opts.life_span_signal)
            if opts.life_span_signal
            else None,
        )
        ref = job_ref(job, client.username)
        for user in opts.share:
            await _share(client, job.id, user)
        if opts.quiet:
            if opts.detach:
                io.out(job.id)
        else:
            io.err(f"Job ID: {job.id}")
            if job.name:
                io.err(f"Name: {job.name}")
            note = runtime_note(job)
            if note:
                io.err(note)
        if opts.detach and not opts.wait_start:
            if not opts.quiet:
                io.out(job.id)
            return 0
        started: list[JobDescription] = []

        async def wait() -> None:
            started.append(
                await wait_started(
                    client, job, deps, quiet=opts.quiet, stop_when_queued=opts.detach
                )
            )

        # Ctrl-C while it waits to start: kill it, or leave it pending (and say how to kill it)
        choice = await interruptible(deps, job.id, wait, ref=ref, pending=True)
        if choice in ("kill", "interrupt"):
            raise Interrupted
        if choice == "detach":
            return 0
        job = started[-1]
    if opts.detach:
        if job.status.is_finished and job.status.value != "succeeded":
            io.err(result_line(job))
            return job_exit_code(job)
        if not opts.quiet:
            io.out(job.id)
            io.err(f"Follow its output: neuro logs {ref}")
        return 0
    if job.status.is_finished and tty:
        tty = False  # nothing to attach to: print what it wrote
    async with forwarding(deps, job.id, opts.port_forwards):
        if tty:
            if not opts.quiet:
                io.err(
                    f"Attached to the job's terminal. Press {keys_text(opts.detach_keys)} "
                    "to detach; if you see no prompt, press Enter."
                )
            return await attach_loop(
                deps,
                job.id,
                tty=True,
                stdin=True,
                detach_keys=opts.detach_keys,
                from_start=True,
                ref=ref,
                restarts=job.history.restarts,
            )
        progress = Progress()
        attempts = Attempts(restarts=job.history.restarts)

        def follow() -> Awaitable[None]:
            if opts.restart == "never":  # (no attempts to announce: no status watcher)
                return follow_output(deps, job.id, progress=progress)
            return follow_attempts(deps, job.id, progress=progress, attempts=attempts)

        choice = await interruptible(deps, job.id, follow, ref=ref)
    if choice == "detach":
        return 0
    if choice in ("kill", "interrupt"):
        # (killed from the dialog, or a script's Ctrl-C that left it running: either way
        # Ctrl-C ended the run, so the script or loop around it stops too)
        raise Interrupted
    job = await final_status(deps, job.id)
    if not opts.quiet and (job.status.value != "succeeded" or deps.verbose):
        io.err(result_line(job))
    return attempts.exit_code(job)
