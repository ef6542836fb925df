"""Container image references: external Docker images and platform-registry images."""

from __future__ import annotations

import re
from dataclasses import dataclass

from yarl import URL

_SCHEME = "image"
_WS = re.compile(r"\s")


def _split_tag(ref: str) -> tuple[str, str | None]:
    """Split ``name[:tag]``; a colon before the last ``/`` is a registry port, not a tag.

    References with a digest (``@sha256:...``) are kept whole as the name.
    """
    if "@" in ref:
        return ref, None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1 :]
        if not name or not tag:
            raise ValueError(f"Invalid image reference {ref!r}: empty name or tag")
        return name, tag
    return ref, None


@dataclass(frozen=True)
class RemoteImage:
    """*Read-only* reference to a container image.

    An *external* image (Docker Hub, ``ghcr.io/...``) has ``cluster_name is None`` and its
    ``name`` includes any registry host.  A *platform* image lives in the platform registry of
    ``cluster_name`` under ``org_name``/``project_name``; it is sent to the API as
    ``<registry>/<org>/<project>/<name>[:tag]``.

    Example::

        RemoteImage.parse("ubuntu:22.04")             # external
        RemoteImage.parse("image:myimg:v1", cluster_name="c", org_name="o",
                          project_name="p")           # platform
    """

    name: str
    tag: str | None = None
    owner: str | None = None
    cluster_name: str | None = None
    registry: str | None = None
    org_name: str | None = None
    project_name: str | None = None

    @classmethod
    def new_external_image(cls, name: str, tag: str | None = None) -> RemoteImage:
        """An image outside the platform registry; *name* may contain a registry host."""
        if not name or _WS.search(name):
            raise ValueError(f"Invalid image name {name!r}")
        return cls(name=name, tag=tag)

    @classmethod
    def new_platform_image(
        cls,
        name: str,
        *,
        cluster_name: str,
        project_name: str | None,
        org_name: str | None = None,
        registry: str | None = None,
        tag: str | None = None,
    ) -> RemoteImage:
        """An image in the platform registry of *cluster_name*."""
        if not name or _WS.search(name):
            raise ValueError(f"Invalid image name {name!r}")
        return cls(
            name=name,
            tag=tag,
            owner=project_name,
            cluster_name=cluster_name,
            registry=registry,
            org_name=org_name,
            project_name=project_name,
        )

    @classmethod
    def parse(
        cls,
        image: str,
        *,
        cluster_name: str | None = None,
        org_name: str | None = None,
        project_name: str | None = None,
        registry: str | None = None,
    ) -> RemoteImage:
        """Parse a user-written image reference.

        * ``ubuntu``, ``ubuntu:22.04``, ``ghcr.io/x/y:tag``: external images;
        * ``image:name[:tag]``: platform image in the current cluster/org/project given by the
          keyword arguments; ``image:/project/name`` names another project of the org;
          ``image://cluster/org/project/name[:tag]`` is fully qualified;
        * ``<registry>/<org>/<project>/name[:tag]``: platform image when *registry* (the
          platform registry host) is given and matches.

        A platform image parsed without a cluster context gets ``cluster_name=""``: it is
        still a platform image, and :meth:`Jobs.start` fills in the client's current
        cluster, org, project and registry.
        """
        if not image or _WS.search(image):
            raise ValueError(f"Invalid image reference {image!r}")
        if image.startswith(_SCHEME + ":"):
            return cls._parse_platform_uri(
                image,
                cluster_name=cluster_name,
                org_name=org_name,
                project_name=project_name,
                registry=registry,
            )
        if "://" in image:
            raise ValueError(f"Invalid image reference {image!r}: unsupported scheme")
        if registry and image.startswith(registry + "/"):
            rest = image[len(registry) + 1 :]
            name, tag = _split_tag(rest)
            parts = name.split("/")
            org: str | None
            if org_name and len(parts) >= 3:
                org, project, name = parts[0], parts[1], "/".join(parts[2:])
            elif len(parts) >= 2:
                org, project, name = None, parts[0], "/".join(parts[1:])
            else:
                raise ValueError(f"Invalid platform image reference {image!r}")
            return cls.new_platform_image(
                name,
                cluster_name=cluster_name or "",
                org_name=org,
                project_name=project,
                registry=registry,
                tag=tag,
            )
        name, tag = _split_tag(image)
        return cls.new_external_image(name, tag)

    @classmethod
    def _parse_platform_uri(
        cls,
        image: str,
        *,
        cluster_name: str | None,
        org_name: str | None,
        project_name: str | None,
        registry: str | None,
    ) -> RemoteImage:
        rest = image[len(_SCHEME) + 1 :]
        cluster = cluster_name or ""
        org, project = org_name, project_name
        if rest.startswith("//"):
            url = URL(image)
            if url.query_string or url.fragment or url.user or url.password or url.explicit_port:
                raise ValueError(f"Invalid image URI {image!r}")
            cluster = url.host or ""
            parts = [p for p in url.raw_path.split("/") if p]
            if not parts:
                raise ValueError(f"Invalid image URI {image!r}: no image name")
            if len(parts) >= 3:
                org, project, parts = parts[0], parts[1], parts[2:]
            elif len(parts) == 2:
                org, project, parts = None, parts[0], parts[1:]
            path = "/".join(parts)
        elif rest.startswith("/"):
            parts = [p for p in rest.split("/") if p]
            if len(parts) < 2:
                raise ValueError(f"Invalid image URI {image!r}: expected image:/project/name")
            project, path = parts[0], "/".join(parts[1:])
        else:
            path = rest
        name, tag = _split_tag(path)
        return cls.new_platform_image(
            name,
            cluster_name=cluster,
            org_name=org,
            project_name=project,
            registry=registry,
            tag=tag,
        )

    @property
    def is_platform(self) -> bool:
        """``True`` for an image in the platform registry."""
        return self.cluster_name is not None

    def _namespace(self) -> list[str]:
        project = self.project_name or self.owner
        return [p for p in (self.org_name, project) if p]

    def _name_tag(self) -> str:
        return f"{self.name}:{self.tag}" if self.tag else self.name

    def as_docker_url(self, with_scheme: bool = False) -> str:
        """The reference that Docker (and the jobs API) understands.

        A platform image needs ``registry`` to be known.
        """
        if not self.is_platform:
            return self._name_tag()
        if not self.registry:
            raise ValueError(f"Registry of the platform image {self} is unknown")
        ref = "/".join([self.registry, *self._namespace(), self._name_tag()])
        return f"https://{ref}" if with_scheme else ref

    def __str__(self) -> str:
        if not self.is_platform:
            return self._name_tag()
        if self.cluster_name:
            path = "/".join([*self._namespace(), self._name_tag()])
            return f"{_SCHEME}://{self.cluster_name}/{path}"
        return f"{_SCHEME}:{self._name_tag()}"
