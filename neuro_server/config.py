"""Server configuration: where data lives, what it listens on, presets and machine resources.

Read from a TOML file (``<data_dir>/server.toml`` by default); every key is optional::

    [server]
    host = "127.0.0.1"
    port = 8080
    cluster_name = "local"
    kill_grace_seconds = 10
    runtime = "auto"     # auto: Docker/Podman when an engine answers, else local processes
    docker_host = "unix:///run/podman/podman.sock"   # optional
    slurm_conf = "/etc/slurm/slurm.conf"  # slurm runtime (optional: else $SLURM_CONF)
    allow_privileged = false
    max_running_jobs = 0 # per user; 0: no limit (over it: refused, or queued on request)
    http_port = 0        # jobs' HTTP ingress: http://JOB_ID.<http_domain>:<http_port>/
    http_domain = "jobs.localhost"
    tls_cert = "/etc/neuro/jobs.pem"  # optional, with tls_key: the ingress serves HTTPS
    tls_key = "/etc/neuro/jobs.key"   # (a certificate for *.<http_domain>)
    storage_quota = "10GiB"  # per user, of their storage tree; 0 (the default): no limit
    pids_limit = 4096    # processes and threads per job (a fork loop stops there); 0: none
    job_output_limit = "10GiB"  # output kept per job (the job goes on); 0 (the default): all
    port_connect = "auto" # docker: a container's address, else a relay exec'd in it (rootless)
    network = "per-user"  # docker: a network per user (their jobs reach each other, by name
                          # NAME--OWNER where it has DNS; others' cannot); "shared": one for
                          # all; "default": the engine's; or a network's name
    job_uids = "1000000-1999999"  # process runtime, a root server: each user's jobs run as a
                          # uid (and gid) of their own from this range ("off": as root)
    homes_dir = "/var/lib/neuro/homes"  # process runtime: those users' homes (HOME, and the
                          # default working dirs); it and its parents open to others (o+x)
    allow_shared_uid = false  # process runtime that cannot keep users apart (not root, or
                          # job_uids off): true runs every user's jobs as the server's user

    [resources]          # what jobs may use on this machine (default: all of it)
    cpu = 2
    memory = "20GiB"
    nvidia_gpu = 0

    [[presets]]          # replaces the default presets when given
    name = "cpu-small"
    cpu = 0.5
    memory = "1GiB"
    partition = "debug"  # slurm runtime (optional: else Slurm's default partition)
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


class ConfigError(Exception):
    pass


def parse_size(value: float | str) -> int:
    """``"1GiB"`` -> 1073741824; ints are bytes."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid size: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    m = _SIZE_RE.match(value)
    if not m:
        raise ConfigError(f"invalid size: {value!r} (use e.g. 512MiB, 4GiB)")
    unit = (m.group(2) or "").lower().rstrip("b")
    return int(float(m.group(1)) * _UNITS[unit])


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    cpu: float
    memory: int  # bytes
    credits_per_hour: str = "0"
    nvidia_gpu: int = 0
    nvidia_gpu_model: str | None = None
    scheduler_enabled: bool = False
    preemptible_node: bool = False
    partition: str = ""  # slurm runtime: the partition its jobs go to ("": Slurm's default)


DEFAULT_PRESETS = (
    Preset("cpu-small", cpu=0.5, memory=1 << 30),
    Preset("cpu-medium", cpu=1.0, memory=4 << 30),
    Preset("cpu-large", cpu=2.0, memory=8 << 30),
    Preset("gpu-small", cpu=1.0, memory=8 << 30, nvidia_gpu=1, nvidia_gpu_model="nvidia-gpu"),
)


def _machine_memory() -> int:
    try:
        psutil: Any = importlib.import_module("psutil")  # (no type stubs)
        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001  # pragma: no cover - psutil is a dependency
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _machine_gpus() -> int:
    """NVIDIA GPUs visible through NVML; 0 when there is no driver or library."""
    try:
        pynvml: Any = importlib.import_module("pynvml")  # (optional; no type stubs)
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - any NVML failure: no GPUs to count
        return 0


