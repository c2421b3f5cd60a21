"""Names with a control character are refused by the server itself (the SDK checks them too,
so only raw requests show what the server does): 400 invalid_name, and nothing is created."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from server_helpers import Raw

from cairn.core.digest import hash_bytes
from cairn.errors import InvalidInputError
from cairn.service.accounts import Accounts

RawFactory = Callable[[str | None], Raw]
ENDS = ["%0A", "%0D%0A", "%09", "%7F", "%C2%85", "%E2%80%A8"]


@pytest.mark.parametrize("end", ENDS)
def test_names_ending_in_a_control_character_are_refused(raw: RawFactory, end: str) -> None:
    api = raw(None)
    char = bytes.fromhex(end.replace("%", "")).decode()
    run = api.post("/projects/p/runs", json={"name": "r"})
    assert run.status_code == 201
    run_id = run.json()["id"]
    blob = b"content"
    tree = (
        b'{"cairn":"tree","entries":[{"d":"'
        + hash_bytes(blob).encode()
        + b'","n":"a.txt","s":7,"t":"f"}],"v":1}'
    )
    assert api.upload([blob, tree]).status_code == 200
    version = {"type": "dataset", "digest": hash_bytes(tree), "size": 7, "file_count": 1}
    made = api.post("/projects/p/artifacts/data/versions", json={**version, "run_id": run_id})
    assert made.status_code == 201
    vid = made.json()["version"]["id"]

    def refused(method: str, path: str, **kwargs: object) -> None:
        response = api.call(method, path, **kwargs)
        assert response.status_code == 400, (path, kwargs, response.text)
        assert response.json()["error"]["code"] == "invalid_name", response.text

    refused("POST", "/projects", json={"name": "q" + char})
    refused("POST", f"/projects/p{end}/runs", json={})
    refused("POST", "/projects/p/runs", json={"name": "r" + char})
    refused("POST", "/projects/p/runs", json={"job_type": "train" + char})
    refused("POST", "/projects/p/runs", json={"tags": ["t" + char]})
    refused("POST", f"/projects/p/artifacts/data{end}/versions", json=version)
    refused("POST", "/projects/p/artifacts/data/versions", json={**version, "type": "ds" + char})
    refused(
        "POST", "/projects/p/artifacts/data/versions", json={**version, "aliases": ["b" + char]}
    )
    refused("POST", "/projects/p/artifacts/data/versions", json={**version, "tags": ["t" + char]})
    refused("GET", f"/projects/p/artifacts/data/versions/best{end}")
    refused("GET", f"/projects/p/artifacts/data/versions/v0{end}")
    refused("GET", f"/projects/p/artifacts/data{end}/versions/v0")
    refused("PATCH", f"/versions/{vid}", json={"aliases": ["best" + char]})
    refused("PATCH", f"/versions/{vid}", json={"tags": ["t" + char]})
    assert [p["name"] for p in api.get("/projects").json()["items"]] == ["p"]
    assert [a["name"] for a in api.get("/projects/p/artifacts").json()["items"]] == ["data"]
    assert api.get(f"/versions/{vid}").json()["aliases"] == ["latest"]
    assert len(api.get("/projects/p/runs").json()["items"]) == 1


def test_user_names_and_key_labels_refuse_control_characters(accounts: Accounts) -> None:
    accounts.create_user("alice")
    accounts.create_key("alice", "laptop (work)")
    for bad in ("laptop\n", "a\x1b[31mred", "\u202eevil", "tab\there"):
        with pytest.raises(InvalidInputError, match="printable"):
            accounts.create_key("alice", bad)
    for bad in ("bob\n", "bob\r", "bob\x00"):
        with pytest.raises(InvalidInputError, match="invalid user name"):
            accounts.create_user(bad)
    assert [k.label for k in accounts.list_keys("alice")] == ["laptop (work)"]
    assert [u.name for u in accounts.list_users()] == ["alice"]
