"""A webhook receiver: when `production` moves, redeploy.

Cairn POSTs an event to this server whenever an alias is added, moved or removed (see
docs/lifecycle.md). It checks the signature, ignores a delivery it has handled already (same
Idempotency-Key), and "redeploys" when the `production` alias now points at another version.

    export CAIRN_WEBHOOK_SECRET=whsec_...                  # printed by `cairn webhook add`
    python examples/redeploy_on_production.py --port 8088
    cairn webhook add http://127.0.0.1:8088/ --registry models --event 'alias.*'

Replace `redeploy` with your deployment (a Kubernetes rollout, a model server reload, ...);
it should be quick: answer within the webhook timeout (10 s) and do long work in the
background.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEEN: set[str] = set()  # idempotency keys handled (keep them in a database in real use)
LOCK = threading.Lock()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """True when the X-Cairn-Signature header is the one of this raw body."""
    if not signature or not signature.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.removeprefix("sha256="))


def redeploy(event: dict[str, Any]) -> None:
    where = (
        f"{event['registry']}/{event['collection']}"
        if event.get("registry")
        else f"{event['project']}/{event['artifact']}"
    )
    print(
        f"redeploying {where}:{event['version']} ({event['digest']}), "
        f"production was {event['before'] or 'unset'}, by {event['actor'] or 'unknown'}",
        flush=True,
    )


def handle(event: dict[str, Any]) -> None:
    if event["type"] in ("alias.added", "alias.moved") and event["alias"] == "production":
        redeploy(event)


def make_handler(secret: str) -> type[BaseHTTPRequestHandler]:
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not verify(secret, body, self.headers.get("X-Cairn-Signature")):
                self.send_response(401)  # not from Cairn, or a wrong secret
                self.end_headers()
                return
            key = self.headers.get("Idempotency-Key") or ""
            with LOCK:
                first = key not in SEEN
                SEEN.add(key)
            if first:
                handle(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Receiver


def serve(secret: str, host: str = "127.0.0.1", port: int = 8088) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), make_handler(secret))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    args = parser.parse_args()
    secret = os.environ.get("CAIRN_WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("set CAIRN_WEBHOOK_SECRET to the secret `cairn webhook add` printed")
    server = serve(secret, args.host, args.port)
    print(f"listening on http://{args.host}:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
