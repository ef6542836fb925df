"""neuro_sdk: async client of the jobs platform API (aiohttp + yarl, no UI imports).

Example::

    import neuro_sdk

    async with await neuro_sdk.get() as client:
        async for job in client.jobs.list(statuses=neuro_sdk.JobStatus.active_items()):
            print(job.id, job.status)
"""

from ._client import Client
from ._config import Factory, get
from ._disks import Disk, Disks
from ._errors import (
    AuthenticationError,
    AuthError,
    AuthorizationError,
    BadGateway,
    ClientError,
    ConfigError,
    IllegalArgumentError,
    InsufficientStorage,
    NDJSONError,
    NeuroError,
    ProtocolError,
    ResourceNotFound,
    ServerError,
    ServerNotAvailable,
    ServerUnreachable,
)
from ._images import RemoteImage
from ._jobs import Jobs, StdStream
from ._models import (
    Container,
    DiskVolume,
    ExecInspect,
    HTTPPort,
    JobDescription,
    JobPriority,
    JobRestartPolicy,
    JobRuntime,
    JobStatus,
    JobStatusHistory,
    JobStatusItem,
    JobTelemetry,
    LifeSpanSignal,
    Message,
    Resources,
    SecretFile,
    Volume,
)
from ._secrets import Secret, Secrets
from ._server_config import Cluster, Preset, Project, ServerConfig
from ._storage import FileStatus, Storage
from ._version import __version__ as __version__

__all__ = [
    "AuthError",
    "AuthenticationError",
    "AuthorizationError",
    "BadGateway",
    "Client",
    "ClientError",
    "Cluster",
    "ConfigError",
    "Container",
    "Disk",
    "DiskVolume",
    "Disks",
    "ExecInspect",
    "Factory",
    "FileStatus",
    "HTTPPort",
    "IllegalArgumentError",
    "InsufficientStorage",
    "JobDescription",
    "JobPriority",
    "JobRestartPolicy",
    "JobRuntime",
    "JobStatus",
    "JobStatusHistory",
    "JobStatusItem",
    "JobTelemetry",
    "Jobs",
    "LifeSpanSignal",
    "Message",
    "NDJSONError",
    "NeuroError",
    "Preset",
    "Project",
    "ProtocolError",
    "RemoteImage",
    "ResourceNotFound",
    "Resources",
    "Secret",
    "SecretFile",
    "Secrets",
    "ServerConfig",
    "ServerError",
    "ServerNotAvailable",
    "ServerUnreachable",
    "StdStream",
    "Storage",
    "Volume",
    "get",
]
