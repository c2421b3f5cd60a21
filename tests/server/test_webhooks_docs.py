"""The receiver code documented in docs/lifecycle.md, run against real deliveries and forged
ones, and examples/redeploy_on_production.py receiving a moved `production` alias."""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from webhook_receiver import Receiver

from cairn.service.sql import SqlRegistry
from cairn.service.sql.webhooks import WebhookStore
from cairn.service.webhooks import WebhookWorker, sign

ROOT = Path(__file__).resolve().parents[2]


def documented_verify() -> tuple[str, Callable[[str, bytes, str | None], bool]]:
    text = (ROOT / "docs" / "lifecycle.md").read_text()
    section = text.split("### Verifying the signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code[1], "docs/lifecycle.md", "exec"), namespace)
    return code[1], namespace["verify"]


def example() -> ModuleType:
    path = ROOT / "examples" / "redeploy_on_production.py"
    spec = importlib.util.spec_from_file_location("redeploy_on_production", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def digest(n: int) -> str:
    return "blake3:" + f"{n:064x}"


def test_the_documented_receiver_code_accepts_real_and_rejects_forged(
    tmp_path: Path, receiver: Receiver
) -> None:
    code, verify = documented_verify()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    with SqlRegistry(f"sqlite:///{tmp_path / 'meta.db'}") as reg:
        _, secret = WebhookStore(reg.engine).add(receiver.url, project="p")
        reg.commit_version("p", "clf", "model", digest=digest(1), size=1, file_count=1)
        WebhookWorker(reg.engine, poll=0.05).run_once()
    (got,) = receiver.wait_for(1)
    header = got.headers["x-cairn-signature"]
    assert verify(secret, got.body, header)
    assert not verify(secret, got.body.replace(b'"p"', b'"q"'), header)  # body changed
    assert not verify(secret + "x", got.body, header)  # wrong secret
    assert not verify(secret, got.body, None)
    assert not verify(secret, got.body, header.removeprefix("sha256="))
    assert not verify(secret, got.body, "sha256=" + "0" * 64)
    assert example().verify.__doc__ == verify.__doc__  # the example uses the documented code


def test_the_example_redeploys_when_production_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = example()
    with SqlRegistry(f"sqlite:///{tmp_path / 'meta.db'}") as reg:
        reg.create_registry("models")
        hooks = WebhookStore(reg.engine)
        server = module.serve("whsec_" + "s" * 20, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            hooks.add(url, registry="models", events=["alias.*"], secret="whsec_" + "s" * 20)
            ids = [
                reg.commit_version("p", "clf", "model", digest=digest(n), size=1, file_count=1)[
                    0
                ].id
                for n in range(2)
            ]
            reg.link_version("models", "clf", ids[0], aliases=["production", "staging"])
            reg.link_version("models", "clf", ids[1], aliases=["production"])
            worker = WebhookWorker(reg.engine, poll=0.05)
            worker.run_once()
            worker.stop()
            forged = httpx.post(url, content=b"{}", headers={"X-Cairn-Signature": "sha256=00"})
            assert forged.status_code == 401
            # a delivery seen again (same idempotency key) does not redeploy twice
            (first,) = [d for d in hooks.deliveries(1, limit=10) if d.event_type == "alias.moved"]
            body = hooks.delivery_body(first.id).encode()
            again = httpx.post(
                url,
                content=body,
                headers={
                    "X-Cairn-Signature": sign("whsec_" + "s" * 20, body),
                    "Idempotency-Key": first.idempotency_key,
                },
            )
            assert again.status_code == 204
        finally:
            server.shutdown()
            server.server_close()
    lines = [line for line in capsys.readouterr().out.splitlines() if "redeploying" in line]
    assert lines == [
        f"redeploying models/clf:v0 ({digest(0)}), production was unset, by unknown",
        f"redeploying models/clf:v1 ({digest(1)}), production was v0, by unknown",
    ]
