"""Job formatters: pure functions from SDK objects to rows or rich renderables (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .columns import STATUS_STYLE
from .common import duration, iso, size, when

if TYPE_CHECKING:
    from neuro_sdk import JobDescription


def status_rows(job: JobDescription, now: datetime, tty: bool) -> list[tuple[str, str]]:
    """The rows of `neuro status`, in order; optional rows only when set."""
    h = job.history
    c = job.container
    rows: list[tuple[str, str]] = [("Job", job.id)]
    if job.name:
        rows.append(("Name", job.name))
    if job.tags:
        rows.append(("Tags", ", ".join(job.tags)))
    rows.append(("Owner", job.owner))
    if job.project_name:
        rows.append(("Project", job.project_name))
    rows.append(("Cluster", job.cluster_name))
    if job.org_name:
        rows.append(("Organization", job.org_name))
    if job.description:
        rows.append(("Description", job.description))
    status = job.status.value + (f" ({h.reason})" if h.reason else "")
    rows.append(("Status", status))
    rows.append(("Image", str(c.image)))
    rt = getattr(job, "runtime", None)
    if rt is not None:
        rows.append(("Runtime", rt.name + (f" ({rt.note})" if rt.note else "")))
        if rt.limits:
            rows.append(("Limits", rt.limits))
    if c.entrypoint:
        rows.append(("Entrypoint", c.entrypoint))
    if c.command:
        rows.append(("Command", c.command))
    if c.working_dir:
        rows.append(("Working dir", c.working_dir))
    if job.preset_name:
        rows.append(("Preset", job.preset_name))
    r = c.resources
    res = f"cpu {r.cpu:g}, memory {size(r.memory_mb * 1024 * 1024)}"
    gpu = getattr(r, "nvidia_gpu", None) or getattr(r, "gpu", None)
    if gpu:
        model = getattr(r, "nvidia_gpu_model", None) or getattr(r, "gpu_model", None)
        res += f", {gpu} x {model or 'GPU'}"
    if r.shm:
        res += ", extended /dev/shm"
    rows.append(("Resources", res))
    if job.scheduler_enabled:
        rows.append(("Round robin", "yes: may be suspended to let other jobs run"))
    if (
        job.restart_policy
        and str(getattr(job.restart_policy, "value", job.restart_policy)) != "never"
    ):
        rows.append(
            ("Restart policy", str(getattr(job.restart_policy, "value", job.restart_policy)))
        )
    if h.restarts:
        rows.append(("Restarts", str(h.restarts)))
    rows.append(("Life span", duration(job.life_span) if job.life_span else "no limit"))
    warn = getattr(job, "life_span_signal", None)
    if warn is not None:
        rows.append(
            (
                "Life span signal",
                f"{warn.signal} {duration(warn.seconds_before)} before "
                "its end" + (" (sent)" if warn.sent else ""),
            )
        )
    if c.tty:
        rows.append(("TTY", "yes"))
    if job.internal_hostname:
        rows.append(("Internal hostname", job.internal_hostname))
    if job.internal_hostname_named:
        rows.append(("Internal hostname named", job.internal_hostname_named))
    if c.http is not None:
        url = str(job.http_url) if str(job.http_url or "") else ""
        if url:
            rows.append(("Http URL", url))
        rows.append(("Http port", str(c.http.port)))
        rows.append(("Http authentication", "yes" if c.http.requires_auth else "no"))
    if c.env:
        rows.append(("Environment", "\n".join(f"{k}={v}" for k, v in sorted(c.env.items()))))
    secret_env = getattr(c, "secret_env", None)
    if secret_env:
        rows.append(
            ("Secret environment", "\n".join(f"{k}={v}" for k, v in sorted(secret_env.items())))
        )
    disk_volumes = getattr(c, "disk_volumes", None)
    if disk_volumes:
        rows.append(
            (
                "Disk volumes",
                "\n".join(
                    f"{v.container_path} <- {v.disk_uri}" + (" (read-only)" if v.read_only else "")
                    for v in disk_volumes
                ),
            )
        )
    if c.volumes:
        rows.append(
            (
                "Volumes",
                "\n".join(
                    f"{v.container_path} <- {v.storage_uri}"
                    + (" (read-only)" if v.read_only else "")
                    for v in c.volumes
                ),
            )
        )
    secret_files = getattr(c, "secret_files", None)
    if secret_files:
        rows.append(
            (
                "Secret files",
                "\n".join(f"{f.container_path} <- {f.secret_uri}" for f in secret_files),
            )
        )
    rows.append(("Created", when(h.created_at, now, tty) if tty else iso(h.created_at)))
    if h.started_at and not (
        job.status.is_finished and h.started_at == h.finished_at and h.exit_code is None
    ):
        rows.append(("Started", when(h.started_at, now, tty)))
    if job.life_span and h.started_at and not job.status.is_finished:
        from datetime import timedelta

        ends = h.started_at + timedelta(seconds=job.life_span)
        rows.append(("Life span ends (approx)", when(ends, now, tty)))
    if h.finished_at:
        rows.append(("Finished", when(h.finished_at, now, tty)))
    if h.exit_code is not None:
        rows.append(("Exit code", str(h.exit_code)))
    restarting = job.status.value == "running" and h.reason == "Restarting"  # (its backoff)
    if h.description and (
        job.status.value in ("failed", "cancelled") or job.status.is_pending or restarting
    ):
        rows.append(("Reason", h.description))
    return rows


def transitions_rows(job: JobDescription, now: datetime, tty: bool) -> list[tuple[str, str, str]]:
    out = []
    for t in job.history.transitions:
        status = t.status.value + (f" ({t.reason})" if t.reason else "")
        out.append((status, when(t.transition_time, now, tty), t.description or ""))
    return out


def status_plain(job: JobDescription, now: datetime) -> Iterable[str]:
    for key, value in status_rows(job, now, False):
        lines = value.split("\n")
        yield f"{key}: {lines[0]}"
        for extra in lines[1:]:
            yield f"  {extra}"
    trans = transitions_rows(job, now, False)
    if trans:
        yield "Status transitions:"
        for status, t, desc in trans:
            yield f"  {t}\t{status}" + (f"\t{desc}" if desc else "")


def status_renderable(job: JobDescription, now: datetime) -> Any:
    from rich import box
    from rich.console import Group
    from rich.table import Table

    grid = Table(box=None, show_header=False, show_edge=False)
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in status_rows(job, now, True):
        if key == "Status":
            st = job.status.value
            value = f"[{STATUS_STYLE.get(st, '')}]{value}[/]"
        grid.add_row(key, value)
    trans = transitions_rows(job, now, True)
    if not trans:
        return grid
    t = Table(box=box.SIMPLE, show_edge=False, title="Status transitions", title_justify="left")
    t.add_column("Status")
    t.add_column("Time")
    t.add_column("Description")
    for row in trans:
        t.add_row(*row)
    return Group(grid, t)


def run_command(job: JobDescription) -> str:
    """The `neuro run` line that recreates ``job`` (pure; words quoted for a POSIX shell)."""
    import shlex

    from .common import duration as _duration

    c = job.container
    words = ["neuro", "run"]
    if job.preset_name:
        words += ["--preset", job.preset_name]
    if job.name:
        words += ["-n", job.name]
    for tag in job.tags:
        words += ["--tag", tag]
    if job.description:
        words += ["-d", job.description]
    for k, v in sorted(c.env.items()):
        words += ["-e", f"{k}={v}"]
    for k, uri in sorted((getattr(c, "secret_env", None) or {}).items()):
        words += ["-e", f"{k}={uri}"]
    for f in getattr(c, "secret_files", None) or ():
        words += ["-v", f"{f.secret_uri}:{f.container_path}"]
    for vol in c.volumes:
        words += [
            "-v",
            f"{vol.storage_uri}:{vol.container_path}" + (":ro" if vol.read_only else ""),
        ]
    for d in getattr(c, "disk_volumes", None) or ():
        words += ["-v", f"{d.disk_uri}:{d.container_path}" + (":ro" if d.read_only else "")]
    if c.working_dir:
        words += ["-w", c.working_dir]
    if c.entrypoint:
        words += ["--entrypoint", c.entrypoint]
    if job.life_span:
        words += ["--life-span", _duration(job.life_span)]
    warn = getattr(job, "life_span_signal", None)
    if warn is not None:
        words += [
            "--life-span-signal",
            f"{warn.signal.removeprefix('SIG')}@{_duration(warn.seconds_before)}",
        ]
    policy = str(getattr(job.restart_policy, "value", job.restart_policy))
    if policy != "never":
        words += ["--restart", policy]
    if job.schedule_timeout:
        words += ["--schedule-timeout", _duration(job.schedule_timeout)]
    if c.http is not None:
        words += ["--http-port", str(c.http.port)]
        if not c.http.requires_auth:
            words.append("--no-http-auth")
    if job.pass_config:
        words.append("--pass-config")
    if job.privileged:
        words.append("--privileged")
    if c.tty:
        words.append("-t")
    words.append(str(c.image))
    line = " ".join(shlex.quote(w) for w in words)
    if c.command:
        # the command is kept as the server has it: one string, already shell-quoted words
        line += " -- " + c.command
    return line
