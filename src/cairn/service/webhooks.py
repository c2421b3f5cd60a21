"""Delivering webhooks: signing, and the worker that sends what the outbox holds.

Each delivery is a ``POST`` of the event's JSON with these headers:

- ``X-Cairn-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body with the webhook's secret;
- ``Idempotency-Key``: the same on every attempt of one delivery (a receiver that saw it
  already answers 2xx and does nothing);
- ``X-Cairn-Event`` (the type), ``X-Cairn-Delivery`` (the delivery's id).

A 2xx answer delivers it. Anything else (an error, a timeout, a redirect: redirects are not
followed) is retried after an exponential backoff with jitter, up to ``max_attempts``
attempts; every attempt is logged. At least once: a receiver may see a delivery again (a
worker that died after sending, before recording), never a different body under one key.

The server runs a `WebhookWorker` thread in each process (several processes or replicas share
the work: each claim takes different rows); ``cairn webhook deliver`` runs it once for the
embedded mode.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import socket
import threading
import time
from datetime import timedelta

import httpx
import sqlalchemy as sa

from cairn import config
from cairn.service.sql.common import utcnow
from cairn.service.sql.webhooks import Claimed, WebhookStore, wake

log = logging.getLogger("cairn.webhooks")

SIGNATURE_HEADER = "X-Cairn-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """True when ``signature`` (the header) is the body's, in constant time."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


class WebhookWorker:
    """Claims due deliveries and sends them. ``run_once`` does one pass; ``start`` runs passes
    in a daemon thread until ``stop``. Defaults come from CAIRN_WEBHOOK_TIMEOUT (10 s per
    attempt), CAIRN_WEBHOOK_MAX_ATTEMPTS (8), CAIRN_WEBHOOK_BACKOFF (first retry after about
    that many seconds, 10; doubling each time, at most an hour) and CAIRN_WEBHOOK_POLL (1 s)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        timeout: float | None = None,
        max_attempts: int | None = None,
        backoff: float | None = None,
        max_backoff: float = 3600.0,
        poll: float | None = None,
        batch: int = 20,
        name: str | None = None,
    ) -> None:
        self.store = WebhookStore(engine)
        self.timeout = timeout if timeout is not None else config.webhook_timeout()
        self.max_attempts = (
            max_attempts if max_attempts is not None else config.webhook_max_attempts()
        )
        self.backoff = backoff if backoff is not None else config.webhook_backoff()
        self.max_backoff = max_backoff
        self.poll = poll if poll is not None else config.webhook_poll()
        self.batch = batch
        self.keep_days = config.webhook_keep_days()
        self._next_prune = 0.0
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(
            timeout=self.timeout,
            follow_redirects=False,
            headers={"User-Agent": "cairn-webhooks", "Content-Type": "application/json"},
        )

    # --- one pass ----------------------------------------------------------------------------

    def run_once(self) -> int:
        """Send every delivery due now (in batches); the number of attempts made. Once an
        hour, finished deliveries older than CAIRN_WEBHOOK_KEEP_DAYS (30) are deleted."""
        done = 0
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + 3600
            self.store.prune(utcnow() - timedelta(days=self.keep_days))
        if not self.store.has_due():  # a read: no write lock taken while there is nothing
            return 0
        while not self._stop.is_set():
            claimed = self.store.claim(self.batch, lease=self.timeout + 60)
            if not claimed:
                break
            for item in claimed:
                self._send(item)
                done += 1
        return done

    def retry_delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: exponential, with full jitter in its upper
        half (so that many failed deliveries do not come back at the same moment)."""
        delay = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return float(delay * random.uniform(0.5, 1.0))

    def _send(self, item: Claimed) -> None:
        body = item.body.encode()
        headers = {
            SIGNATURE_HEADER: sign(item.secret, body),
            IDEMPOTENCY_HEADER: item.idempotency_key,
            "X-Cairn-Event": item.event_type,
            "X-Cairn-Delivery": str(item.id),
        }
        status: int | None = None
        error: str | None = None
        started = time.perf_counter()
        try:
            response = self._client.post(item.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}" + (
                    " (redirects are not followed)" if 300 <= status < 400 else ""
                )
        except httpx.TimeoutException:
            error = f"no answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000]
        elapsed = int((time.perf_counter() - started) * 1000)
        ok = error is None
        attempt = item.attempts + 1
        retry_at = None
        if not ok and attempt < self.max_attempts:
            retry_at = utcnow() + timedelta(seconds=self.retry_delay(attempt))
        if not ok:
            log.warning(
                "webhook %s delivery %s attempt %d failed: %s",
                item.webhook_id, item.id, attempt, error,
            )  # fmt: skip
        self.store.finish(
            item,
            status_code=status,
            error=error,
            response_ms=elapsed,
            ok=ok,
            retry_at=retry_at,
            worker=self.name,
        )

    # --- the thread --------------------------------------------------------------------------

    def start(self) -> WebhookWorker:
        self._thread = threading.Thread(target=self._loop, name="cairn-webhooks", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the database may be away for a while: keep trying
                log.error("webhook delivery pass failed: %s", exc)
            wake.wait(self.poll)
            wake.clear()

    def stop(self) -> None:
        self._stop.set()
        wake.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
        self._client.close()


__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "WebhookWorker",
    "sign",
    "verify",
]
