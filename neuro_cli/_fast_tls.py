"""Defer loading the system's CA certificates until a TLS connection needs them.

aiohttp builds two SSL contexts when it is imported, and each loads the whole CA bundle: about
35 ms of every `neuro` command, although most commands talk plain HTTP to the local server and
never open a TLS connection.  ``install()`` makes ``load_default_certs`` and
``set_default_verify_paths`` record what they would load, per context, and ``wrap_bio`` /
``wrap_socket`` (where every TLS connection of asyncio or the socket module starts) load it
into that context first.  A context is therefore the same as before when its first handshake
starts; nothing is skipped, only moved.  The CLI's process only: the SDK changes no globals.
``install_before("aiohttp")`` does it when aiohttp is first imported, so that the commands
that never import aiohttp (plain requests: ``neuro_sdk._transport``) do not import ssl either.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import types
    from importlib.machinery import ModuleSpec

_installed = False


class _BeforeImport:
    """A meta path finder that finds nothing: it calls install() when *name* is first imported."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == self.name:
            sys.meta_path.remove(self)
            install()
        return None


def install_before(name: str) -> None:
    """install() just before the first import of module *name* (now, if it is imported)."""
    if name in sys.modules:
        install()
    else:
        sys.meta_path.insert(0, _BeforeImport(name))


def install() -> None:
    import ssl
    import weakref

    global _installed
    if _installed:
        return
    _installed = True
    cls = ssl.SSLContext
    pending: weakref.WeakKeyDictionary[ssl.SSLContext, list[Callable[[], None]]] = (
        weakref.WeakKeyDictionary()
    )
    load_default_certs = cls.load_default_certs
    set_default_verify_paths = cls.set_default_verify_paths
    wrap_bio = cls.wrap_bio
    wrap_socket = cls.wrap_socket

    def deferred_load_default_certs(
        self: ssl.SSLContext, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH
    ) -> None:
        pending.setdefault(self, []).append(lambda: load_default_certs(self, purpose))

    def deferred_set_default_verify_paths(self: ssl.SSLContext) -> None:
        pending.setdefault(self, []).append(lambda: set_default_verify_paths(self))

    def flush(ctx: ssl.SSLContext) -> None:
        # a deferred load_default_certs calls set_default_verify_paths, deferred again: loop
        while todo := pending.pop(ctx, None):
            for load in todo:
                load()

    def flushing_wrap_bio(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> Any:
        flush(self)
        return wrap_bio(self, *args, **kwargs)

    def flushing_wrap_socket(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> Any:
        flush(self)
        return wrap_socket(self, *args, **kwargs)

    cls.load_default_certs = deferred_load_default_certs  # type: ignore[method-assign]
    cls.set_default_verify_paths = deferred_set_default_verify_paths  # type: ignore[method-assign]
    cls.wrap_bio = flushing_wrap_bio  # type: ignore[method-assign]
    cls.wrap_socket = flushing_wrap_socket  # type: ignore[method-assign]
