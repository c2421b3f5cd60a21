"""One HTTP connection pool to a Cairn server: the API key, retries of idempotent requests,
and error responses turned back into the `cairn.errors` exception the server raised.

Retries: a request that is safe to send again (GET, the reads sent as POST, uploads the server
deduplicates; the caller says ``retry=True``) is retried when the server cannot be reached, the
connection drops, or the server answers 502, 503 or 504, for up to ``CAIRN_RETRY_SECONDS``
(default `RETRY_SECONDS`, 60 s: enough to ride out a server restart or a proxy's failover).
The waits grow exponentially from 0.1 s up to 5 s, each a random fraction of that ("full
jitter"), so many clients do not come back at the same instant; a ``Retry-After`` the server
sends is honoured within the same budget."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from cairn import config
from cairn._version import __version__
from cairn.errors import CairnError, StoreError
from cairn.wire import API_PREFIX, exception_from

RETRY_SECONDS = 60.0  # how long an idempotent request is retried (CAIRN_RETRY_SECONDS)
BACKOFF_FIRST = 0.1  # seconds: the first wait's ceiling, doubled after each attempt ...
BACKOFF_MAX = 5.0  # ... up to this
_RETRY_STATUS = frozenset({502, 503, 504})


def retry_seconds() -> float:
    return config.retry_seconds(RETRY_SECONDS)


class Backoff:
    """The waits between attempts of one request: exponential, full jitter, within a budget."""

    def __init__(self, budget: float | None = None) -> None:
        self.deadline = time.monotonic() + (retry_seconds() if budget is None else budget)
        self.attempt = 0

    def wait(self, hint: float | None = None) -> bool:
        """Sleep before the next attempt; False (no sleep) when the budget is spent."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return False
        ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2**self.attempt)
        self.attempt += 1
        pause = random.uniform(0, ceiling)
        if hint is not None:
            pause = max(pause, min(hint, BACKOFF_MAX))
        time.sleep(min(pause, left))
        return True


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


Body = bytes | Callable[[], Iterable[bytes]]


def _error(response: httpx.Response) -> CairnError:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return exception_from(response.status_code, body)


class Http:
    def __init__(self, url: str, api_key: str | None, *, timeout: float = 300.0) -> None:
        self.origin = url.rstrip("/")
        if self.origin.endswith(API_PREFIX):
            self.origin = self.origin[: -len(API_PREFIX)]
        if not self.origin.startswith(("http://", "https://")):
            raise StoreError(
                f"CAIRN_URL {url!r} is not an http:// or https:// URL; set it to the server's "
                "address, e.g. http://cairn.example.com:8000"
            )
        headers = {"User-Agent": f"cairn/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=15.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def url(self, path: str) -> str:
        """A path under the API (``/runs/x``), or a link the server gave (``/api/v1/...``)."""
        if path.startswith(API_PREFIX + "/"):
            return self.origin + path
        return self.origin + API_PREFIX + path

    def _unreachable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"cannot reach the Cairn server at {self.origin}: {exc}. Check CAIRN_URL and that "
            "the server is running."
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: Body | None = None,
        headers: dict[str, str] | None = None,
        retry: bool | None = None,
    ) -> httpx.Response:
        """Send a request; raise the server's error as its `cairn.errors` class. GET and
        requests marked ``retry`` are retried on network errors and 502/503/504."""
        retry = method == "GET" if retry is None else retry
        backoff = Backoff() if retry else None
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        while True:
            body = content() if callable(content) else content
            try:
                response = self.client.request(
                    method,
                    self.url(path),
                    json=json,
                    params=clean or None,
                    content=body,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                if backoff is not None and backoff.wait():
                    continue
                raise self._unreachable(exc) from exc
            if (
                response.status_code in _RETRY_STATUS
                and backoff is not None
                and backoff.wait(_retry_after(response))
            ):
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @contextmanager
    def stream(
        self, method: str, path: str, *, json: Any = None, retry: bool = True
    ) -> Iterator[httpx.Response]:
        """A streamed response (its body read as it arrives). Reads are retried as
        `request` retries them until the response starts; a break after that is raised."""
        backoff = Backoff() if retry else None
        started = False
        while True:
            try:
                with self.client.stream(method, self.url(path), json=json) as response:
                    if response.status_code in _RETRY_STATUS and backoff is not None:
                        response.read()
                        if backoff.wait(_retry_after(response)):
                            continue
                    if response.status_code >= 400:
                        response.read()
                        raise _error(response)
                    started = True
                    yield response
                    return
            except httpx.TransportError as exc:
                if not started and backoff is not None and backoff.wait():
                    continue
                raise self._unreachable(exc) from exc


__all__ = ["RETRY_SECONDS", "Backoff", "Http", "retry_seconds"]