DEFAULT_JOB_UIDS = (1_000_000, 1_999_999)
MAX_UID = 0xFFFFFFFE  # (uid_t - 1: -1 means "no change" to the kernel)


def parse_uid_range(value: object) -> tuple[int, int] | None:
    """``"1000000-1999999"`` -> (1000000, 1999999); ``"off"`` (or false, "") -> None.  Never
    uid 0, and the first uid at most the last."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("", "off")):
        return None
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value) if isinstance(value, str) else None
    if m is None:
        raise ConfigError(
            f'invalid job_uids {value!r}: FIRST-LAST, e.g. "1000000-1999999", or "off"'
        )
    first, last = int(m.group(1)), int(m.group(2))
    if not 0 < first <= last <= MAX_UID:
        raise ConfigError(f"invalid job_uids {value!r}: 1 <= FIRST <= LAST <= {MAX_UID}")
    return first, last


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    cluster_name: str = "local"
    org_name: str = "local"
    project_name: str = "default"
    presets: tuple[Preset, ...] = DEFAULT_PRESETS
    cpu: float = float(os.cpu_count() or 1)
    memory: int = dataclasses.field(default_factory=_machine_memory)
    nvidia_gpu: int = dataclasses.field(default_factory=_machine_gpus)
    kill_grace_seconds: float = 10.0
    allow_privileged: bool = False
    max_running_jobs: int = 0  # per user, 0: no limit
    round_robin_seconds: float = 60.0  # preemptible jobs' turn before another may take it
    http_port: int = 0  # the jobs' HTTP ingress (0: any free port; the embedded server reuses it)
    http_domain: str = "jobs.localhost"  # job hosts: JOB_ID.<domain>, NAME--OWNER.<domain>
    tls_cert: Path | None = None  # with tls_key: the ingress serves HTTPS (job URLs https://)
    tls_key: Path | None = None
    max_body_bytes: int = 1 << 20
    storage_quota: int = 0  # bytes per user's storage tree, 0: no limit (over it: 507)
    pids_limit: int = 4096  # per job: cgroup pids.max (process), PidsLimit (docker); 0: none
    job_output_limit: int = 0  # bytes of output kept per job (process runtime), 0: no limit
    runtime: str = "auto"  # auto | process | docker
    docker_host: str | None = None
    slurm_conf: Path | None = None  # slurm runtime: its SLURM_CONF (None: the environment's)
    port_connect: str = "auto"  # docker runtime: auto | address | exec (a relay in the container)
    network: str = "per-user"  # docker runtime: per-user | shared | default | NAME
    # process runtime on a root server: the uids (and gids) users' jobs run as, (first, last);
    # None: off (every job runs as the server's user)
    job_uids: tuple[int, int] | None = DEFAULT_JOB_UIDS
    homes_dir: Path = Path("/var/lib/neuro/homes")  # those users' homes
    allow_shared_uid: bool = False  # where users cannot be kept apart: run them all anyway
    embedded: bool = False

    @property
    def db_path(self) -> Path:
        return self.data_dir / "neuro.db"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    def preset(self, name: str) -> Preset | None:
        for p in self.presets:
            if p.name == name:
                return p
        return None


def _preset_from_toml(d: dict[str, Any]) -> Preset:
    try:
        name = d["name"]
        cpu = float(d["cpu"])
        memory = parse_size(d["memory"])
    except KeyError as e:
        raise ConfigError(f"preset {d.get('name', '?')!r}: missing key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"preset {d.get('name', '?')!r}: {e}") from None
    if cpu <= 0 or memory <= 0:
        raise ConfigError(f"preset {name!r}: cpu and memory must be positive")
    return Preset(
        name=str(name),
        cpu=cpu,
        memory=memory,
        credits_per_hour=str(d.get("credits_per_hour", "0")),
        nvidia_gpu=int(d.get("nvidia_gpu", 0)),
        nvidia_gpu_model=d.get("nvidia_gpu_model"),
        scheduler_enabled=bool(d.get("scheduler_enabled", False)),
        preemptible_node=bool(d.get("preemptible_node", False)),
        partition=str(d.get("partition", "")),
    )


def load_config(data_dir: Path, config_file: Path | None = None, **overrides: Any) -> ServerConfig:
    """Build the config from defaults, the TOML file (if any) and explicit overrides."""
    path = config_file or data_dir / "server.toml"
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None
    elif config_file is not None:
        raise ConfigError(f"config file not found: {path}")
    kw: dict[str, Any] = {"data_dir": data_dir}
    server = raw.get("server", {})
    for key in (
        "host",
        "cluster_name",
        "org_name",
        "project_name",
        "runtime",
        "docker_host",
        "http_domain",
        "port_connect",
        "network",
    ):
        if key in server:
            kw[key] = str(server[key])
    for key in ("port", "max_running_jobs", "http_port"):
        if key in server:
            kw[key] = int(server[key])
    for key in ("kill_grace_seconds", "round_robin_seconds"):
        if key in server:
            kw[key] = float(server[key])
    if "storage_quota" in server:
        kw["storage_quota"] = parse_size(server["storage_quota"])
    if "job_output_limit" in server:
        kw["job_output_limit"] = parse_size(server["job_output_limit"])
    if "pids_limit" in server:
        kw["pids_limit"] = int(server["pids_limit"])
    if "allow_privileged" in server:
        kw["allow_privileged"] = bool(server["allow_privileged"])
    if "job_uids" in server:
        kw["job_uids"] = parse_uid_range(server["job_uids"])
    if "homes_dir" in server:
        kw["homes_dir"] = Path(str(server["homes_dir"]))
    for key in ("tls_cert", "tls_key"):
        if key in server:
            kw[key] = Path(str(server[key])).expanduser()
    if ("tls_cert" in kw) != ("tls_key" in kw):
        raise ConfigError("[server] tls_cert and tls_key go together (the ingress's HTTPS)")
    if "slurm_conf" in server:
        kw["slurm_conf"] = Path(str(server["slurm_conf"]))
    if "allow_shared_uid" in server:
        kw["allow_shared_uid"] = bool(server["allow_shared_uid"])
    res = raw.get("resources", {})
    if "cpu" in res:
        kw["cpu"] = float(res["cpu"])
    if "memory" in res:
        kw["memory"] = parse_size(res["memory"])
    if "nvidia_gpu" in res:
        kw["nvidia_gpu"] = int(res["nvidia_gpu"])
    if "presets" in raw:
        presets = tuple(_preset_from_toml(p) for p in raw["presets"])
        if not presets:
            raise ConfigError("at least one preset is required")
        names = [p.name for p in presets]
        if len(set(names)) != len(names):
            raise ConfigError("preset names must be unique")
        kw["presets"] = presets
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(kw.get("job_uids"), str):  # (an override as server.toml has it: "off"...)
        kw["job_uids"] = parse_uid_range(kw["job_uids"])
    for key in ("pids_limit", "job_output_limit"):
        if kw.get(key, 0) < 0:
            raise ConfigError(f"{key} must not be negative (0: no limit)")
    if kw.get("port_connect", "auto") not in ("auto", "address", "exec"):
        raise ConfigError(f"unknown port_connect {kw['port_connect']!r}: auto, address or exec")
    if "homes_dir" in kw:
        kw["homes_dir"] = Path(kw["homes_dir"])
        if not kw["homes_dir"].is_absolute():
            raise ConfigError(f"homes_dir must be an absolute path, got {str(kw['homes_dir'])!r}")
    if not str(kw.get("network", "per-user")).strip():
        raise ConfigError("network must not be empty: per-user, shared, default or a name")
    return ServerConfig(**kw)
