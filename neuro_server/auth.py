"""Bearer tokens: HS256 JWTs signed by the server, carrying ``identity`` (the user name).

A token is valid when its signature verifies, its ``jti`` is known and not revoked, and its
user exists.  The signing secret lives in ``<data_dir>/secret`` (mode 0600).
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from pathlib import Path

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


class Authenticator:
    def __init__(self, store: Store, secret: bytes) -> None:
        self._store = store
        self._secret = secret
        self._cache: dict[str, str] = {}

    def issue(self, user: str) -> str:
        if not self._store.user_exists(user):
            raise AuthError(f"no such user: {user}")
        jti = uuid.uuid4().hex
        self._store.add_token(jti, user)
        return jwt.encode(
            {"identity": user, "jti": jti, "iat": int(time.time())},
            self._secret,
            algorithm=ALGORITHM,
        )

    def verify(self, token: str) -> str:
        """Return the user name the token belongs to, or raise AuthError."""
        user = self._cache.get(token)
        if user is not None:
            return user
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM])
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        jti = claims.get("jti")
        identity = claims.get("identity")
        if not isinstance(jti, str) or not isinstance(identity, str):
            raise AuthError("invalid token")
        user = self._store.token_user(jti)
        if user is None or user != identity:
            raise AuthError("token revoked or unknown")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = user
        return user

    def forget(self) -> None:
        self._cache.clear()
