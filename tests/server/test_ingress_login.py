"""HTTP exposure as the platform does it: a browser without credentials is sent to the login
page (the cluster config's ``auth_url``), which sends it back to the job's host, and only
there, with a job-scoped session; the platform's ``dat=<token>`` cookie lets its user in and
never reaches the job; with a certificate the ingress speaks HTTPS."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from neuro_server.auth import load_secret
from neuro_server.handlers import oauth
from neuro_server.handlers.common import STATE
from neuro_server.ingress import Ingress
from tests.server import test_ingress
from tests.server.test_ingress import Client, Setup, _ours_in, request

setup = test_ingress.setup  # the fixture: a fake runtime, jobs "web", "other" and "open"

BROWSER = (("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),)


@pytest.fixture
async def login(setup: Setup) -> AsyncIterator[str]:
    """The login page (what /oauth/authorize of the API serves), the ingress pointed at it."""
    app = web.Application()
    app[STATE] = SimpleNamespace(
        ingress=setup.ingress, auth=setup.ingress.state.auth, store=setup.store
    )
    app.router.add_get("/oauth/authorize", oauth.authorize)
    app.router.add_post("/oauth/authorize", oauth.authorize)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    setup.ingress.auth_url = str(server.make_url("/oauth/authorize"))
    try:
        yield setup.ingress.auth_url
    finally:
        await server.close()


async def _ask(
    setup: Setup, host: str, path: str, headers: tuple[tuple[str, str], ...] = ()
) -> tuple[int, dict[str, list[str]], bytes]:
    c = await setup.client()
    c.send(request(host, path, headers))
    answer = await c.response()
    await c.close()
    return answer


async def test_a_browser_logs_in_through_the_login_page_and_lands_where_it_was_going(
    setup: Setup, login: str
) -> None:
    host = setup.host("web")
    status, headers, _ = await _ask(setup, host, "/echo?x=1", BROWSER)
    assert status == 302
    to = urlsplit(headers["location"][0])
    assert f"{to.scheme}://{to.netloc}{to.path}" == login
    back = parse_qs(to.query)["redirect_uri"][0]
    assert back == f"http://{host}/echo?x=1"
    # curl, a script, a bad Bearer: still a 401, never a page to log in on
    assert (await _ask(setup, host, "/echo"))[0] == 401
    bad = (*BROWSER, ("Authorization", "Bearer nonsense"))
    assert (await _ask(setup, host, "/echo", bad))[0] == 401
    async with aiohttp.ClientSession() as http:
        async with http.get(login, params={"redirect_uri": back}) as r:
            assert r.status == 200 and 'name="token"' in await r.text()
        form = {"redirect_uri": back, "token": setup.tokens["alice"]}
        async with http.post(login, data=form, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
            link = urlsplit(r.headers["Location"])
    assert link.netloc == host and setup.tokens["alice"] not in link.geturl()
    status, headers, _ = await _ask(setup, host, f"{link.path}?{link.query}")
    assert status == 302 and headers["location"] == ["/echo?x=1"]
    cookie = headers["set-cookie"][0].split(";")[0]
    status, _, body = await _ask(setup, host, "/echo?x=1", (("Cookie", cookie),))
    assert status == 200 and json.loads(body)["path"] == "/echo?x=1"
    assert _ours_in(setup.seen[-1], setup, cookie.split("=", 1)[1]) == []


@pytest.mark.parametrize(
    "target",
    [
        "http://evil.example/",
        "http://{job}.jobs.localhost.evil.example:{port}/",
        "http://{job}.jobs.localhost:1/",
        "https://{job}.jobs.localhost:{port}/",
        "http://evil.example@{job}.jobs.localhost:{port}/",
        "http://job-{unknown}.jobs.localhost:{port}/",
        "//{job}.jobs.localhost:{port}/",
        "javascript:alert(1)",
        "",
    ],
    ids=[
        "other-host",
        "suffix",
        "other-port",
        "scheme",
        "userinfo",
        "no-job",
        "relative",
        "js",
        "none",
    ],
)
async def test_the_login_page_sends_browsers_only_to_this_servers_job_hosts(
    setup: Setup, login: str, target: str
) -> None:
    uri = target.format(job=setup.jobs["web"], port=setup.ingress.port, unknown=uuid.uuid4())
    async with aiohttp.ClientSession() as http:
        async with http.get(login, params={"redirect_uri": uri}, allow_redirects=False) as r:
            assert r.status == 400, await r.text()
            assert "redirect_uri" in (await r.json())["error"]
        form = {"redirect_uri": uri, "token": setup.tokens["alice"]}
        async with http.post(login, data=form, allow_redirects=False) as r:
            assert r.status == 400 and "Location" not in r.headers


async def test_the_login_page_refuses_bad_tokens_and_users_the_job_is_not_shared_with(
    setup: Setup, login: str
) -> None:
    back = f"http://{setup.host('web')}/"
    forged = jwt.encode(
        {"identity": "alice", "jti": "x"},
        "not-the-secret-of-this-server-0123456789",
        algorithm="HS256",
    )
    async with aiohttp.ClientSession() as http:
        for token, want in ((forged, 401), ("", 401), (setup.tokens["bob"], 403)):
            form = {"redirect_uri": back, "token": token}
            async with http.post(login, data=form, allow_redirects=False) as r:
                assert r.status == want and "Location" not in r.headers, token
        setup.store.share(setup.jobs["web"], "bob", "read")
        form = {"redirect_uri": back, "token": setup.tokens["bob"]}
        async with http.post(login, data=form, allow_redirects=False) as r:
            assert r.status == 303


async def test_the_session_link_goes_on_only_to_a_path_of_the_same_host(setup: Setup) -> None:
    job = setup.store.get_job(setup.jobs["web"])
    assert job is not None
    for then, want in (("//evil.example/x", "/"), ("/\\evil.example", "/%5Cevil.example")):
        link = urlsplit(setup.ingress.login_url(job, "alice"))
        query = f"{link.query}&{urlencode({'next': then})}"
        status, headers, _ = await _ask(setup, setup.host("web"), f"{link.path}?{query}")
        assert status == 302 and headers["location"] == [want], then
    link = urlsplit(setup.ingress.login_url(job, "alice", "/a b\r\nSet-Cookie: x=1"))
    status, headers, _ = await _ask(setup, setup.host("web"), f"{link.path}?{link.query}")
    assert headers["location"] == ["/a%20b%0D%0ASet-Cookie:%20x=1"]
    assert len(headers["set-cookie"]) == 1


async def test_the_platforms_dat_cookie_lets_its_user_in_and_is_stripped(
    setup: Setup, login: str
) -> None:
    alice, bob = setup.tokens["alice"], setup.tokens["bob"]
    secret = load_secret(setup.ingress.state.config.data_dir)
    expired = jwt.encode(
        {"identity": "alice", "jti": uuid.uuid4().hex, "exp": int(time.time()) - 60},
        secret,
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"identity": "alice", "jti": "x"},
        "not-the-secret-of-this-server-0123456789",
        algorithm="HS256",
    )
    host = setup.host("web")
    cases = {
        "valid": (f"theme=dark; dat={alice}; app=2", 200),
        "forged": (f"dat={forged}", 401),
        "expired": (f"dat={expired}", 401),
        "a session as dat": (f"dat={await setup.login('web')}", 401),
        "unshared bob's": (f"dat={bob}", 403),
    }
    for what, (cookie, want) in cases.items():
        status, _, body = await _ask(setup, host, "/echo", (("Cookie", cookie),))
        assert status == want, (what, body)
        if want == 401:  # a browser with a bad cookie goes to the login page instead
            status, headers, _ = await _ask(setup, host, "/", (*BROWSER, ("Cookie", cookie)))
            assert status == 302 and headers["location"][0].startswith(login), what
    assert len(setup.seen) == 1
    assert ["Cookie", "theme=dark; app=2"] in setup.seen[0]["headers"]
    assert _ours_in(setup.seen[0], setup) == [] and "dat=" not in json.dumps(setup.seen[0])
    setup.store.share(setup.jobs["web"], "bob", "read")
    assert (await _ask(setup, host, "/echo", (("Cookie", f"dat={bob}"),)))[0] == 200


def _certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "jobs.pem", tmp / "jobs.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=jobs.localhost",
            "-addext",
            "subjectAltName=DNS:*.jobs.localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_with_a_certificate_the_ingress_serves_https(setup: Setup, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    tls = Ingress(
        setup.ingress.state, "127.0.0.1", 0, "jobs.localhost", ssl=server_side, auth_url="http://x/"
    )
    await tls.start()
    try:
        job = setup.store.get_job(setup.jobs["web"])
        assert job is not None
        url = tls.url(job)
        assert url == f"https://{job.id}.jobs.localhost:{tls.port}/"
        trust = ssl.create_default_context(cafile=str(cert))
        resolver = aiohttp.resolver.ThreadedResolver()
        conn = aiohttp.TCPConnector(ssl=trust, resolver=_Loopback(resolver))
        async with aiohttp.ClientSession(connector=conn) as http:
            link = tls.login_url(job, "alice", "/echo")
            async with http.get(link) as r:
                assert r.status == 200 and (await r.json())["path"] == "/echo"
                assert "Secure" in r.history[0].headers["Set-Cookie"]
            async with http.get(f"{url}echo", headers=dict(BROWSER)) as r:
                assert r.status == 200  # (the session cookie, on this host)
        plain = Client(*await asyncio.open_connection("127.0.0.1", tls.port))
        setup.clients.append(plain)
        plain.send(request(f"{job.id}.jobs.localhost:{tls.port}"))
        assert not (await plain.reader.read()).startswith(b"HTTP/")  # no plain HTTP there
    finally:
        await tls.close()


class _Loopback(aiohttp.abc.AbstractResolver):
    """Every *.jobs.localhost name at 127.0.0.1 (as browsers resolve them)."""

    def __init__(self, inner: aiohttp.abc.AbstractResolver) -> None:
        self.inner = inner

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, object]]:  # type: ignore[override]
        if host.endswith(".jobs.localhost"):
            host = "127.0.0.1"
        return await self.inner.resolve(host, port, family)  # type: ignore[return-value]

    async def close(self) -> None:
        await self.inner.close()
