"""The REST API as a client sees it: one JSON error shape with actionable statuses, an OpenAPI
document, pagination, and requests that fail without changing anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from server_helpers import Raw

import cairn
from cairn.core.digest import hash_bytes
from cairn.errors import (
    ArtifactNotFoundError,
    InvalidNameError,
    ProjectNotFoundError,
    RunFinishedError,
    StateError,
)
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread

RawFactory = Callable[[str | None], Raw]


@pytest.fixture(scope="module")
def shared_server(
    module_postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """One server (as conftest's `server`) for the error-shape cases: each request fails and
    changes nothing, which each case checks, so they share it."""
    store = tmp_path_factory.mktemp("server") / "server-store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAIRN_QUIET", "1")
        server = ServerThread(ServerSettings(database_url=module_postgres_url, store=store))
        server.start()
    yield server
    server.stop()


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "detail"}, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def test_health_and_openapi_document(raw: RawFactory) -> None:
    api = raw(None)
    assert api.get("/health").json()["status"] == "ok"
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in (
        "/api/v1/projects/{project}/runs",
        "/api/v1/projects/{project}/artifacts/{name}/versions",
        "/api/v1/versions/{version_id}/history",
        "/api/v1/objects/missing",
        "/api/v1/objects",
        "/api/v1/objects/fetch",
        "/api/v1/users/{user}/keys",
    ):
        assert path in paths, path
    assert "bearer" in str(doc["components"]["securitySchemes"]).lower()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/no/such/route", {}, 404, "not_found"),
        ("DELETE", "/projects", {}, 405, "method_not_allowed"),
        (
            "POST",
            "/projects/p/runs",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "invalid_input",
        ),
        ("POST", "/projects/p/runs", {"json": {"name": 5}}, 422, "validation"),
        ("POST", "/projects/p/runs", {"json": {"nmae": "typo"}}, 422, "validation"),
        ("POST", "/projects/bad%20name/runs", {"json": {}}, 400, "invalid_name"),
        ("GET", "/runs/nope", {}, 404, "run_not_found"),
        ("GET", "/versions/12345", {}, 404, "artifact_not_found"),
        ("GET", "/versions/abc", {}, 422, "validation"),
        ("GET", "/projects/p/runs", {"params": {"limit": -1}}, 400, "invalid_input"),
        ("GET", "/projects/p/runs", {}, 404, "project_not_found"),
        ("POST", "/objects/missing", {"json": {"digests": ["md5:x"]}}, 400, "invalid_input"),
        ("GET", "/objects/blake3:" + "0" * 64, {}, 404, "object_not_found"),
    ],
)
def test_every_error_has_one_json_shape(
    shared_server: ServerThread,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    api = Raw(shared_server.url, None)
    try:
        response = api.call(method, path, **kwargs)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        assert error_of(response)["code"] == code
        # nothing was created by any of them
        assert api.get("/projects").json()["items"] == []
    finally:
        api.close()


def test_status_codes_a_client_can_act_on(raw: RawFactory) -> None:
    api = raw(None)
    created = api.post("/projects/p/runs", json={"name": "r"})
    assert created.status_code == 201
    run_id = created.json()["id"]
    blob = b"content"
    tree = (
        b'{"cairn":"tree","entries":[{"d":"'
        + hash_bytes(blob).encode()
        + b'","n":"a.txt","s":7,"t":"f"}],"v":1}'
    )
    assert api.upload([blob, tree]).status_code == 200
    version = {"type": "dataset", "digest": hash_bytes(tree), "size": 7, "file_count": 1}
    first = api.post("/projects/p/artifacts/data/versions", json={**version, "run_id": run_id})
    assert first.status_code == 201 and first.json()["created"] is True
    again = api.post("/projects/p/artifacts/data/versions", json=version)
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["version"]["version"] == 0
    # a type that differs from the artifact's: 400 with the registry's message
    wrong = api.post("/projects/p/artifacts/data/versions", json={**version, "type": "model"})
    assert wrong.status_code == 400
    assert "already exists with type 'dataset'" in error_of(wrong)["message"]
    # deleting a version with aliases: 409 (state), nothing deleted
    vid = first.json()["version"]["id"]
    assert api.call("PATCH", f"/versions/{vid}", json={"aliases": ["best"]}).status_code == 200
    refused = api.call("DELETE", f"/versions/{vid}")
    assert refused.status_code == 409 and error_of(refused)["code"] == "invalid_state"
    assert api.get(f"/versions/{vid}").json()["state"] == "committed"
    # a finished run refuses metrics: 409
    assert api.call("PATCH", f"/runs/{run_id}", json={"state": "finished"}).status_code == 200
    late = api.post(f"/runs/{run_id}/metrics", json={"rows": [[0, {"x": 1}]]})
    assert late.status_code == 409 and error_of(late)["code"] == "run_finished"
    # committing a version whose objects were never uploaded: 404 naming them, no version
    ghost = "blake3:" + "ab" * 32
    missing = api.post("/projects/p/artifacts/other/versions", json={**version, "digest": ghost})
    assert missing.status_code == 404
    err = error_of(missing)
    assert err["code"] == "object_not_found" and err["detail"]["missing"] == [ghost]
    assert api.get("/projects/p/artifacts").json()["items"][0]["name"] == "data"
    assert len(api.get("/projects/p/artifacts").json()["items"]) == 1


def test_every_list_is_paginated_with_a_next_link(raw: RawFactory) -> None:
    api = raw(None)
    ids = {api.post("/projects/p/runs", json={}).json()["id"] for _ in range(7)}
    seen: list[str] = []
    url: str | None = "/projects/p/runs?limit=3"
    pages = 0
    while url:
        body = api.get(url.removeprefix("/api/v1")).json()
        assert len(body["items"]) <= 3
        seen += [r["id"] for r in body["items"]]
        url = body["next"]
        pages += 1
    assert pages == 3 and len(seen) == 7 and set(seen) == ids
    projects = api.get("/projects", params={"limit": 1}).json()
    assert projects["total"] == 1 and projects["next"] is None
    # a limit above the largest page is cut to it, and the next link says where to go on
    cut = api.get("/projects/p/runs", params={"limit": 5000}).json()
    assert cut["limit"] == 1000 and cut["next"] is None


def test_sdk_errors_are_the_same_classes_and_messages_remotely(
    server: ServerThread, use_server: Callable[[str | None], None]
) -> None:
    use_server(None)
    with cairn.init(project="proj") as run:
        run.log({"loss": 1.0})
    api = cairn.Api("proj")
    with pytest.raises(ProjectNotFoundError, match="Did you mean 'proj'"):
        cairn.Api("prj").artifact("x")
    with pytest.raises(ArtifactNotFoundError, match="has no artifacts yet"):
        api.artifact("missing")
    with pytest.raises(InvalidNameError, match="invalid project name"):
        cairn.init(project="no spaces")
    with pytest.raises(RunFinishedError):
        api._backend.registry.log_metrics(run.id, [(5, {"x": 1.0})])
    with pytest.raises(StateError):
        api._backend.registry.update_run(run.id, state="running")
