"""The official client and a job's HTTP URL, as on the platform: ``apolo job browse`` opens
``http_url``; a browser without a cookie is sent to the login URL of the cluster config, and
with the platform's ``dat`` cookie it gets the page."""

from __future__ import annotations

import json
import os
import socket
import stat
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.compat.test_apolo import apolo, apolo_bin  # noqa: F401 - the fixture
from tests.conftest import Neuro
from tests.e2e.conftest import http_server_job
from tests.e2e.test_http_login import BROWSER, get

pytestmark = pytest.mark.compat


@pytest.mark.timeout(180)
def test_official_client_browses_a_job_and_its_login_and_cookie_work(
    neuro: Neuro,
    apolo,  # type: ignore[no-untyped-def]  # noqa: F811
    tmp_path: Path,
) -> None:
    import subprocess

    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    token = neuro.ok("config", "show-token").strip()
    r = apolo("config", "login-with-token", token, url)
    assert r.returncode == 0, r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    job, _ = http_server_job(
        neuro, port, "browsed by apolo\n", tmp_path / "www", extra=("--http-port", str(port))
    )
    http_url = json.loads(neuro.ok("status", "--json", job))["http_url"]

    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    env = {
        "HOME": apolo.home,
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "BROWSER": str(browser),
    }
    argv0 = [str(apolo_bin()), "--disable-pypi-version-check", "--skip-stats"]
    r = subprocess.run(
        [*argv0, "job", "browse", job], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert f"Browsing job, please open: {http_url}" in r.stdout
    assert opened.read_text() == http_url

    with urllib.request.urlopen(f"{url}/config", timeout=20) as resp:  # (no token)
        config = json.loads(resp.read())
    status, headers, _ = get(http_url, BROWSER)
    assert status == 302 and headers["location"].split("?")[0] == config["auth_url"]
    assert parse_qs(urlsplit(headers["location"]).query)["redirect_uri"] == [http_url]
    status, _, body = get(http_url + "index.html", {**BROWSER, "Cookie": f"dat={token}"})
    assert status == 200 and body == b"browsed by apolo\n"
    neuro.ok("kill", job)


@pytest.mark.timeout(180)
def test_official_client_runs_a_pass_config_job_on_docker_that_reaches_the_server(
    neuro: Neuro,
    apolo,  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    """`apolo run --pass-config` against the embedded server (on loopback) on the docker
    runtime: the job reads its passed config (base64 JSON, as the platform injects it) and
    lists its owner's jobs through it (busybox: wget; no client in the image)."""
    if neuro.runtime != "docker":
        pytest.skip("containers that cannot reach loopback: the docker runtime")
    neuro.ok("server", "start")
    url = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    r = apolo("config", "login-with-token", neuro.ok("config", "show-token").strip(), url)
    assert r.returncode == 0, r.stderr
    script = (
        'cfg=$(echo "$NEURO_PASSED_CONFIG" | base64 -d); '
        """url=$(echo "$cfg" | sed 's/.*"url": "\\([^"]*\\)".*/\\1/'); """
        """tok=$(echo "$cfg" | sed 's/.*"token": "\\([^"]*\\)".*/\\1/'); """
        'wget -q -O - --header "Authorization: Bearer $tok" "$url/jobs" | grep -q from-apolo-pc '
        "&& echo listed-through-the-passed-config"
    )
    r = apolo(
        "run",
        "--pass-config",
        "--preset",
        "cpu-small",
        "-n",
        "from-apolo-pc",
        neuro.image,
        "--",
        "sh",
        "-c",
        script,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "listed-through-the-passed-config" in r.stdout
