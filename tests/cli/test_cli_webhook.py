"""`cairn webhook add/ls/test/log/rm/deliver`, embedded and through a server, with a real
receiver on loopback."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke

import cairn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from webhook_receiver import Receiver

from cairn.service.webhooks import verify


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _delivered(cli: Invoke, cli_json: Callable[..., Any], backend: str, hook: int) -> list[Any]:
    """The webhook's log once nothing is pending (embedded: `deliver` sends it)."""
    deadline = time.monotonic() + 20
    while True:
        if backend == "embedded":
            cli("webhook", "deliver")
        log: list[Any] = cli_json("webhook", "log", str(hook))
        if (log and all(d["status"] == "delivered" for d in log)) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_add_ls_test_log_rm(
    cli: Invoke,
    cli_json: Callable[..., Any],
    backend: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    made = cli_json("webhook", "add", receiver.url, "-p", "vision", "-e", "alias.*")
    hook, secret = made["webhook"]["id"], made["secret"]
    assert made["webhook"]["events"] == ["alias.*"]
    listed = cli_json("webhook", "ls", "-p", "vision")
    assert [h["id"] for h in listed] == [hook] and "secret" not in listed[0]
    assert "alias.*" in cli("webhook", "ls", "-p", "vision").stdout

    with cairn.init(project="vision") as run:
        art = cairn.Artifact("clf", type="model")
        weights = tmp_path / "w"
        weights.write_text("1")
        art.add_file(weights)
        run.log_artifact(art, aliases=["production"])
    log = _delivered(cli, cli_json, backend, hook)
    assert [d["event_type"] for d in log] == ["alias.added"]
    (got,) = receiver.wait_for(1)
    assert got.event["alias"] == "production" and got.event["artifact"] == "clf"
    assert verify(secret, got.body, got.headers["x-cairn-signature"])

    queued = cli_json("webhook", "test", str(hook))
    assert queued["event_type"] == "webhook.test"
    log = _delivered(cli, cli_json, backend, hook)
    assert log[0]["event_type"] == "webhook.test" and log[0]["log"][0]["status_code"] == 200
    assert "webhook.test" in cli("webhook", "log", str(hook)).stdout

    bad = cli("webhook", "add", "ftp://example.com/x", "-p", "vision", code=None)
    assert bad.exit_code != 0 and "http" in bad.stderr
    cli("webhook", "rm", str(hook))
    assert cli_json("webhook", "ls", "-p", "vision") == []
    assert cli("webhook", "log", str(hook), code=None).exit_code == 3
