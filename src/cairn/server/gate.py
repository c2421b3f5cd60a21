"""What every request passes before any route runs: size limits, authentication before a byte
of the body is read, rate limits on failed keys and sign-ins, and the security headers.

`Gate` is an ASGI middleware. For an API request (``/api/v1/...``, except the few public
routes) it looks the key up first and answers 401 (or 429) without reading the body, so an
unauthenticated client cannot make the server buffer anything; the caller it found is handed to
the route (`request.state.principal`). A dashboard form post needs a live sign-in session the
same way. Each kind of request has a size limit (`limit_for`), checked against Content-Length
before reading and counted while a chunked body arrives: 413 with the API's error shape.

Failed attempts (an unknown or revoked API key, a wrong key on the sign-in form) are counted per
client address in this process (`Attempts`). Past the limit, a bad API key from that address
gets 429 with ``Retry-After`` (instead of 401) until the window frees, while valid keys keep
working (people behind one address with someone who mistyped a key are not locked out); the
sign-in form refuses every attempt from that address, valid or not, until the window frees.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairn.core.names import is_project_name
from cairn.errors import AuthenticationError, CairnError, PayloadTooLargeError
from cairn.wire import API_PREFIX, error_body

if TYPE_CHECKING:
    from cairn.server.deps import ServerSettings, Services

log = logging.getLogger("cairn.server")

# API routes anyone may call (no key): liveness, readiness, the API's description
PUBLIC = frozenset(
    f"{API_PREFIX}/{p}" for p in ("health", "ready", "openapi.json", "docs", "docs/oauth2-redirect")
)
SIGN_IN = "/login"
SESSION_COOKIE = "cairn_session"

# The headers every response carries. The dashboard's pages load their script and styles from
# /static only; nothing may frame them; links to other sites carry no Referer.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# the interactive API docs load Swagger UI from a CDN: they get the framing rules only
DOCS_CSP = "frame-ancestors 'none'"
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]


def json_error(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A response with the API's one error shape."""
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=extra)


