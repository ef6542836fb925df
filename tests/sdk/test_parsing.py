"""Pure JSON -> model conversions (protocol 2.4), no network."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from yarl import URL

from neuro_sdk import (
    DiskVolume,
    HTTPPort,
    JobPriority,
    JobRestartPolicy,
    JobRuntime,
    JobStatus,
    JobStatusItem,
    ProtocolError,
    RemoteImage,
    Resources,
    SecretFile,
    Volume,
)
from neuro_sdk._parsing import job_description_from_api, list_query, start_request_body

from .helpers import job_json


def test_minimal_required_keys() -> None:
    job = job_description_from_api(
        {
            "id": "job-1",
            "owner": "alice",
            "cluster_name": "c",
            "status": "pending",
            "history": {"status": "pending", "created_at": "2024-01-01T00:00:00Z"},
            "container": {"image": "ubuntu", "resources": {"cpu": 0.1, "memory": 2**24}},
            "scheduler_enabled": False,
            "pass_config": False,
            "uri": "job://c/alice/job-1",
            "total_price_credits": "0",
            "price_credits_per_hour": "0",
        }
    )
    assert job.project_name == "alice"  # falls back to the owner
    assert job.org_name is None
    assert job.name is None and job.tags == () and job.description is None
    assert job.http_url == URL() and job.http_url_named == URL()
    assert job.life_span is None and job.schedule_timeout is None
    assert job.restart_policy is JobRestartPolicy.NEVER
    assert job.priority is JobPriority.NORMAL
    assert job.runtime is None
    assert job.history.transitions == ()
    assert job.history.created_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert job.container.resources == Resources(memory=2**24, cpu=0.1)
    assert job.container.env == {} and job.container.volumes == ()


@pytest.mark.parametrize(
    "key",
    [
        "id",
        "owner",
        "cluster_name",
        "status",
        "history",
        "container",
        "pass_config",
        "uri",
        "total_price_credits",
        "price_credits_per_hour",
    ],
)
def test_required_keys(key: str) -> None:
    data = job_json()
    del data[key]
    with pytest.raises(ProtocolError):
        job_description_from_api(data)


def test_container_image_and_resources_required() -> None:
    for key in ("image", "resources"):
        data = job_json()
        del data["container"][key]
        with pytest.raises(ProtocolError, match=key):
            job_description_from_api(data)


def test_full_job() -> None:
    data = job_json(
        name="my-job",
        tags=["a", "b"],
        description="desc",
        preset_name="cpu-small",
        http_url="https://job-1.jobs.example.com",
        http_url_named="https://my-job--alice.jobs.example.com",
        internal_hostname="job-1.ns",
        internal_hostname_named="my-job--abc.ns",
        restart_policy="on-failure",
        max_run_time_minutes=10,
        schedule_timeout=60,
        preemptible_node=True,
        privileged=True,
        priority="high",
        energy_schedule_name="green",
        namespace="ns",
        scheduler_enabled=True,
        runtime={
            "name": "process",
            "image_used": False,
            "limits": "rlimit (memory only)",
            "note": "the image is not used",
        },
    )
    data["container"].update(
        {
            "entrypoint": "/bin/sh",
            "working_dir": "/w",
            "http": {"port": 8080, "requires_auth": True, "health_check_path": "/"},
            "tty": True,
            "volumes": [
                {
                    "src_storage_uri": "storage://default/acme/beta/d",
                    "dst_path": "/d",
                    "read_only": False,
                },
                {"src_storage_uri": "storage://default/acme/beta/e", "dst_path": "/e"},
            ],
            "secret_env": {"S": "secret://default/acme/beta/s"},
            "secret_volumes": [
                {"src_secret_uri": "secret://default/acme/beta/k", "dst_path": "/k"}
            ],
            "disk_volumes": [
                {
                    "src_disk_uri": "disk://default/acme/beta/disk-1",
                    "dst_path": "/disk",
                    "read_only": True,
                }
            ],
        }
    )
    data["container"]["resources"].update(
        {
            "nvidia_gpu": 1,
            "nvidia_gpu_model": "a100",
            "amd_gpu": 2,
            "tpu": {"type": "v2", "software_version": "1"},
        }
    )
    data["history"].update({"exit_code": None, "restarts": 2})
    job = job_description_from_api(data)

    assert job.id == "job-1" and job.owner == "alice" and job.cluster_name == "default"
    assert job.org_name == "acme" and job.project_name == "beta"
    assert job.status is JobStatus.RUNNING
    assert job.uri == URL("job://default/acme/beta/job-1")
    assert job.total_price_credits == Decimal("1.2500")
    assert job.price_credits_per_hour == Decimal("0.5000")
    assert (job.name, job.tags, job.description, job.preset_name) == (
        "my-job",
        ("a", "b"),
        "desc",
        "cpu-small",
    )
    assert job.http_url == URL("https://my-job--alice.jobs.example.com")  # named preferred
    assert job.http_url_named == URL("https://my-job--alice.jobs.example.com")
    assert (job.internal_hostname, job.internal_hostname_named) == ("job-1.ns", "my-job--abc.ns")
    assert job.restart_policy is JobRestartPolicy.ON_FAILURE
    assert job.life_span == 600.0
    assert job.schedule_timeout == 60.0
    assert job.preemptible_node and job.privileged and job.scheduler_enabled
    assert job.priority is JobPriority.HIGH
    assert job.energy_schedule_name == "green" and job.namespace == "ns"
    assert job.runtime == JobRuntime(
        name="process",
        image_used=False,
        limits="rlimit (memory only)",
        note="the image is not used",
    )

    c = job.container
    assert c.image == RemoteImage("ubuntu", "22.04")
    assert (c.entrypoint, c.command, c.working_dir, c.tty) == ("/bin/sh", "sleep 1h", "/w", True)
    assert c.http == HTTPPort(8080, True)
    assert c.env == {"A": "1"}
    assert c.volumes == (
        Volume(URL("storage://default/acme/beta/d"), "/d", read_only=False),
        Volume(URL("storage://default/acme/beta/e"), "/e", read_only=True),
    )
    assert c.secret_env == {"S": URL("secret://default/acme/beta/s")}
    assert c.secret_files == (SecretFile(URL("secret://default/acme/beta/k"), "/k"),)
    assert c.disk_volumes == (DiskVolume(URL("disk://default/acme/beta/disk-1"), "/disk", True),)
    r = c.resources
    assert (r.memory, r.memory_mb, r.cpu, r.shm) == (2 * 2**30, 2048, 1.0, True)
    assert (r.gpu, r.gpu_model, r.nvidia_gpu, r.amd_gpu) == (1, "a100", 1, 2)
    assert (r.tpu_type, r.tpu_software_version) == ("v2", "1")

    h = job.history
    assert h.status is JobStatus.RUNNING
    assert (h.reason, h.description, h.restarts, h.exit_code) == ("", "", 2, None)
    assert h.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert h.started_at == datetime(2024, 1, 2, 3, 4, 10, tzinfo=UTC)
    assert h.finished_at is None
    assert h.run_time_seconds == 12.5
    assert h.transitions == (
        JobStatusItem(JobStatus.PENDING, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "Creating", ""),
        JobStatusItem(JobStatus.RUNNING, datetime(2024, 1, 2, 3, 4, 10, tzinfo=UTC), "", ""),
    )
    assert h.changed_at == datetime(2024, 1, 2, 3, 4, 10, tzinfo=UTC)


def test_finished_job_history() -> None:
    data = job_json(status="failed")
    data["history"].update(
        {
            "status": "failed",
            "reason": "OOMKilled",
            "description": "out of memory",
            "finished_at": "2024-01-02T04:00:00.123456+01:00",
            "exit_code": 137,
        }
    )
    data["statuses"].append(
        {
            "status": "failed",
            "transition_time": "2024-01-02T03:00:00.123456Z",
            "reason": "OOMKilled",
            "exit_code": 137,
        }
    )
    job = job_description_from_api(data)
    assert job.status is JobStatus.FAILED
    assert job.history.exit_code == 137
    assert job.history.finished_at == datetime(2024, 1, 2, 3, 0, 0, 123456, tzinfo=UTC)
    assert job.history.finished_at.tzinfo is not None
    assert job.history.transitions[-1].exit_code == 137


def test_unknown_status_and_naive_times() -> None:
    data = job_json(status="teleporting")
    data["history"]["status"] = "teleporting"
    data["history"]["created_at"] = "2024-01-02T03:04:05"
    job = job_description_from_api(data)
    assert job.status is JobStatus.UNKNOWN and job.history.status is JobStatus.UNKNOWN
    assert job.history.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_life_span_prefers_seconds_extension() -> None:
    job = job_description_from_api(job_json(max_run_time_minutes=1, max_run_time_seconds=50.5))
    assert job.life_span == 50.5


def test_http_url_without_named() -> None:
    job = job_description_from_api(job_json(http_url="https://job-1.example.com"))
    assert job.http_url == URL("https://job-1.example.com")
    assert job.http_url_named == URL()


def test_aliases_and_legacy_keys() -> None:
    data = job_json(is_preemptible=True, is_preemptible_node_required=True, org_name="NO_ORG")
    del data["scheduler_enabled"]
    del data["preemptible_node"]
    data["container"]["resources"] = {"cpu": 1, "memory_mb": 64, "gpu": 1, "gpu_model": "k80"}
    job = job_description_from_api(data)
    assert job.scheduler_enabled and job.preemptible_node
    assert job.org_name is None
    assert job.container.resources == Resources(memory_mb=64, cpu=1, gpu=1, gpu_model="k80")


def test_unknown_enum_values_fall_back() -> None:
    job = job_description_from_api(job_json(restart_policy="sometimes", priority="urgent"))
    assert job.restart_policy is JobRestartPolicy.NEVER
    assert job.priority is JobPriority.NORMAL


def test_unparsable_image_is_kept_verbatim() -> None:
    data = job_json()
    data["container"]["image"] = "bad image name"
    assert job_description_from_api(data).container.image.name == "bad image name"


def test_platform_image_with_registry() -> None:
    data = job_json()
    data["container"]["image"] = "reg.example.com/acme/beta/img:1"
    image = job_description_from_api(data, registry_host="reg.example.com").container.image
    assert (image.cluster_name, image.org_name, image.project_name, image.name, image.tag) == (
        "default",
        "acme",
        "beta",
        "img",
        "1",
    )


def test_start_body_omits_empty_values() -> None:
    assert start_request_body(image_ref="ubuntu", preset_name="p") == {
        "image": "ubuntu",
        "preset_name": "p",
        "pass_config": False,
    }


def test_start_body_restart_policy_never_is_omitted() -> None:
    body = start_request_body(
        image_ref="i", preset_name="p", restart_policy=JobRestartPolicy.NEVER, tty=False, shm=False
    )
    assert "restart_policy" not in body and "tty" not in body and "resources" not in body
    body = start_request_body(
        image_ref="i", preset_name="p", restart_policy=JobRestartPolicy.ALWAYS
    )
    assert body["restart_policy"] == "always"


def test_list_query_empty() -> None:
    assert list_query() == []
