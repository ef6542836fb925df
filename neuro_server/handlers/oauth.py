"""``/oauth/authorize``, the ``auth_url`` of the cluster config: the login page that the
ingress sends a browser to when it opens a job's URL without credentials
(``?redirect_uri=JOB_URL``).  The visitor pastes an API token of theirs (``neuro config
show-token``); the page checks it as the API would, checks that its user may see the job (the
owner, or a share), and sends the browser on to the job's host with a one-time code that
ends in the job-scoped session cookie (ingress.py).  It sends browsers only to the job hosts
of this server's ingress (``redirect_uri`` anything else: 400), never the token itself.

The official client's OAuth login (``apolo login`` with ``redirect_uri`` on 127.0.0.1) is not
served: it logs in with a token (``apolo config login-with-token``).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from aiohttp import web

from ..auth import AuthError
from .common import app_state, fail

if TYPE_CHECKING:
    from ..store import JobRecord

MAX_FORM = 16 * 1024

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Log in to {job}</title></head>
<body><h1>Log in to job {job}</h1>
<p>{message}</p>
<form method="post" action="/oauth/authorize">
<input type="hidden" name="redirect_uri" value="{redirect_uri}">
<label>API token (<code>neuro config show-token</code>):
<input type="password" name="token" autocomplete="off" autofocus></label>
<button type="submit">Log in</button>
</form></body></html>
"""


async def authorize(request: web.Request) -> web.StreamResponse:
    st = app_state(request)
    token = ""
    if request.method == "POST":
        if (request.content_length or 0) > MAX_FORM:
            fail(web.HTTPRequestEntityTooLarge, "the login form is too large")
        form = await request.post()
        redirect_uri, token = str(form.get("redirect_uri", "")), str(form.get("token", ""))
    else:
        redirect_uri = request.query.get("redirect_uri", "")
    found = st.ingress.job_at(redirect_uri) if st.ingress is not None and redirect_uri else None
    if found is None:
        fail(
            web.HTTPBadRequest,
            "redirect_uri must be the URL of a job's HTTP port on this server "
            "(open the job's URL to log in to it)",
        )
    job, then = found
    if request.method != "POST":
        return _page(job, redirect_uri, "Paste an API token to open this job in your browser.")
    try:
        user = st.auth.verify(token.strip())
    except AuthError as e:
        return _page(job, redirect_uri, f"That token does not log in: {e}.", status=401)
    if job.owner != user and st.store.share_action(job.id, user) is None:
        return _page(job, redirect_uri, f"{user} has no access to job {job.id}.", status=403)
    raise web.HTTPSeeOther(st.ingress.login_url(job, user, then))


def _page(job: JobRecord, redirect_uri: str, message: str, status: int = 200) -> web.Response:
    text = _PAGE.format(
        job=html.escape(job.name or job.id),
        message=html.escape(message),
        redirect_uri=html.escape(redirect_uri, quote=True),
    )
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )
