"""Eight people editing one version's aliases and tags at the same moment lose nothing.

Each editor is a process of its own running `cairn artifact alias add` or `cairn artifact tag
add` (the real command, in-process after the start line), all released together by a
barrier once every one of them has imported Cairn and opened its backend. Embedded on SQLite,
embedded on PostgreSQL, and as clients of two `cairn server` processes sharing one
PostgreSQL: afterwards the version has every alias and every tag that was added.

(Before the registry had atomic alias and tag operations, the command read the version's list
and wrote the whole list back, so concurrent editors overwrote each other's change.)
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import subprocess
import traceback
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from server_helpers import PY, SRC, ServerProcess, cairn_cmd, client_env

from cairn.service.sql import SqlRegistry

EDITORS = 8
TIMEOUT = 180

SEED = """
import cairn, sys
from pathlib import Path
Path(sys.argv[1]).write_text("the data")
with cairn.init(project="p", job_type="seed", save_code=False) as run:
    art = cairn.Artifact("data", "dataset")
    art.add_file(sys.argv[1])
    run.log_artifact(art)
print(art.version)
"""


def _label(editor: int) -> tuple[str, str]:
    """Even editors add an alias, odd ones a tag."""
    return ("alias", f"a{editor}") if editor % 2 == 0 else ("tag", f"t{editor}")


def _edit(env: dict[str, str], editor: int, barrier: Barrier, errors: Any) -> None:
    try:
        for name in [k for k in os.environ if k.startswith("CAIRN_")]:
            del os.environ[name]
        os.environ.update(env)
        from cairn.cli.main import app
        from cairn.sdk.backend import get_backend

        get_backend().registry.resolve("p", "data", "v0")  # connected, schema checked
        kind, label = _label(editor)
        barrier.wait(TIMEOUT)
        code = app(["artifact", kind, "add", "p/data:v0", label], standalone_mode=False)
        if code:
            errors.put(f"editor {editor}: `cairn artifact {kind} add` exited with {code}")
    except BaseException:
        barrier.abort()  # release the others instead of letting them wait
        errors.put(f"editor {editor}:\n{traceback.format_exc()}")
        raise


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["cairn.cli.main", "cairn.client.backend", __name__])
    return ctx


def _run_editors(envs: list[dict[str, str]]) -> None:
    ctx = _context()
    barrier = ctx.Barrier(EDITORS)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_edit, args=(envs[i], i, barrier, errors)) for i in range(EDITORS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT)
    for p in procs:
        if p.is_alive():
            p.kill()
    out = []
    while True:
        try:
            out.append(errors.get(timeout=0.5))
        except queue.Empty:
            break
    assert out == [], "\n".join(out)
    assert [p.exitcode for p in procs] == [0] * EDITORS


def _seed(env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        [PY, "-c", SEED, str(tmp_path / "data.txt")],
        env={**env, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "v0"


def _assert_nothing_lost(database_url: str) -> None:
    with SqlRegistry(database_url) as registry:
        version = registry.resolve("p", "data", "v0")
        history = registry.history(version.id)
    added = [_label(i) for i in range(EDITORS)]
    assert sorted(a for a in version.aliases if a != "latest") == sorted(
        label for kind, label in added if kind == "alias"
    )
    assert sorted(version.tags) == sorted(label for kind, label in added if kind == "tag")
    # every edit is in the version's history, each one a step from the state before it
    steps = [h for h in history if h.field in ("aliases", "tags")]
    assert len(steps) == EDITORS
    for field in ("aliases", "tags"):
        mine = [h for h in steps if h.field == field]
        for before, after in itertools.pairwise(mine):
            assert after.old == before.new


def _embedded_env(home: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_DIR": str(home), "CAIRN_QUIET": "1"})
    if database_url:
        env["CAIRN_DATABASE_URL"] = database_url
    return env


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_concurrent_alias_and_tag_edits_embedded(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    env = _embedded_env(home, url)
    _seed(env, tmp_path)
    _run_editors([{k: v for k, v in env.items() if k.startswith("CAIRN_")}] * EDITORS)
    _assert_nothing_lost(url or f"sqlite:///{home / 'cairn.db'}")


def test_concurrent_alias_and_tag_edits_through_two_servers(
    tmp_path: Path, postgres_url: str
) -> None:
    made = subprocess.run(
        cairn_cmd("server", "create-admin", "root", "--database-url", postgres_url),
        env={**os.environ, "CAIRN_DIR": str(tmp_path / "admin")},
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    servers = [ServerProcess(postgres_url, tmp_path / "store", env=dict(os.environ))]
    try:
        servers.append(ServerProcess(postgres_url, tmp_path / "store", env=dict(os.environ)))
        _seed(client_env(servers[0].url, key, tmp_path / "seed"), tmp_path)
        envs = [
            {
                k: v
                for k, v in client_env(servers[i % 2].url, key, tmp_path / f"home{i}").items()
                if k.startswith("CAIRN_")
            }
            for i in range(EDITORS)
        ]
        _run_editors(envs)
    finally:
        for server in servers:
            server.stop()
    _assert_nothing_lost(postgres_url)
