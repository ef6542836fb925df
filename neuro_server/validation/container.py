"""A job's container: image, command, environment, HTTP port, volumes, disks and secrets."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import Any

from ..config import ServerConfig
from ..model import (
    Container,
    DiskVolume,
    HttpPort,
    JobRequest,
    Resources,
    SecretFile,
    SecretRef,
    StorageVolume,
)
from .fields import (
    ENV_NAME_RE,
    ValidationError,
    boolean,
    container_path,
    env,
    integer,
    split_command,
    string,
)

SECRET_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,252}")


def secret_key(uri: Any, cluster: str, where: str) -> str:
    """The key of a secret URI: ``secret:KEY`` or ``secret://CLUSTER/[[ORG/]PROJECT/]KEY``
    (PROJECT may be the owner's user name, as on the platform; whose it is, is for
    ``check_secret_owners`` to say)."""
    if not isinstance(uri, str) or not uri.startswith("secret:"):
        raise ValidationError(f"{where}: not a secret URI (secret:KEY): {uri!r}")
    rest = uri[len("secret:") :]
    if rest.startswith("//"):
        parts = rest[2:].split("/")
        if len(parts) < 2 or parts[0] != cluster:
            raise ValidationError(f"{where}: {uri!r} is not a secret of cluster {cluster!r}")
        if len(parts) > 4 or not all(parts[1:-1]):
            raise ValidationError(
                f"{where}: {uri!r} is not a secret URI (secret://{cluster}/[ORG/]PROJECT/KEY)"
            )
        key = parts[-1]
    else:
        key = rest
    if not SECRET_KEY_RE.fullmatch(key):
        raise ValidationError(f"{where}: invalid secret key {key!r}")
    return key


def check_secret_owners(
    spec: JobRequest, user: str, config: ServerConfig, is_user: Callable[[str], bool]
) -> None:
    """Refuse a job's secret URI that names someone else: a user's secrets are their own, so
    ``secret://CLUSTER/[ORG/]OWNER/KEY`` must name the caller, this server's project (every
    user's secrets live in it, each user seeing only theirs) or the job's own project, and
    not another user; else the job would silently get the caller's KEY instead of OWNER's."""
    job_project = spec.project_name or config.project_name
    orgs = {config.org_name, spec.org_name or config.org_name, "NO_ORG"}

    def mine(owner: str) -> bool:
        if owner in (user, config.project_name):
            return True
        return owner == job_project and not is_user(owner)  # (bob's job "in project alice")

    c = spec.container
    for uri in [*(s.uri for s in c.secret_env.values()), *(f.secret.uri for f in c.secret_files)]:
        # secret://CLUSTER/[ORG/]OWNER/KEY -> [ORG, OWNER]; secret:KEY, secret://CLUSTER/KEY -> []
        parts = uri.split("/")[3:-1] if uri.startswith("secret://") else []
        if not parts:
            continue
        if not mine(parts[-1]):
            whose = parts[-1]
        elif len(parts) == 2 and parts[0] not in orgs:
            whose = f"org {parts[0]}"
        else:
            continue
        raise ValidationError(
            f"{uri} belongs to {whose}: you can use only your own secrets "
            f"(secret:KEY, or secret://{config.cluster_name}/{user}/KEY)"
        )


def container(
    body: dict[str, Any],
    resources: Resources,
    prefix: str = "",
    *,
    needs_command: bool = True,
    cluster: str = "",
) -> Container:
    image = string(body, "image", required=True, max_len=1024, prefix=prefix)
    assert image is not None
    if not image.strip() or any(c.isspace() or c == "\0" for c in image):
        raise ValidationError(f"invalid image name: {image!r}")
    entrypoint = string(body, "entrypoint", prefix=prefix)
    command = string(body, "command", prefix=prefix)
    argv = split_command(entrypoint, "entrypoint") + split_command(command, "command")
    if any("\0" in arg for arg in argv):
        raise ValidationError("the command has a NUL character: no program can be given one")
    if not argv and needs_command:
        raise ValidationError(
            "no command to run: this server's process runtime does not use the image, "
            "so give a command (neuro run IMAGE -- CMD...)"
        )
    working_dir = string(body, "working_dir", max_len=4096, prefix=prefix)
    if working_dir is not None and (not working_dir.startswith("/") or "\0" in working_dir):
        raise ValidationError(f"'working_dir' must be an absolute path, got {working_dir!r}")
    http = _http(body)
    disk_volumes = _disk_volumes(body, prefix, cluster)
    storage_volumes = _storage_volumes(body, prefix)
    secret_env, secret_files = _secrets(body, prefix, cluster)
    dsts = [
        posixpath.normpath(p)
        for p in (
            [v.dst for v in storage_volumes]
            + [f.path for f in secret_files]
            + [d.dst for d in disk_volumes]
        )
    ]
    if len(set(dsts)) != len(dsts):
        raise ValidationError("two volumes at the same path in the job")
    return Container(
        image=image,
        resources=resources,
        argv=tuple(argv),
        entrypoint=entrypoint,
        command=command,
        working_dir=working_dir,
        env=env(body, prefix),
        secret_env=secret_env,
        tty=boolean(body, "tty", prefix),
        http=http,
        volumes=storage_volumes,  # their paths in the owner's tree are found on creation
        disk_volumes=disk_volumes,  # ... and their disks' ids
        secret_files=secret_files,
    )


def _http(body: dict[str, Any]) -> HttpPort | None:
    http = body.get("http")
    if http is None:
        return None
    if not isinstance(http, dict):
        raise ValidationError("'http' must be an object")
    port = integer(http, "port", prefix="http.")
    if port is None or not 1 <= port <= 65535:
        raise ValidationError("'http.port' must be an integer between 1 and 65535")
    return HttpPort(
        port,
        boolean(http, "requires_auth", "http."),
        string(http, "health_check_path", prefix="http.") or "/",
    )


def _read_only(v: dict[str, Any], where: str) -> bool:
    ro = v.get("read_only", False)
    if not isinstance(ro, bool):
        raise ValidationError(f"{where}.read_only must be a boolean")
    return ro


def _disk_volumes(body: dict[str, Any], prefix: str, cluster: str) -> tuple[DiskVolume, ...]:
    raw = body.get("disk_volumes") or []
    if not isinstance(raw, list):
        raise ValidationError(f"'{prefix}disk_volumes' must be a list")
    out: list[DiskVolume] = []
    for i, v in enumerate(raw):
        if not isinstance(v, dict):
            raise ValidationError(f"'{prefix}disk_volumes[{i}]' must be an object")
        uri = v.get("src_disk_uri")
        if not isinstance(uri, str) or not uri.startswith("disk:"):
            raise ValidationError(f"disk_volumes[{i}]: not a disk URI (disk:NAME): {uri!r}")
        rest = uri[len("disk:") :]
        if rest.startswith("//"):
            parts = rest[2:].split("/")
            if parts[0] != cluster:
                raise ValidationError(f"disk_volumes[{i}]: {uri!r} is not on cluster {cluster!r}")
            rest = parts[-1]
        if not rest:
            raise ValidationError(f"disk_volumes[{i}]: {uri!r} names no disk")
        dst = container_path(v.get("dst_path"), f"disk_volumes[{i}].dst_path")
        out.append(
            DiskVolume(ref=rest, uri=uri, dst=dst, read_only=_read_only(v, f"disk_volumes[{i}]"))
        )
    return tuple(out)


def _storage_volumes(body: dict[str, Any], prefix: str) -> tuple[StorageVolume, ...]:
    raw = body.get("volumes") or []
    if not isinstance(raw, list):
        raise ValidationError(f"'{prefix}volumes' must be a list")
    out: list[StorageVolume] = []
    for i, v in enumerate(raw):
        if not isinstance(v, dict):
            raise ValidationError(f"'{prefix}volumes[{i}]' must be an object")
        uri = v.get("src_storage_uri")
        if not isinstance(uri, str) or not uri.startswith("storage:"):
            raise ValidationError(f"volumes[{i}]: not a storage URI (storage:PATH): {uri!r}")
        dst = container_path(v.get("dst_path"), f"volumes[{i}].dst_path")
        out.append(StorageVolume(uri=uri, dst=dst, read_only=_read_only(v, f"volumes[{i}]")))
    return tuple(out)


def _secrets(
    body: dict[str, Any], prefix: str, cluster: str
) -> tuple[dict[str, SecretRef], tuple[SecretFile, ...]]:
    secret_env_uris = body.get("secret_env") or {}
    if not isinstance(secret_env_uris, dict):
        raise ValidationError(f"'{prefix}secret_env' must be an object")
    secret_env: dict[str, SecretRef] = {}
    for var, uri in secret_env_uris.items():
        if not ENV_NAME_RE.fullmatch(var):
            raise ValidationError(f"invalid environment variable name: {var!r}")
        secret_env[var] = SecretRef(secret_key(uri, cluster, f"secret_env {var}"), str(uri))
    volumes = body.get("secret_volumes") or []
    if not isinstance(volumes, list):
        raise ValidationError(f"'{prefix}secret_volumes' must be a list")
    files: list[SecretFile] = []
    for i, v in enumerate(volumes):
        if not isinstance(v, dict):
            raise ValidationError(f"'{prefix}secret_volumes[{i}]' must be an object")
        key = secret_key(v.get("src_secret_uri"), cluster, f"secret_volumes[{i}]")
        path = container_path(v.get("dst_path"), f"secret_volumes[{i}].dst_path")
        files.append(SecretFile(path, SecretRef(key, str(v["src_secret_uri"]))))
    if len({f.path for f in files}) != len(files):
        raise ValidationError("two secret files at the same path")
    return secret_env, tuple(files)
