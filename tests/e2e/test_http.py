"""A job's HTTP port at its own URL through the server's ingress, on both runtimes: the owner's
token or a browser login opens it, others are refused until it is shared, --no-http-auth opens
it to anyone; our credentials never reach the job."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Neuro
from tests.e2e.conftest import http_server_job


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(
    url: str,
    path: str = "/index.html",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=20)
    conn.request("GET", path, headers={"Host": parts.netloc, **(headers or {})})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def _wait_ok(url: str, headers: dict[str, str]) -> bytes:
    import time

    deadline = time.monotonic() + 20
    while True:
        status, _, body = _get(url, headers=headers)
        if status == 200:
            return body
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.2)


def test_http_ingress_auth_browse_and_sharing(neuro: Neuro, tmp_path: Path) -> None:
    port = _free_port()
    job, _ = http_server_job(
        neuro,
        port,
        "hello over http\n",
        tmp_path / "www",
        extra=("--http-port", str(port), "-n", "web"),
    )
    detail = json.loads(neuro.ok("status", "--json", job))
    url = detail["http_url"]  # a named job's URL is the named one (as the platform's SDK has it)
    owner = neuro.ok("config", "show").splitlines()[0].removeprefix("User: ")
    assert url == f"http://web--{owner}.jobs.localhost:{urlsplit(url).port}/"
    by_id = f"http://{job}.jobs.localhost:{urlsplit(url).port}/"
    st = neuro.ok("status", job)
    assert (
        f"Http URL: {url}" in st and f"Http port: {port}" in st and "Http authentication: yes" in st
    )
    token = neuro.ok("config", "show-token").strip()

    status, _, body = _get(url)
    assert status == 401 and b"neuro job browse" in body
    assert _wait_ok(url, {"Authorization": f"Bearer {token}"}) == b"hello over http\n"
    # the JOB_ID host serves the same job
    assert _get(by_id, headers={"Authorization": f"Bearer {token}"})[2] == b"hello over http\n"

    # a browser: the one-time link sets a cookie, then the cookie opens the job
    r = neuro("job", "browse", "--no-browser", "web")
    assert r.returncode == 0 and r.stdout.strip() == by_id
    login = r.stderr.split("One-time login link (2 minutes): ")[1].strip()
    status, headers, _ = _get(by_id, path=urlsplit(login).path + "?" + urlsplit(login).query)
    assert status == 302 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"]
    assert _get(by_id, headers={"Cookie": cookie})[2] == b"hello over http\n"
    status, _, _ = _get(by_id, path=urlsplit(login).path + "?" + urlsplit(login).query)
    assert status == 403  # one time only

    # another user: refused until the job is shared with them
    bob_token = subprocess.run(
        ["neuro-server", "add-user", "bob", "--data-dir", str(neuro.server_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=neuro.env,
    ).stdout.strip()
    assert _get(url, headers={"Authorization": f"Bearer {bob_token}"})[0] == 403
    neuro.ok("share", job, "bob")
    assert _get(url, headers={"Authorization": f"Bearer {bob_token}"})[0] == 200
    assert _get(url, headers={"Authorization": "Bearer not-a-token"})[0] == 401
    assert _get(f"http://job-nope.jobs.localhost:{urlsplit(url).port}/")[0] == 404
    plain = neuro.ok("run", "-q", "--detach", neuro.image, "--", "sleep", "30").strip()
    status, _, body = _get(f"http://{plain}.jobs.localhost:{urlsplit(url).port}/")
    assert status == 404 and b"serves no HTTP port" in body
    neuro.ok("kill", plain)
    neuro.ok("kill", job)
    assert _get(url, headers={"Authorization": f"Bearer {token}"})[0] == 502

    # without auth: anyone
    port2 = _free_port()
    open_job, _ = http_server_job(
        neuro,
        port2,
        "open to all\n",
        tmp_path / "www2",
        extra=("--http-port", str(port2), "--no-http-auth"),
    )
    open_url = json.loads(neuro.ok("status", "--json", open_job))["http_url"]
    assert _wait_ok(open_url, {}) == b"open to all\n"
    neuro.ok("kill", open_job)


def test_a_keep_alive_connection_never_hands_the_job_our_credentials(
    neuro: Neuro, tmp_path: Path
) -> None:
    """A browser's session (`neuro job browse`) and a script's bearer token on one keep-alive
    connection of three requests: the job, an HTTP/1.1 server that echoes what it got, sees
    neither on any of them.  The session is a cookie for this job, not an API token."""
    import sys

    if neuro.runtime != "process":
        pytest.skip("the echo server is a host Python script (the busybox image has none)")
    port = _free_port()
    echo = tmp_path / "echo.py"
    echo.write_text(
        "import http.server, json\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    protocol_version = 'HTTP/1.1'\n"
        "    def do_GET(self):\n"
        "        body = json.dumps([self.client_address[1], self.headers.items()]).encode()\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        f"http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    job = neuro.ok(
        "run",
        "-q",
        "--detach",
        "--http-port",
        str(port),
        neuro.image,
        "--",
        sys.executable,
        str(echo),
    ).strip()
    url = json.loads(neuro.ok("status", "--json", job))["http_url"]
    token = neuro.ok("config", "show-token").strip()
    _wait_ok(url, {"Authorization": f"Bearer {token}"})
    r = neuro("job", "browse", "--no-browser", job)
    login = urlsplit(r.stderr.split("One-time login link (2 minutes): ")[1].strip())
    status, headers, _ = _get(url, path=f"{login.path}?{login.query}")
    assert status == 302 and "HttpOnly" in headers["set-cookie"]
    assert "Max-Age=43200" in headers["set-cookie"]  # 12 hours
    cookie = headers["set-cookie"].split(";")[0].split("=", 1)[1]
    api = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    try:  # the session opens this job's host, and nothing else
        urllib.request.urlopen(
            urllib.request.Request(f"{api}/jobs", headers={"Authorization": f"Bearer {cookie}"}),
            timeout=20,
        )
        raise AssertionError("a session cookie worked as an API token")
    except urllib.error.HTTPError as e:
        assert e.code == 401

    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=20)
    sent = [
        {"Authorization": f"Bearer {token}", "Cookie": "app=1"},
        {"Cookie": f"theme=dark; neuro_session={cookie}", "Authorization": f"Bearer {token}"},
        {"Cookie": f"neuro_session={cookie}", "X-App": "kept"},
    ]
    seen = []
    for headers in sent:
        conn.request("GET", "/", headers={"Host": urlsplit(url).netloc, **headers})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        seen.append(json.loads(body))
    conn.close()
    assert len({peer for peer, _ in seen}) == 1  # one connection to the job: keep-alive held
    text = json.dumps(seen)
    assert token not in text and cookie not in text and "neuro_session" not in text
    assert [h for h in seen[0][1] if h[0] in ("Cookie", "X-App")] == [["Cookie", "app=1"]]
    assert [h for h in seen[1][1] if h[0] in ("Cookie", "X-App")] == [["Cookie", "theme=dark"]]
    assert [h for h in seen[2][1] if h[0] in ("Cookie", "X-App")] == [["X-App", "kept"]]
    neuro.ok("kill", job)


def test_jobs_reach_each_other_at_their_internal_hostname(neuro: Neuro, tmp_path: Path) -> None:
    import sys

    if neuro.runtime == "slurm":
        pytest.skip("slurm runtime: jobs are at their node's address (no job names in DNS yet)")

    port = _free_port()
    server, _ = http_server_job(
        neuro, port, "from the other job\n", tmp_path / "www", extra=("-n", "websrv")
    )
    detail = json.loads(neuro.ok("status", "--json", server))
    host, named = detail["internal_hostname"], detail["internal_hostname_named"]
    user = json.loads(neuro.ok("config", "show", "--json"))["user"]
    # the host's jobs are all at localhost; a container is on its owner's network, by name too
    assert named == ("localhost" if neuro.runtime == "process" else f"websrv--{user}")
    assert host == ("localhost" if neuro.runtime == "process" else server)  # its id, by DNS
    st = neuro.ok("status", server)
    assert host and f"Internal hostname: {host}" in st and f"Internal hostname named: {named}" in st
    import time

    for name in (host, named):
        url = f"http://{name}:{port}/index.html"
        if neuro.runtime == "process":
            fetch = [
                sys.executable,
                "-c",
                f"import urllib.request as u; print(u.urlopen('{url}').read().decode(), end='')",
            ]
        else:
            fetch = ["wget", "-qO-", url]
        deadline = time.monotonic() + 20
        while True:
            r = neuro("run", neuro.image, "--", *fetch)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert r.returncode == 0 and r.stdout == "from the other job\n", (name, r.stdout, r.stderr)
    neuro.ok("kill", server)
    detail = json.loads(neuro.ok("status", "--json", server))
    assert detail["internal_hostname"] is None and detail["internal_hostname_named"] is None
