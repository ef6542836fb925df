"""The user config (user.toml, a project's .neuro.toml): defaults for run and ps, aliases, and
one-line errors for bad files."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Neuro


def test_defaults_aliases_and_project_override(neuro: Neuro) -> None:
    (neuro.config_dir / "user.toml").write_text(
        '[job]\npreset = "cpu-medium"\nlife-span = "2h"\nps-format = "name status"\n'
        '[alias]\nlsa = "ps -a"\n[alias.quick]\ncmd = "run --detach -q"\n'
    )
    job = neuro.ok("quick", "-n", "aliased", "ubuntu", "--", "sleep", "30").strip()
    assert job.startswith("job-")
    st = neuro.ok("status", job)
    assert "Preset: cpu-medium" in st and "Life span: 2h" in st
    assert neuro.ok("ps").splitlines() == ["NAME\tSTATUS", "aliased\trunning"]
    assert neuro.ok("lsa", "-q").split() == [job]
    assert neuro.ok("ps", "--format", "id").splitlines() == ["ID", job]  # the option wins
    # a project's .neuro.toml overrides the user's, key by key
    project = neuro.home / "proj" / "sub"
    project.mkdir(parents=True)
    (neuro.home / "proj" / ".neuro.toml").write_text('[job]\nps-format = "id/name"\n')
    out = subprocess.run(
        [sys.executable, "-m", "neuro_cli", "ps"],
        env=neuro.env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["ID\tNAME", f"{job}\taliased"]
    neuro.ok("kill", job)


def test_bad_user_config_is_one_line(neuro: Neuro) -> None:
    path = neuro.config_dir / "user.toml"
    neuro.config_dir.mkdir(parents=True, exist_ok=True)
    for text, why in [
        ("[job\n", "invalid TOML"),
        ("[jobs]\n", "unknown section [jobs]"),
        ('[job]\ncolour = "x"\n', "unknown key [job] colour"),
        ('[job]\nps-format = "nope"\n', "unknown column 'nope'"),
        ('[job]\nlife-span = "soon"\n', "[job] life-span"),
    ]:
        path.write_text(text)
        cmd = ("run", "ubuntu", "--", "true") if "life-span" in text else ("ps",)
        r = neuro(*cmd)
        assert r.returncode == 70, (text, r.stderr)
        assert r.stderr.startswith("ERROR: ") and why in r.stderr and str(path) in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = neuro("ps", "--format", "id/name/status")
    assert r.returncode == 2 and "at most two" in r.stderr
    path.write_text('[alias]\nps = "kill"\n')  # an alias never shadows a command
    assert neuro.ok("ps").startswith("ID")


def test_traceback_only_when_asked_globally(neuro: Neuro) -> None:
    missing = "job-00000000-0000-0000-0000-000000000000"
    r = neuro("status", missing)
    assert r.returncode == 72 and "Traceback" not in r.stderr
    r = neuro("-v", "status", missing)
    assert r.returncode == 72 and "Traceback (most recent call last)" in r.stderr
    r = neuro("run", "-v", "bad-volume", "ubuntu", "--", "true")  # run's -v is a volume
    assert r.returncode == 2 and "Traceback" not in r.stderr and "invalid -v" in r.stderr
