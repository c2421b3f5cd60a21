"""A store logged to in embedded mode, then served by `cairn server` to a team: members who
are not administrators can read the versions logged before the server existed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import cairn
import cairn.sdk.context as run_context
from cairn.core.digest import hash_bytes
from cairn.sdk.backend import reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread


def test_versions_logged_before_the_server_are_readable_by_members(
    cairn_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{cairn_env / 'cairn.db'}"
    monkeypatch.setenv("CAIRN_DATABASE_URL", database_url)
    monkeypatch.setenv("CAIRN_QUIET", "1")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("x,y\n1,2\n")
    (data / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40_000)  # chunked (> 4 MiB)
    with cairn.init(project="team", job_type="prepare", save_code=False) as run:
        art = cairn.Artifact("data", type="dataset")
        art.add_dir(data)
        run.log_artifact(art)
    run_context._current = None
    reset_backends()

    server = ServerThread(ServerSettings(database_url, cairn_env / "store")).start()
    try:
        accounts = server.app.state.services.accounts
        accounts.create_user("admin", admin=True)
        accounts.create_user("ana")
        accounts.set_role("team", "ana", "read")
        accounts.create_user("outsider")
        monkeypatch.setenv("CAIRN_URL", server.url)
        monkeypatch.setenv("CAIRN_DIR", str(tmp_path / "client"))

        monkeypatch.setenv("CAIRN_API_KEY", accounts.create_key("ana")[1])
        reset_backends()
        got = Path(cairn.Api("team").artifact("data:v0").download(root=tmp_path / "ana"))
        assert (got / "a.csv").read_text() == "x,y\n1,2\n"
        assert (got / "sub" / "b.bin").read_bytes() == (data / "sub" / "b.bin").read_bytes()

        # a run may not name another project's object as its code diff (that would bind it
        # to the run's project, now or at the next start)
        accounts.set_role("own", "outsider", "admin", create=True)
        outsider_key = accounts.create_key("outsider")[1]
        secret = hash_bytes(b"x,y\n1,2\n")
        with httpx.Client(
            base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {outsider_key}"}
        ) as http:
            refused = http.post("/projects/own/runs", json={"git_diff_digest": secret})
            assert refused.status_code == 404, refused.text
            assert http.post("/projects/own/runs", json={}).status_code == 201

        monkeypatch.setenv("CAIRN_API_KEY", outsider_key)
        monkeypatch.setenv("CAIRN_DIR", str(tmp_path / "client2"))
        reset_backends()
        with pytest.raises(cairn.errors.CairnError):
            cairn.Api("team").artifact("data:v0").download(root=tmp_path / "outsider")
        assert not (tmp_path / "outsider" / "a.csv").exists()
    finally:
        reset_backends()
        server.stop()


def test_a_store_missing_many_versions_names_ten_and_counts_the_rest(
    cairn_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server started over a database whose store lost its objects starts, names the first
    ten versions it cannot serve and counts the rest in one line (not one line per version)."""
    import logging
    import shutil

    database_url = f"sqlite:///{cairn_env / 'cairn.db'}"
    monkeypatch.setenv("CAIRN_DATABASE_URL", database_url)
    monkeypatch.setenv("CAIRN_QUIET", "1")
    with cairn.init(project="team", save_code=False) as run:
        for n in range(13):
            art = cairn.Artifact(f"part-{n}", type="dataset")
            with art.new_file("n.txt") as f:
                f.write(str(n))
            run.log_artifact(art)
    run_context._current = None
    reset_backends()
    shutil.rmtree(cairn_env / "store")

    with caplog.at_level(logging.WARNING, logger="cairn.server"):
        server = ServerThread(ServerSettings(database_url, cairn_env / "store")).start()
        server.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "cairn.server"]
    named = [line for line in lines if "cannot bind" in line]
    assert len(named) == 10
    assert any(
        "3 more versions logged without a server could not be bound (13 in all)" in line
        and "cairn check --store" in line
        for line in lines
    ), lines