class Attempts:
    """Failed attempts per client address in a sliding window: after ``limit`` failures
    within ``window`` seconds the address is refused until the oldest one leaves the window."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, who: str, now: float) -> deque[float] | None:
        times = self._failures.get(who)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[who]
            return None
        return times

    def retry_after(self, who: str) -> int | None:
        """Seconds until ``who`` may try again, or None when they may now."""
        if self.limit <= 0:
            return None
        with self._lock:
            now = self.clock()
            times = self._recent(who, now)
            if times is None or len(times) < self.limit:
                return None
            return max(1, math.ceil(times[0] + self.window - now))

    def fail(self, who: str) -> None:
        with self._lock:
            now = self.clock()
            if len(self._failures) > 100_000:  # a flood of addresses: forget the quiet ones
                for key in list(self._failures):
                    self._recent(key, now)
            times = self._recent(who, now) or self._failures.setdefault(who, deque())
            times.append(now)
            while len(times) > max(self.limit, 1):
                times.popleft()


def too_many(retry: int, what: str) -> JSONResponse:
    return json_error(
        429,
        "rate_limited",
        f"too many failed {what} from this address; try again in {retry} s",
        {"retry_after": retry},
        headers={"Retry-After": str(retry)},
    )


@dataclass(frozen=True)
class Limits:
    """The largest body each kind of request may send (bytes)."""

    json: int
    batch: int
    object: int
    form: int
    sign_in: int = 16 << 10


def limit_for(limits: Limits, method: str, path: str) -> int:
    objects = f"{API_PREFIX}/objects"
    if method == "POST" and path == objects:
        return limits.batch
    if method == "PUT" and path.startswith(objects + "/"):
        return limits.object
    if path.startswith(API_PREFIX + "/") or path == API_PREFIX:
        return limits.json
    if path == SIGN_IN:
        return limits.sign_in
    return limits.form


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def api_key(scope: Scope) -> str | None:
    """The key a request carries: ``Authorization: Bearer ...`` or ``X-Cairn-Key``."""
    auth = _header(scope, b"authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return _header(scope, b"x-cairn-key") or None


def cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value or None
    return None


_PROJECT_PATH = API_PREFIX + "/projects/"


def _project_of(path: str) -> str | None:
    """The project an API path names (``/api/v1/projects/NAME/...``), whose role the key
    lookup then reads too; None for other paths, or a name that is not one."""
    if not path.startswith(_PROJECT_PATH):
        return None
    name = path[len(_PROJECT_PATH) :].split("/", 1)[0]
    return name if is_project_name(name) else None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Gate:
    """The middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: ServerSettings, services: Services) -> None:
        self.app = app
        self.services = services
        self.limits = Limits(
            json=settings.max_json_bytes,
            batch=settings.max_batch_bytes,
            object=settings.max_object_bytes,
            form=settings.max_form_bytes,
        )
        self.bad_keys = Attempts(settings.auth_failures, settings.auth_window)
        services.sign_ins = Attempts(settings.auth_failures, settings.auth_window)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        send = _with_headers(send, path)
        limit = limit_for(self.limits, scope["method"], path)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await json_error(400, "invalid_input", "invalid Content-Length header")(
                    scope, receive, send
                )
                return
            if int(declared) > limit:
                await _too_large(int(declared), limit)(scope, receive, send)
                return
        refusal = await self._admit(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        seen = 0
        over = False  # the body passed the limit: the app was told the client left
        started = False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a body cut short: 413 is sent instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await _too_large(seen, limit, counted=True)(scope, receive, send)

    async def _admit(self, scope: Scope) -> Response | None:
        """None to let the request in (with ``state.principal`` set for the API), else the
        response that refuses it; nothing of the body has been read."""
        path: str = scope["path"]
        if path.startswith(API_PREFIX + "/") and path not in PUBLIC:
            return await self._admit_api(scope)
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE") and path != SIGN_IN:
            return await self._admit_form(scope)
        return None

    async def _admit_api(self, scope: Scope) -> Response | None:
        token = api_key(scope)
        who = client_address(scope)
        accounts = self.services.accounts
        try:
            principal = await anyio.to_thread.run_sync(
                accounts.authenticate, token, _project_of(scope["path"])
            )
        except AuthenticationError as exc:
            if not token:
                return json_error(401, exc.code, str(exc))
            retry = self.bad_keys.retry_after(who)
            if retry is not None:
                return too_many(retry, "API keys")
            self.bad_keys.fail(who)
            return json_error(401, exc.code, str(exc))
        except CairnError:
            return None  # the route meets the same failure and reports it
        scope.setdefault("state", {})["principal"] = principal
        return None

    async def _admit_form(self, scope: Scope) -> Response | None:
        """A dashboard form post needs a live session (on a server with users)."""
        sessions = self.services.sessions
        token = cookie(scope, SESSION_COOKIE)
        try:
            viewer = await anyio.to_thread.run_sync(sessions.user, token)
            if viewer is not None or not await anyio.to_thread.run_sync(
                self.services.accounts.has_users
            ):
                return None
        except CairnError:
            return None
        return RedirectResponse(SIGN_IN, status_code=303)


def _too_large(size: int, limit: int, *, counted: bool = False) -> JSONResponse:
    exc = PayloadTooLargeError(
        f"the request body is larger than {limit} bytes, the most this route accepts"
        if counted
        else f"the request body is {size} bytes; this route accepts at most {limit} bytes"
    )
    return json_error(413, exc.code, str(exc), {"limit": limit})


def _with_headers(send: Send, path: str) -> Send:
    csp = DOCS_CSP if path.startswith(f"{API_PREFIX}/docs") else CSP

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            extra = [*SECURITY_HEADERS, (b"content-security-policy", csp.encode())]
            headers += [(k, v) for k, v in extra if k not in present]
            message = {**message, "headers": headers}
        await send(message)

    return sending


__all__ = [
    "CSP",
    "PUBLIC",
    "SESSION_COOKIE",
    "Attempts",
    "Gate",
    "Limits",
    "api_key",
    "json_error",
    "limit_for",
    "too_many",
]
