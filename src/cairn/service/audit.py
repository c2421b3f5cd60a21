"""Who is acting, for the audit log: the server sets the `Actor` of each request (user and
client address) around the request's handling; every registry write records it, with what
changed (before/after), in the same transaction as the change.

Nothing is audited while no actor is set (the embedded mode, scripts on one machine): the audit
log records changes made on a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Actor:
    """Who acts: the server creates one per request with the client's address and fills in the
    user once the request's key is checked."""

    user: str | None
    address: str | None


_actor: ContextVar[Actor | None] = ContextVar("cairn_audit_actor", default=None)


def current_actor() -> Actor | None:
    return _actor.get()


@contextmanager
def acting(actor: Actor) -> Iterator[Actor]:
    """Record changes made inside the block as ``actor``'s."""
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


__all__ = ["Actor", "acting", "current_actor"]
