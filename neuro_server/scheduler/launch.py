"""What a job's start needs besides the runtime: its secrets looked up, its passed config, its
GPUs' environment, its volumes and disks mounted, and the ``JobSpec`` the runtime runs.

Each failure that is the job's (a secret removed, a volume gone, a disk that cannot mount) is
a RuntimeError_ with reason ContainerCannotRun: the job fails with it, naming what."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Mapping

from ..config import ServerConfig
from ..jobusers import JobUser
from ..model import JobRecord, JobStatus
from ..runtime.base import Capabilities, Capacity, JobSpec, Mount, RuntimeError_, job_hostname
from ..store import Store

CANNOT_RUN = "ContainerCannotRun"


def passed_config(
    config: ServerConfig,
    job: JobRecord,
    api_url: str | None,
    issue_token: Callable[[str], str] | None,
) -> str:
    """protocol.md 3.3: base64 JSON with which `neuro` and the SDK in the job act as its
    owner (a token of their own, revocable like any other)."""
    if api_url is None or issue_token is None:
        raise RuntimeError_(
            "pass_config: this server does not know the URL jobs reach it at", reason=CANNOT_RUN
        )
    data = {
        "token": issue_token(job.owner),
        "cluster": config.cluster_name,
        "url": api_url,
        "org_name": job.spec.org_name,
        "project_name": job.spec.project_name,
    }
    return base64.b64encode(json.dumps(data).encode()).decode("ascii")


def secrets(
    store: Store, job: JobRecord, passed: Callable[[], str]
) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """The job's environment with its secret variables (and, with pass_config, its
    ``passed()`` config), and its secret files, looked up now (a secret removed since the job
    was created fails the start, naming only its key)."""
    c = job.spec.container
    env = dict(c.env)
    files: list[tuple[str, bytes]] = []

    def value(key: str) -> bytes:
        v = store.secret(job.owner, key)
        if v is None:
            raise RuntimeError_(
                f"the secret {key!r} was removed before the job started", reason=CANNOT_RUN
            )
        return v

    for var, ref in c.secret_env.items():
        env[var] = value(ref.key).decode("utf-8", "replace")
    if job.spec.pass_config:
        env["NEURO_PASSED_CONFIG"] = passed()
    for f in c.secret_files:
        files.append((f.path, value(f.secret.key)))
    return env, files


def device_env(
    job: JobRecord, env: Mapping[str, str], capacity: Capacity, can: Capabilities
) -> dict[str, str]:
    """Where there are GPUs and the runtime does not hand jobs theirs itself (the process
    runtime), a job sees only its own (none for a CPU job): CUDA numbers them in PCI order,
    as NVML does."""
    if capacity.nvidia_gpu and not can.assigns_gpus:
        ids = ",".join(map(str, job.devices))
        return {
            **env,
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": ids,
            "NVIDIA_VISIBLE_DEVICES": ids or "void",
        }
    return dict(env)


def storage_mounts(config: ServerConfig, job: JobRecord) -> list[Mount]:
    """The job's storage volumes: paths in the owner's tree, which the runtime opens
    beneath it with no link followed as it mounts them (a check here could not hold: the
    owner's jobs may swap a directory of the tree for a link at any moment).  Checked here
    too, for a clear message while nothing is racing."""
    from .. import storage

    root = storage.user_root(config.data_dir, job.owner)
    out = []
    for v in job.spec.container.volumes:
        path = v.path or ""
        try:
            if not storage.volume_exists(root, path):
                raise storage.StorageError(f"no such file or directory: {storage.shown(path)}")
        except storage.StorageError as e:
            raise RuntimeError_(f"volume {v.uri}: {e}", reason=CANNOT_RUN) from None
        out.append(Mount(str(root.absolute()), path, v.dst, v.read_only))
    return out


async def disk_mounts(
    config: ServerConfig, store: Store, job: JobRecord, who: JobUser | None = None
) -> list[Mount]:
    """The job's disks, mounted: each the root of its filesystem, pinned as volumes are,
    and ``who``'s (the uid the job runs as) where it is not the server's."""
    from .. import disks

    out = []
    for d in job.spec.container.disk_volumes:
        assert d.id is not None  # (set when the job was accepted)
        try:
            await disks.mount(config.data_dir, d.id, owner=who.owner if who is not None else None)
        except disks.DiskError as e:
            raise RuntimeError_(str(e), reason=CANNOT_RUN) from None
        store.touch_disk(d.id)
        root, path = disks.volume_source(config.data_dir, d.id)
        out.append(Mount(str(root.absolute()), path, d.dst, d.read_only))
    return out


async def release_disks(
    config: ServerConfig, store: Store, job_id: str, starting: Collection[str]
) -> None:
    """Unmount the disks of a job that ended, unless another active job uses them (running,
    suspended, or one of ``starting``, the jobs whose start is under way)."""
    from .. import disks

    job = store.get_job(job_id)
    if job is None or not job.spec.container.disk_volumes:
        return
    in_use = {
        d.id
        for j in store.jobs_with_status((JobStatus.RUNNING, JobStatus.SUSPENDED))
        if j.id != job_id
        for d in j.spec.container.disk_volumes
    }
    for d in job.spec.container.disk_volumes:
        if d.id is None or d.id in in_use:
            continue
        if d.id not in _disks_of(store, starting):
            await disks.unmount(config.data_dir, d.id)


def _disks_of(store: Store, job_ids: Collection[str]) -> set[str | None]:
    return {
        d.id
        for i in job_ids
        if (j := store.get_job(i)) is not None
        for d in j.spec.container.disk_volumes
    }


def job_spec(
    job: JobRecord,
    env: Mapping[str, str],
    files: list[tuple[str, bytes]],
    mounts: list[Mount],
    who: JobUser | None,
) -> JobSpec:
    """What the runtime runs: the job's request and what its start found."""
    c = job.spec.container
    res = c.resources
    return JobSpec(
        job_id=job.id,
        argv=list(c.argv),
        env=env,
        working_dir=c.working_dir,
        cpu=res.cpu,
        memory=res.memory,
        tty=c.tty,
        image=c.image,
        owner=job.owner,
        entrypoint=c.entrypoint,
        command=c.command,
        shm=res.shm,
        gpus=res.nvidia_gpu,
        gpu_ids=job.devices,
        privileged=job.spec.privileged,
        files=files,
        mounts=mounts,
        hostname=job_hostname(job.name, job.owner) if job.name else "",
        uid=who.uid if who else None,
        gid=who.gid if who else None,
        home=who.home if who else "",
        preset=job.spec.preset_name or "",
        life_span=job.life_span,
    )
