"""HTTP exposure as the platform does it, through a real server on each runtime: a browser
without credentials is sent to the cluster config's ``auth_url``, whose login page sends it
back to the job with a session; the platform's ``dat=<token>`` cookie opens the job and never
reaches it; a certificate in server.toml makes the ingress (and ``http_url``) HTTPS."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.conftest import Neuro
from tests.e2e.conftest import http_server_job, server_toml

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _To127(http.client.HTTPSConnection):
    """HTTPS to a job host's name (SNI, certificate check) at 127.0.0.1."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def get(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET a job URL (its host resolved to 127.0.0.1, as browsers do for *.localhost),
    retrying while the job's server is not up yet (502)."""
    import time

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + 20
    while True:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = _To127(
                parts.hostname or "", parts.port, context=context, timeout=20
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=20)
        conn.request("GET", path or "/", headers={"Host": parts.netloc, **(headers or {})})
        r = conn.getresponse()
        body = r.read()
        conn.close()
        if r.status != 502 or time.monotonic() > deadline:
            return r.status, {k.lower(): v for k, v in r.getheaders()}, body
        time.sleep(0.2)


def _unauthenticated_config(neuro: Neuro) -> dict[str, str]:
    api = json.loads((neuro.server_dir / "server.json").read_text())["url"]
    with urllib.request.urlopen(f"{api}/config", timeout=20) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def test_a_browser_goes_to_the_login_url_and_comes_back_logged_in(
    neuro: Neuro, tmp_path: Path
) -> None:
    port = _free_port()
    job, _ = http_server_job(
        neuro, port, "behind the login\n", tmp_path / "www", extra=("--http-port", str(port))
    )
    url = json.loads(neuro.ok("status", "--json", job))["http_url"]
    token = neuro.ok("config", "show-token").strip()
    assert get(url + "index.html", {"Authorization": f"Bearer {token}"})[2] == (
        b"behind the login\n"
    )
    auth_url = _unauthenticated_config(neuro)["auth_url"]

    status, headers, _ = get(url + "index.html", BROWSER)
    assert status == 302
    assert headers["location"].split("?")[0] == auth_url
    back = parse_qs(urlsplit(headers["location"]).query)["redirect_uri"][0]
    assert back == url + "index.html"
    assert get(url + "index.html")[0] == 401  # not a browser: told, not sent

    with urllib.request.urlopen(headers["location"], timeout=20) as r:
        assert r.status == 200 and b'name="token"' in r.read()
    form = urllib.parse.urlencode({"redirect_uri": back, "token": token}).encode()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kw: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(urllib.request.Request(auth_url, data=form), timeout=20)
        raise AssertionError("the login page did not redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 303
        link = e.headers["Location"]
    assert urlsplit(link).netloc == urlsplit(url).netloc and token not in link
    status, headers, _ = get(link)
    assert status == 302 and headers["location"] == "/index.html"
    cookie = headers["set-cookie"].split(";")[0]
    assert get(url + "index.html", {"Cookie": cookie})[2] == b"behind the login\n"

    # a login page asked to send the browser elsewhere: no open redirect
    for target in ("http://evil.example/", f"http://{urlsplit(url).hostname}.evil.example/"):
        bad = urllib.parse.urlencode({"redirect_uri": target})
        try:
            urllib.request.urlopen(f"{auth_url}?{bad}", timeout=20)
            raise AssertionError(f"the login page accepted {target}")
        except urllib.error.HTTPError as e:
            assert e.code == 400

    # the platform's cookie: the owner's token opens the job; another user's is refused
    assert get(url + "index.html", {"Cookie": f"dat={token}"})[2] == b"behind the login\n"
    assert get(url + "index.html", {**BROWSER, "Cookie": "dat=forged"})[0] == 302
    bob = subprocess.run(
        ["neuro-server", "add-user", "bob", "--data-dir", str(neuro.server_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=neuro.env,
    ).stdout.strip()
    assert get(url + "index.html", {"Cookie": f"dat={bob}"})[0] == 403
    neuro.ok("kill", job)


def _certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "jobs.pem", tmp / "jobs.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=jobs.localhost", "-addext", "subjectAltName=DNS:*.jobs.localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_with_a_certificate_job_urls_are_https(neuro: Neuro, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    neuro.write_server_config(
        server_toml(neuro.runtime, server=f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    )
    port = _free_port()
    job, _ = http_server_job(
        neuro, port, "over tls\n", tmp_path / "www", extra=("--http-port", str(port))
    )
    url = json.loads(neuro.ok("status", "--json", job))["http_url"]
    assert url == f"https://{job}.jobs.localhost:{urlsplit(url).port}/"
    r = neuro("job", "browse", "--no-browser", job)
    assert r.returncode == 0 and r.stdout.strip() == url
    login = r.stderr.split("One-time login link (2 minutes): ")[1].strip()
    assert login.startswith(url)
    trust = ssl.create_default_context(cafile=str(cert))
    status, headers, _ = get(login, context=trust)
    assert status == 302 and "Secure" in headers["set-cookie"]
    cookie = headers["set-cookie"].split(";")[0]
    assert get(url + "index.html", {"Cookie": cookie}, trust)[2] == b"over tls\n"
    neuro.ok("kill", job)
