"""Bearer tokens: HS256 JWTs signed by the server, carrying ``identity`` (the user name).

A token is valid when its signature verifies, it has not expired (``exp``), its ``jti`` is
known and not revoked, and its user exists.  The signing secret lives in ``<data_dir>/secret``
(mode 0600).

The store is asked on every verification (one primary-key lookup, about as costly as the
signature check it saves): the admin commands (``neuro-server revoke-token``, ``remove-user``)
run in another process, and what they change must count at the next request.
"""

from __future__ import annotations

import math
import os
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import jwt

from .store import Store

ALGORITHM = "HS256"


class AuthError(Exception):
    pass


def load_secret(data_dir: Path) -> bytes:
    path = data_dir / "secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, value)
            os.fsync(fd)
        finally:
            os.close(fd)
        return value


class Claims(NamedTuple):
    """What a token says, once its signature verified."""

    identity: str
    jti: str
    exp: float | None  # seconds since the epoch; None: it never expires


class Authenticator:
    def __init__(self, store: Store, secret: bytes) -> None:
        self._store = store
        self._secret = secret
        self._claims: dict[str, Claims] = {}  # token -> its verified claims (not its validity)

    def issue(self, user: str, *, expires_in: float | None = None, note: str = "") -> str:
        """A new token of ``user``; ``expires_in`` seconds from now (None: never)."""
        if not self._store.user_exists(user):
            raise AuthError(f"no such user: {user}")
        jti = uuid.uuid4().hex
        issued = time.time()
        claims: dict[str, object] = {"identity": user, "jti": jti, "iat": int(issued)}
        expires_at = None
        if expires_in is not None:
            exp = math.ceil(issued + max(1.0, expires_in))  # (never before it was asked to)
            claims["exp"] = exp
            expires_at = datetime.fromtimestamp(exp, UTC)
        self._store.add_token(jti, user, expires_at=expires_at, note=note)
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> str:
        """Return the user name the token belongs to, or raise AuthError (its message says
        why: invalid, expired, revoked, unknown)."""
        claims = self.claims(token)
        if claims.exp is not None and claims.exp <= time.time():
            raise AuthError("token expired")
        record = self._store.token(claims.jti)
        if record is None or record.user != claims.identity:
            raise AuthError("unknown token (its user was removed, or it is not from this server)")
        if record.revoked:
            raise AuthError("token revoked")
        if record.expired():
            raise AuthError("token expired")
        return record.user

    def claims(self, token: str, *, verify_exp: bool = True) -> Claims:
        """The claims of a token signed by this server, or AuthError.  The signature check is
        remembered per token (a bounded cache); expiry and the store are not."""
        cached = self._claims.get(token)
        if cached is not None:
            return cached
        try:
            raw = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"verify_exp": verify_exp}
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        jti, identity, exp = raw.get("jti"), raw.get("identity"), raw.get("exp")
        if (
            not isinstance(jti, str)
            or not isinstance(identity, str)
            or (exp is not None and (isinstance(exp, bool) or not isinstance(exp, (int, float))))
        ):
            raise AuthError("invalid token")
        claims = Claims(identity, jti, None if exp is None else float(exp))
        if len(self._claims) > 10_000:
            self._claims.clear()
        self._claims[token] = claims
        return claims

    def forget(self) -> None:
        self._claims.clear()
