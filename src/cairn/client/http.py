"""One HTTP connection pool to a Cairn server: the API key, retries of idempotent requests,
and error responses turned back into the `cairn.errors` exception the server raised."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from cairn._version import __version__
from cairn.errors import CairnError, StoreError
from cairn.wire import API_PREFIX, exception_from

RETRIES = 4  # attempts of an idempotent request that met a network error or a 502/503/504
_RETRY_STATUS = frozenset({502, 503, 504})

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
        attempts = RETRIES if retry else 1
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(1, attempts + 1):
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
                if attempt < attempts:
                    time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
                    continue
                raise self._unreachable(exc) from exc
            if response.status_code in _RETRY_STATUS and attempt < attempts:
                time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @contextmanager
    def stream(self, method: str, path: str, *, json: Any = None) -> Iterator[httpx.Response]:
        """A streamed response (its body read as it arrives)."""
        try:
            with self.client.stream(method, self.url(path), json=json) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc


__all__ = ["Http"]
