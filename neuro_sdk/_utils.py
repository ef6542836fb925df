"""Small helpers shared by the SDK modules."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")

USER_CLAIMS = ("identity", "https://platform.neuromation.io/user")


class AsyncStream(Generic[T]):
    """An async iterator that is also an async context manager.

    Both ``async for x in stream`` and ``async with stream as it: async for x in it`` work;
    the second form closes the underlying connection as soon as the block is left, even when
    the loop stopped early.
    """

    def __init__(self, gen: AsyncGenerator[T, None]) -> None:
        self._gen = gen

    def __aiter__(self) -> AsyncIterator[T]:
        return self._gen

    async def __anext__(self) -> T:
        return await self._gen.__anext__()

    async def __aenter__(self) -> AsyncIterator[T]:
        return self._gen

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._gen.aclose()

    async def aclose(self) -> None:
        await self._gen.aclose()


def decode_jwt_payload(token: str) -> dict[str, Any]:
    """The claims of a JWT, *without* verifying its signature; ValueError if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("the token is not a JWT")
    payload = parts[1]
    payload += "=" * (-len(payload) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError) as e:
        raise ValueError(f"the token is not a JWT: {e}") from e
    if not isinstance(claims, dict):
        raise ValueError("the token is not a JWT: claims are not an object")
    return claims


def username_from_token(token: str) -> str:
    """The user name carried by a platform JWT (claim ``identity``, else the legacy claim)."""
    claims = decode_jwt_payload(token)
    for claim in USER_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    raise ValueError("the token carries no user name claim")
