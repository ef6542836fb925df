"""The ingress's browser sessions: what ``neuro job browse`` logs a browser in with.

Not an API token: everything a browser sends to a job's host reaches (through the ingress) a
server that the job's owner wrote, so a credential there must be worth nothing anywhere else.
A session cookie is ``PAYLOAD.MAC``: PAYLOAD the URL-safe base64 of ``{"u": USER, "j": JOB_ID,
"e": EXPIRY}`` (seconds since the epoch), MAC an HMAC-SHA256 of it under a key derived from the
server secret (so sessions outlive a restart, and nobody without the secret can make one).  It
is valid only on its job's host, until its expiry, and while its user exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from urllib.parse import quote

import jwt

from .store import Store

COOKIE = "neuro_session"  # ours: a session (below)
PLATFORM_COOKIE = "dat"  # the Neu.ro/Apolo platform's: an API token
SESSION_TTL = 12 * 3600.0  # seconds a browser stays logged in to a job
_PURPOSE = b"neuro ingress session v1"


class SessionError(Exception):
    """A session cookie that does not log anyone in: forged, expired, for another job, or of
    a user who is gone.  The message says which."""


def local_path(target: str) -> str:
    """``target`` as a path on the same host, safe in a Location header: percent-encoded
    where it is not printable ASCII, and "/" unless it begins with a single "/" (``//host``
    or ``/\\host`` is another host to a browser: no open redirect)."""
    path = quote(target, safe="/?&=%:@!$'()*+,;~-._#")
    return path if path.startswith("/") and not path.startswith("//") else "/"


def cookies(fields: list[tuple[str, str]], cookie: str) -> list[str]:
    """The values of cookie ``cookie`` in a request's fields."""
    return [
        value.strip()
        for name, header in fields
        if name.lower() == "cookie"
        for key, _, value in (p.partition("=") for p in header.split(";"))
        if key.strip() == cookie
    ]


def without_our_cookies(header: str) -> str:
    """A Cookie header without ours (what a job must not see)."""
    parts = [p.strip() for p in header.split(";")]
    return "; ".join(
        p for p in parts if p and p.partition("=")[0].strip() not in (COOKIE, PLATFORM_COOKIE)
    )


def sets_our_cookie(name: str, value: str) -> bool:
    """A job's Set-Cookie of one of ours: dropped (no session fixation across jobs)."""
    return name.lower() == "set-cookie" and value.partition("=")[0].strip() in (
        COOKIE,
        PLATFORM_COOKIE,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and checks session cookies; tells our credentials from anyone else's."""

    def __init__(self, store: Store, secret: bytes, ttl: float = SESSION_TTL) -> None:
        self._store = store
        self._secret = secret  # the API tokens' signing key: to recognise them, not to issue
        self._key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()
        self.ttl = ttl

    def issue(self, user: str, job_id: str, *, now: float | None = None) -> str:
        expiry = int((time.time() if now is None else now) + self.ttl)
        payload = _b64(
            json.dumps({"u": user, "j": job_id, "e": expiry}, separators=(",", ":")).encode()
        )
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, cookie: str, job_id: str) -> str:
        """The user that ``cookie`` logs in to job ``job_id``, or SessionError."""
        claims = self._claims(cookie)
        if claims is None:
            raise SessionError("not a session of this server")
        user, job, expiry = claims
        if job != job_id:
            raise SessionError(f"a session for job {job}, not {job_id}")
        if expiry <= time.time():
            raise SessionError("the session expired")
        if not self._store.user_exists(user):
            raise SessionError(f"no such user: {user}")
        return user

    def is_ours(self, credential: str) -> bool:
        """Whether this server made ``credential`` (an API token or a session cookie), valid
        or not any more: what a job must never be handed."""
        if self._claims(credential) is not None:
            return True
        try:
            jwt.api_jws.decode(credential, self._secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            return False
        return True

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()

    def _claims(self, cookie: str) -> tuple[str, str, float] | None:
        payload, sep, mac = cookie.partition(".")
        if not sep or not payload.isascii() or not mac.isascii():
            return None
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(payload)):
                return None
            claims = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            return None
        user, job, expiry = (
            (claims.get(k) for k in ("u", "j", "e"))
            if isinstance(claims, dict)
            else (None, None, None)
        )
        if (
            not isinstance(user, str)
            or not isinstance(job, str)
            or isinstance(expiry, bool)
            or not isinstance(expiry, (int, float))
        ):
            return None
        return user, job, float(expiry)
