from __future__ import annotations

import dataclasses

import pytest

from neuro_sdk import JobRestartPolicy, JobStatus, RemoteImage, Resources


def test_job_status_sets() -> None:
    S = JobStatus
    assert S.items() == {S.PENDING, S.SUSPENDED, S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELLED}
    assert S.active_items() == {S.PENDING, S.SUSPENDED, S.RUNNING}
    assert S.finished_items() == {S.SUCCEEDED, S.FAILED, S.CANCELLED}


@pytest.mark.parametrize(
    ("status", "pending", "running", "finished"),
    [
        (JobStatus.PENDING, True, False, False),
        (JobStatus.SUSPENDED, True, False, False),
        (JobStatus.RUNNING, False, True, False),
        (JobStatus.SUCCEEDED, False, False, True),
        (JobStatus.FAILED, False, False, True),
        (JobStatus.CANCELLED, False, False, True),
        (JobStatus.UNKNOWN, False, False, False),
    ],
    ids=lambda v: str(v),
)
def test_job_status_flags(status: JobStatus, pending: bool, running: bool, finished: bool) -> None:
    assert (status.is_pending, status.is_running, status.is_finished) == (
        pending,
        running,
        finished,
    )


def test_job_status_unknown_value_and_str() -> None:
    assert JobStatus("exploded") is JobStatus.UNKNOWN
    assert JobStatus("running") is JobStatus.RUNNING
    assert str(JobStatus.RUNNING) == "running" and f"{JobStatus.FAILED}" == "failed"
    assert JobStatus.RUNNING == "running"
    assert str(JobRestartPolicy.ON_FAILURE) == "on-failure"


def test_resources_memory_forms_are_equal() -> None:
    a = Resources(memory_mb=1024, cpu=0.5)
    b = Resources(memory=2**30, cpu=0.5)
    assert a == b
    assert (a.memory, a.memory_mb) == (2**30, 1024)


def test_resources_seed_positional_order() -> None:
    r = Resources(256, 1.0, 1, "nvidia-tesla-k80", True, "v2-8", "1.14")
    assert (r.memory_mb, r.cpu, r.gpu, r.gpu_model, r.shm) == (
        256,
        1.0,
        1,
        "nvidia-tesla-k80",
        True,
    )
    assert (r.tpu_type, r.tpu_software_version) == ("v2-8", "1.14")
    assert (r.nvidia_gpu, r.nvidia_gpu_model) == (1, "nvidia-tesla-k80")


def test_resources_gpu_alias() -> None:
    r = Resources(memory_mb=16, cpu=1, nvidia_gpu=2, nvidia_gpu_model="a100")
    assert (r.gpu, r.gpu_model) == (2, "a100")
    with pytest.raises(ValueError, match="contradicts"):
        Resources(memory_mb=16, cpu=1, gpu=1, nvidia_gpu=2)
    with pytest.raises(ValueError, match="contradicts"):
        Resources(memory_mb=16, memory=2**30, cpu=1)


def test_resources_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Resources(memory_mb=16, cpu=1).cpu = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected", "as_str", "docker"),
    [
        ("ubuntu", RemoteImage(name="ubuntu"), "ubuntu", "ubuntu"),
        ("ubuntu:22.04", RemoteImage(name="ubuntu", tag="22.04"), "ubuntu:22.04", "ubuntu:22.04"),
        (
            "ghcr.io/x/y:tag",
            RemoteImage(name="ghcr.io/x/y", tag="tag"),
            "ghcr.io/x/y:tag",
            "ghcr.io/x/y:tag",
        ),
        (
            "localhost:5000/img",
            RemoteImage(name="localhost:5000/img"),
            "localhost:5000/img",
            "localhost:5000/img",
        ),
        (
            "localhost:5000/img:1",
            RemoteImage(name="localhost:5000/img", tag="1"),
            "localhost:5000/img:1",
            "localhost:5000/img:1",
        ),
        (
            "ubuntu@sha256:abcd",
            RemoteImage(name="ubuntu@sha256:abcd"),
            "ubuntu@sha256:abcd",
            "ubuntu@sha256:abcd",
        ),
    ],
    ids=["bare", "tag", "registry", "registry-port", "registry-port-tag", "digest"],
)
def test_parse_external(text: str, expected: RemoteImage, as_str: str, docker: str) -> None:
    image = RemoteImage.parse(text)
    assert image == expected
    assert not image.is_platform
    assert str(image) == as_str
    assert image.as_docker_url() == docker


def test_new_external_image() -> None:
    assert RemoteImage.new_external_image("python", "3.11") == RemoteImage("python", "3.11")
    with pytest.raises(ValueError):
        RemoteImage.new_external_image("")


def test_parse_platform_relative_with_context() -> None:
    image = RemoteImage.parse(
        "image:name:tag",
        cluster_name="c",
        org_name="o",
        project_name="p",
        registry="reg.example.com",
    )
    assert image == RemoteImage(
        name="name",
        tag="tag",
        owner="p",
        cluster_name="c",
        registry="reg.example.com",
        org_name="o",
        project_name="p",
    )
    assert image.is_platform
    assert str(image) == "image://c/o/p/name:tag"
    assert image.as_docker_url() == "reg.example.com/o/p/name:tag"
    assert image.as_docker_url(with_scheme=True) == "https://reg.example.com/o/p/name:tag"


def test_parse_platform_relative_without_context() -> None:
    image = RemoteImage.parse("image:name:tag")
    assert image.is_platform
    assert (image.name, image.tag, image.cluster_name) == ("name", "tag", "")
    assert str(image) == "image:name:tag"
    with pytest.raises(ValueError, match="Registry"):
        image.as_docker_url()


def test_parse_platform_other_project() -> None:
    image = RemoteImage.parse("image:/proj2/sub/name", cluster_name="c", org_name="o")
    assert (image.org_name, image.project_name, image.name, image.tag) == (
        "o",
        "proj2",
        "sub/name",
        None,
    )
    assert str(image) == "image://c/o/proj2/sub/name"


def test_parse_platform_full_uri() -> None:
    image = RemoteImage.parse("image://cl/org/proj/name:v1", cluster_name="other")
    assert (image.cluster_name, image.org_name, image.project_name, image.name, image.tag) == (
        "cl",
        "org",
        "proj",
        "name",
        "v1",
    )
    assert str(image) == "image://cl/org/proj/name:v1"
    no_org = RemoteImage.parse("image://cl/proj/name")
    assert (no_org.org_name, no_org.project_name, str(no_org)) == (
        None,
        "proj",
        "image://cl/proj/name",
    )


def test_parse_platform_registry_reference() -> None:
    image = RemoteImage.parse(
        "reg.example.com/o/p/name:1", registry="reg.example.com", cluster_name="c", org_name="o"
    )
    assert (image.cluster_name, image.org_name, image.project_name, image.name, image.tag) == (
        "c",
        "o",
        "p",
        "name",
        "1",
    )
    assert image.as_docker_url() == "reg.example.com/o/p/name:1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "has space",
        "name:",
        ":tag",
        "http://example.com/img",
        "image://c/o/p/n?x=1",
        "image:/onlyproj",
    ],
    ids=["empty", "space", "empty-tag", "empty-name", "scheme", "query", "project-without-name"],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        RemoteImage.parse(text)
