"""A server killed (SIGKILL) in the middle of a client's upload and started again: the client's
retries finish the log, the version downloads byte for byte, and gc reclaims what the killed
server left half-written, so every object ends up stored once."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

from server_helpers import PY, ServerProcess, client_env
from test_server_objects import stored
from typer.testing import CliRunner

from cairn.cli.main import app
from cairn.server.deps import ServerSettings


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_server_killed_mid_upload_and_restarted_loses_nothing(
    settings: ServerSettings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(120):
        (data / f"f{i:03}.bin").write_bytes(os.urandom(200 << 10))
    store = tmp_path / "store"
    env = client_env("", None, tmp_path / "client")
    server = ServerProcess(settings.database_url, store, env=env, log_dir=tmp_path)
    script = (
        "import cairn\n"
        "with cairn.init(project='p') as run:\n"
        f"    art = run.log_artifact({str(data)!r}, name='data', type='dataset')\n"
        "print(art.version, art.digest)\n"
    )
    client = {
        **client_env(server.url, None, tmp_path / "client"),
        "CAIRN_UPLOAD_BATCH_BYTES": str(600 << 10),  # 3 files per request: many requests
        "CAIRN_RETRY_SECONDS": "60",
    }
    child = subprocess.Popen(
        [PY, "-c", script], env=client, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            if (store / "packs").exists() and sum(1 for _ in store.rglob("*.pack")) >= 3:
                break
            time.sleep(0.002)
        assert child.poll() is None, "the upload finished before the server could be killed"
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        server.stop()
        time.sleep(1.0)  # the client meets a refused connection and keeps retrying
        server = ServerProcess(
            settings.database_url, store, env=env, log_dir=tmp_path, port=server.port
        )
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert out.split()[0] == "v0"
    try:
        fetched = tmp_path / "fetched"
        got = subprocess.run(
            [
                PY,
                "-c",
                "import cairn, sys\n"
                "art = cairn.Api('p').artifact('data:latest')\n"
                f"art.download(root={str(fetched)!r})\n",
            ],
            env={**client, "CAIRN_DIR": str(tmp_path / "reader")},
            capture_output=True,
            text=True,
        )
        assert got.returncode == 0, got.stderr
        assert _digest_tree(fetched) == _digest_tree(data)
    finally:
        server.stop()
    # what the killed server was writing is garbage: gc (no grace) reclaims it
    n, total, _ = stored(store)
    assert n == 120 + 1  # every file and the tree, each indexed once
    result = CliRunner().invoke(
        app,
        ["gc", "--store", str(store), "--database-url", settings.database_url, "--grace", "0"],
        env={"CAIRN_URL": "", "CAIRN_DIR": str(tmp_path / "gc-home")},
    )
    assert result.exit_code == 0, result.output
    n, total, on_disk = stored(store)
    assert n == 120 + 1 and on_disk == total  # no object twice, no half-written leftovers
