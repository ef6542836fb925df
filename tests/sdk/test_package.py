from __future__ import annotations

import inspect
import json
import subprocess
import sys
import types

import neuro_sdk


def test_no_ui_imports() -> None:
    code = (
        "import json, sys, neuro_sdk\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('click', 'rich', 'prompt_toolkit', 'neuro_cli'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out) == []


def test_all_is_sorted() -> None:
    assert neuro_sdk.__all__ == sorted(neuro_sdk.__all__)
    assert len(set(neuro_sdk.__all__)) == len(neuro_sdk.__all__)


def test_all_is_complete() -> None:
    public = {
        name
        for name, obj in vars(neuro_sdk).items()
        if not name.startswith("_") and not isinstance(obj, types.ModuleType)
    }
    assert public == set(neuro_sdk.__all__)
    for name in neuro_sdk.__all__:
        assert getattr(neuro_sdk, name).__module__.startswith("neuro_sdk.")


def test_public_classes_live_in_private_modules_and_are_exported() -> None:
    # (_wire is the vocabulary the SDK shares with the server and the CLI, not API of its own)
    modules = [
        m
        for n, m in vars(neuro_sdk).items()
        if isinstance(m, types.ModuleType) and n.startswith("_") and n != "_wire"
    ]
    for module in modules:
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
                and name not in ("AsyncStream", "Stub")
            ):
                assert name in neuro_sdk.__all__, f"{module.__name__}.{name} is not exported"


def test_seed_signatures() -> None:
    jobs = neuro_sdk.Jobs
    start = inspect.signature(jobs.start)
    assert list(start.parameters) == [
        "self",
        "image",
        "preset_name",
        "entrypoint",
        "command",
        "working_dir",
        "http",
        "env",
        "volumes",
        "secret_env",
        "secret_files",
        "disk_volumes",
        "tty",
        "shm",
        "name",
        "tags",
        "description",
        "pass_config",
        "wait_for_jobs_quota",
        "schedule_timeout",
        "restart_policy",
        "life_span",
        "privileged",
        "life_span_signal",  # our extension, after the seed's
    ]
    assert all(
        p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in start.parameters.items() if n != "self"
    )
    assert list(inspect.signature(jobs.run).parameters) == [
        "self",
        "container",
        "name",
        "tags",
        "description",
        "scheduler_enabled",
        "pass_config",
        "wait_for_jobs_quota",
        "schedule_timeout",
        "life_span",
    ]
    assert list(inspect.signature(jobs.list).parameters) == [
        "self",
        "statuses",
        "name",
        "tags",
        "owners",
        "since",
        "until",
        "reverse",
        "limit",
    ]
    assert list(inspect.signature(jobs.bump_life_span).parameters) == [
        "self",
        "id",
        "additional_life_span",
    ]
    for name in ("status", "kill"):
        assert list(inspect.signature(getattr(jobs, name)).parameters) == ["self", "id"]


def test_seed_signatures_of_interactive_methods() -> None:
    jobs = neuro_sdk.Jobs

    def params(name: str) -> list[str]:
        return list(inspect.signature(getattr(jobs, name)).parameters)

    # the seed's parameters first, our extensions after them
    assert params("attach") == [
        "self",
        "id",
        "stdin",
        "stdout",
        "stderr",
        "tty",
        "logs",
        "offset",
    ]
    assert params("exec_create") == ["self", "id", "cmd", "tty"]
    assert params("exec_start") == ["self", "id", "exec_id"]
    assert params("exec_inspect") == ["self", "id", "exec_id"]
    assert params("exec_resize") == ["self", "id", "exec_id", "w", "h"]
    assert params("resize") == ["self", "id", "w", "h"]
    assert params("port_forward") == ["self", "id", "local_port", "job_port", "no_key_check"]
    assert params("send_signal") == ["self", "id", "signal"]
    assert params("top") == ["self", "id"]
    assert params("exec") == [
        "self",
        "id",
        "cmd",
        "tty",
        "stdin",
        "stdout",
        "stderr",
        "resumable",
        "resume",
        "offset",
        "size",
    ]
    for name, positional in [
        ("attach", 1),
        ("exec_create", 2),
        ("exec_resize", 2),
        ("resize", 1),
        ("port_forward", 3),
        ("exec", 2),
    ]:
        kinds = [p.kind for p in inspect.signature(getattr(jobs, name)).parameters.values()]
        assert kinds[1 : 1 + positional] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * positional
        assert set(kinds[1 + positional :]) <= {inspect.Parameter.KEYWORD_ONLY}, name
    stream = neuro_sdk.StdStream
    for name in ("read_out", "write_in", "close", "resize", "close_stdin"):
        assert inspect.iscoroutinefunction(getattr(stream, name)), name
    assert list(inspect.signature(stream.write_in).parameters) == ["self", "data"]
    assert list(inspect.signature(stream.resize).parameters) == ["self", "h", "w"]
