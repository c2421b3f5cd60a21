"""The wire format shared by the server (`cairn.server`) and its client (`cairn.client`): the
JSON error shape, the HTTP status of each error, and the framing of object batches.

Both sit above this module; it imports only `cairn.core` and `cairn.errors` (no web framework,
so the client loads it without FastAPI).

Errors: every error response has the body ``{"error": {"code": ..., "message": ...,
"detail": ...}}``; ``code`` is the `cairn.errors` class's ``code``, so the client raises the very
class the server raised, with the same message.

Object batches (``application/x-cairn-objects``): a sequence of frames, each a header line
``blake3:<64 hex> <length>\\n`` followed by exactly ``length`` bytes. Used both ways: uploads
(``POST /api/v1/objects``) and downloads (``POST /api/v1/objects/fetch``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from cairn.core.digest import is_digest
from cairn.errors import (
    AuthenticationError,
    CairnError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    ObjectNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    SourceFileError,
    StateError,
    StoreError,
    UnavailableError,
    ValidationError,
    error_class,
)

API_PREFIX = "/api/v1"
OBJECTS_TYPE = "application/x-cairn-objects"
MAX_HEADER = 128  # bytes of one frame header line, newline included


def status_for(exc: CairnError) -> int:
    """The HTTP status of an error, from the most specific class up."""
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, RateLimitedError):
        return 429
    if isinstance(exc, UnavailableError):
        return 503
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, InvalidInputError | IntegrityError | SourceFileError):
        return 400
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, StateError | ConflictError):
        return 409
    return 500


def error_detail(exc: CairnError) -> dict[str, Any]:
    """The attributes an error carries besides its message (digest, path, ...)."""
    detail: dict[str, Any] = {}
    for attr in ("digest", "path"):
        value = getattr(exc, attr, "")
        if value:
            detail[attr] = value
    extra = getattr(exc, "detail", None)
    if isinstance(extra, dict):
        detail.update(extra)
    return detail


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": detail}}


_BY_STATUS: dict[int, type[CairnError]] = {
    400: InvalidInputError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
    503: UnavailableError,
}


def exception_from(status: int, body: Any) -> CairnError:
    """The `cairn.errors` exception an error response stands for (the class the server raised,
    found by its code; by the status when the code is unknown)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        cls = _BY_STATUS.get(status, StoreError)
        return cls(f"the server answered HTTP {status} without an error message")
    code = str(error.get("code") or "")
    message = str(error.get("message") or f"the server answered HTTP {status}")
    detail = error.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    cls = error_class(code) or _BY_STATUS.get(status, StoreError)
    exc: CairnError
    if issubclass(cls, ObjectNotFoundError):
        exc = cls(message, str(detail.get("digest", "")))
    elif issubclass(cls, SourceFileError):
        exc = cls(message, str(detail.get("path", "")))
    elif issubclass(cls, IntegrityError):
        exc = cls(message, path=str(detail.get("path", "")), digest=str(detail.get("digest", "")))
    else:
        exc = cls(message)
    if detail:
        exc.detail = detail  # type: ignore[attr-defined]
    return exc


# --- object frames ----------------------------------------------------------------------------


def frame_header(digest: str, length: int) -> bytes:
    return f"{digest} {length}\n".encode("ascii")


STREAM_BLOCK = 1 << 20  # bytes per block of an object stream


def in_blocks(pieces: Iterable[bytes], block: int = STREAM_BLOCK) -> Iterator[bytes]:
    """The pieces of frames (headers, bodies) joined into blocks of about ``block`` bytes: a
    stream of small objects is then a write (on loopback a packet, on the other end an event,
    on a server a hop to a worker thread) per block, not two per object."""
    parts: list[bytes] = []
    size = 0
    for piece in pieces:
        parts.append(piece)
        size += len(piece)
        if size >= block:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


class FrameParser:
    """Cuts a stream of bytes into (digest, bytes) frames as the bytes arrive, holding at most
    one object in memory. Raises InvalidInputError for a malformed header and
    PayloadTooLargeError for an object larger than ``max_object``."""

    def __init__(self, max_object: int) -> None:
        self.max_object = max_object
        self._head = bytearray()
        self._digest = ""
        self._body: bytearray | None = None
        self._filled = 0
        self.frames = 0

    def feed(self, data: bytes | memoryview) -> Iterator[tuple[str, bytearray]]:
        view = memoryview(data)
        while view:
            if self._body is None:
                newline = bytes(view[: MAX_HEADER - len(self._head)]).find(b"\n")
                if newline < 0:
                    self._head += view[: MAX_HEADER - len(self._head)]
                    if len(self._head) >= MAX_HEADER:
                        raise InvalidInputError(
                            f"object frame {self.frames + 1}: header longer than {MAX_HEADER} "
                            "bytes; expected 'blake3:<64 hex> <length>\\n'"
                        )
                    return
                self._head += view[:newline]
                view = view[newline + 1 :]
                self._start(bytes(self._head))
                self._head.clear()
                if self._body is not None and len(self._body) == 0:
                    yield self._finish()
                continue
            take = min(len(view), len(self._body) - self._filled)
            self._body[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == len(self._body):
                yield self._finish()

    def _start(self, header: bytes) -> None:
        parts = header.split(b" ")
        digest = parts[0].decode("ascii", "replace") if parts else ""
        if len(parts) != 2 or not is_digest(digest) or not parts[1].isdigit():
            raise InvalidInputError(
                f"object frame {self.frames + 1}: malformed header {header[:80]!r}; expected "
                "'blake3:<64 hex> <length>\\n'"
            )
        length = int(parts[1])
        if length > self.max_object:
            raise PayloadTooLargeError(
                f"object {digest} is {length} bytes; this server accepts objects of at most "
                f"{self.max_object} bytes"
            )
        self._digest = digest
        self._body = bytearray(length)
        self._filled = 0

    def _finish(self) -> tuple[str, bytearray]:
        assert self._body is not None
        body, self._body = self._body, None
        self.frames += 1
        return self._digest, body

    def close(self) -> None:
        """Raise InvalidInputError when the stream ended inside a frame."""
        if self._body is not None or self._head:
            raise InvalidInputError(
                f"the object stream ended inside frame {self.frames + 1}: the upload was cut "
                "short; send it again"
            )


__all__ = [
    "API_PREFIX",
    "OBJECTS_TYPE",
    "STREAM_BLOCK",
    "FrameParser",
    "error_body",
    "exception_from",
    "frame_header",
    "in_blocks",
    "status_for",
]
