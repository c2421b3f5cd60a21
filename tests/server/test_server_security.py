"""What a hostile or clumsy client meets: bodies refused before they are read, size caps, no
existence oracle, write access and a quota for bytes, integers beyond 64 bits, rate limits,
server-side dashboard sessions and the security headers (issue 11, items 7-10 and 12)."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from server_helpers import Raw, frames

from cairn.core.digest import hash_bytes
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts
from cairn.wire import OBJECTS_TYPE

RawFactory = Callable[[str | None], Raw]


@pytest.fixture
def keys(accounts: Accounts) -> dict[str, str]:
    """root (server admin); ann, writer of project pa; bob, writer of pb; rita, reader of pa;
    nobody, in no project."""
    accounts.create_user("root", admin=True)
    found = {"root": accounts.create_key("root")[1]}
    for name in ("ann", "bob", "rita", "nobody"):
        accounts.create_user(name)
        found[name] = accounts.create_key(name)[1]
    accounts.set_role("pa", "ann", "write", create=True)
    accounts.set_role("pb", "bob", "write", create=True)
    accounts.set_role("pa", "rita", "read")
    return found


def _raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, str]:
    """Send the request line and headers (and ``body``, often much less than they promise),
    then read the answer: (status, the answer's text). The socket's timeout only keeps a broken
    server from hanging the test; a server that waits for the promised body never answers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                part = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    "the server did not answer: it is waiting for the body"
                ) from None
            if not part:
                break
            answer += part
    text = answer.decode("latin-1")
    return int(text.split(" ", 2)[1]), text


# --- item 7: authenticate before reading a body; a cap for every kind of request -------------


def test_unauthenticated_bodies_are_refused_before_they_are_read(
    server: ServerThread, keys: dict[str, str]
) -> None:
    promised = 30 << 20  # under the JSON cap: only the missing key refuses it
    for path in ("/api/v1/projects", "/api/v1/objects", "/api/v1/objects/missing"):
        status, text = _raw_request(
            server.url,
            f"POST {path} HTTP/1.1\nHost: x\nContent-Type: application/json\n"
            f"Content-Length: {promised}\n",
        )
        assert status == 401, text
        assert '"code":"unauthenticated"' in text
    # a chunked body with a wrong key: refused before its first chunk arrives
    status, text = _raw_request(
        server.url,
        "PUT /api/v1/objects/blake3:" + "0" * 64 + " HTTP/1.1\nHost: x\n"
        "Authorization: Bearer cairn_wrong\nTransfer-Encoding: chunked\n",
    )
    assert status == 401, text
    # a dashboard form post without a session: sent to sign in, the form unread
    status, text = _raw_request(
        server.url,
        "POST /p/pa/a/data/v/v1/description HTTP/1.1\nHost: x\n"
        "Content-Type: application/x-www-form-urlencoded\nContent-Length: 900000\n",
    )
    assert status == 303 and "location: /login" in text.lower(), text


def test_every_kind_of_request_has_a_documented_cap(
    server: ServerThread, keys: dict[str, str], raw: RawFactory
) -> None:
    settings = server.settings
    root = f"Authorization: Bearer {keys['root']}\n"
    cases = [
        ("POST /api/v1/projects", settings.max_json_bytes),
        ("POST /api/v1/objects", settings.max_batch_bytes),
        ("PUT /api/v1/objects/blake3:" + "0" * 64, settings.max_object_bytes),
        ("POST /login", 16 << 10),
        ("POST /p/pa/a/data/v/v1/description", settings.max_form_bytes),
    ]
    for line, cap in cases:
        status, text = _raw_request(
            server.url, f"{line} HTTP/1.1\nHost: x\n{root}Content-Length: {cap + 1}\n"
        )
        assert status == 413, (line, text)
        assert '"code":"too_large"' in text and f'"limit":{cap}' in text, (line, text)
    # a chunked body is counted as it arrives
    big = b"x" * (settings.max_json_bytes + 1)
    response = raw(keys["root"]).post(
        "/projects",
        content=iter([big[: len(big) // 2], big[len(big) // 2 :]]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


# --- item 8: no existence oracle ------------------------------------------------------------


def test_upload_answers_do_not_depend_on_other_projects(
    keys: dict[str, str], raw: RawFactory
) -> None:
    secret = b"only project pa has these bytes " * 10
    ann, bob = raw(keys["ann"]), raw(keys["bob"])
    first = ann.upload([secret])
    assert first.status_code == 200 and first.json()["stored_bytes"] == len(secret)
    # bob has never seen these bytes: his answer is the one he would get on an empty server
    assert bob.missing([hash_bytes(secret)]) == {hash_bytes(secret)}
    theirs = bob.upload([secret])
    assert theirs.status_code == 200, theirs.text
    assert theirs.json() == {"received": 1, "stored_bytes": len(secret)}
    put = bob.call(
        "PUT", f"/objects/{hash_bytes(secret + b'!')}", content=secret + b"!"
    )  # new to everyone
    assert put.json()["stored_bytes"] == len(secret) + 1
    # sending what one already sent is free, for everyone
    assert bob.upload([secret]).json()["stored_bytes"] == 0
    assert ann.upload([secret]).json()["stored_bytes"] == 0


# --- item 9: writing bytes needs write access somewhere; a per-user quota ---------------------


def test_only_writers_may_upload_bytes(keys: dict[str, str], raw: RawFactory) -> None:
    data = b"bytes from someone who may not write"
    for who in ("rita", "nobody"):
        client = raw(keys[who])
        batch = client.upload([data])
        assert batch.status_code == 403, (who, batch.text)
        assert batch.json()["error"]["code"] == "permission_denied"
        one = client.call("PUT", f"/objects/{hash_bytes(data)}", content=data)
        assert one.status_code == 403, (who, one.text)
    assert raw(keys["root"]).missing([hash_bytes(data)]) == {hash_bytes(data)}  # nothing stored
    assert raw(keys["ann"]).upload([data]).status_code == 200


def test_the_upload_quota_refuses_what_would_pass_it(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ServerSettings(database_url=postgres_url, store=tmp_path / "store", user_quota=1000)
    with ServerThread(settings) as server:
        accounts: Accounts = server.app.state.services.accounts
        accounts.create_user("root", admin=True)
        accounts.create_user("ann")
        accounts.set_role("pa", "ann", "write", create=True)
        ann = Raw(server.url, accounts.create_key("ann")[1])
        root = Raw(server.url, accounts.create_key("root")[1])
        try:
            a, b, c = b"a" * 600, b"b" * 300, b"c" * 200
            assert ann.upload([a]).json()["stored_bytes"] == 600
            assert ann.upload([a, b]).json()["stored_bytes"] == 300  # a is not counted again
            refused = ann.upload([c])
            assert refused.status_code == 413, refused.text
            error = refused.json()["error"]
            assert error["code"] == "quota_exceeded"
            assert "quota" in error["message"] and "--user-quota-gb" in error["message"]
            assert ann.missing([hash_bytes(c)]) == {hash_bytes(c)}  # nothing of it stored
            put = ann.call("PUT", f"/objects/{hash_bytes(c)}", content=c)
            assert put.status_code == 413 and put.json()["error"]["code"] == "quota_exceeded"
            assert root.missing([hash_bytes(c)]) == {hash_bytes(c)}
            assert ann.upload([a, b]).status_code == 200  # what they sent before still goes
            assert root.upload([c]).status_code == 200  # administrators have no quota
        finally:
            ann.close()
            root.close()


# --- item 12: integers beyond 64 bits -------------------------------------------------------


def _integer_parameters(server: ServerThread) -> list[tuple[str, str, str]]:
    """(method, path template, parameter) of every integer path or query parameter of the
    API, from its OpenAPI description (so a new route is covered the day it is added)."""
    found = []
    for path, operations in server.app.openapi()["paths"].items():
        for method, operation in operations.items():
            for param in operation.get("parameters", []):
                schema = param.get("schema", {})
                kinds = [schema, *schema.get("anyOf", [])]
                if any(k.get("type") == "integer" for k in kinds):
                    found.append((method.upper(), path, param["name"]))
    return found


def test_integers_beyond_64_bits_are_refused_with_422(
    server: ServerThread, keys: dict[str, str], raw: RawFactory
) -> None:
    huge = 2**70
    root = raw(keys["root"])
    checked = 0
    for method, template, name in _integer_parameters(server):
        path = template.removeprefix("/api/v1")
        path = re.sub(r"\{(\w+)\}", lambda m, n=name: str(huge) if m[1] == n else "x", path)
        query = {} if "{" + name + "}" in template else {name: huge}
        if method in ("POST", "PUT", "PATCH"):
            response = root.call(method, path, params=query, json={})
        else:
            response = root.call(method, path, params=query | {"digest": "x"})
        assert response.status_code == 422, (method, template, name, response.text)
        assert response.json()["error"]["code"] == "validation"
        checked += 1
    assert checked >= 10
    run = root.post("/projects/pa/runs", json={}).json()
    bodies = [
        ("POST", f"/runs/{run['id']}/metrics", {"rows": [[huge, {"loss": 1.0}]]}),
        ("POST", f"/runs/{run['id']}/metrics", {"rows": [[-huge, {"loss": 1.0}]]}),
        ("POST", f"/runs/{run['id']}/inputs", {"version_id": huge}),
        (
            "POST",
            "/projects/pa/artifacts/data/versions",
            {"type": "dataset", "digest": "blake3:" + "0" * 64, "size": huge, "file_count": 1},
        ),
        ("POST", "/objects/packs", {"count": huge}),
    ]
    for method, path, body in bodies:
        response = root.call(method, path, json=body)
        assert response.status_code == 422, (path, body, response.text)
    # a metric value that large is kept as JSON keeps it, not a dropped connection
    logged = root.post(f"/runs/{run['id']}/metrics", json={"rows": [[1, {"big": huge}]]})
    assert logged.status_code in (204, 400, 422), logged.text
    assert root.get("/health").status_code == 200


# --- item 10: rate limits, sessions, headers --------------------------------------------------


@pytest.fixture
def strict_server(tmp_path: Path, postgres_url: str) -> Iterator[ServerThread]:
    settings = ServerSettings(
        database_url=postgres_url, store=tmp_path / "store", auth_failures=3, auth_window=600
    )
    with ServerThread(settings) as server:
        yield server


def test_bad_keys_and_sign_ins_are_rate_limited(strict_server: ServerThread) -> None:
    accounts: Accounts = strict_server.app.state.services.accounts
    accounts.create_user("root", admin=True)
    good = accounts.create_key("root")[1]
    with httpx.Client(base_url=strict_server.url, timeout=60) as web:
        for _ in range(3):
            r = web.get("/api/v1/projects", headers={"Authorization": "Bearer cairn_guess"})
            assert r.status_code == 401
        r = web.get("/api/v1/projects", headers={"Authorization": "Bearer cairn_guess"})
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) > 0
        assert r.json()["error"]["code"] == "rate_limited"
        # a valid key from the same address still works
        r = web.get("/api/v1/projects", headers={"Authorization": f"Bearer {good}"})
        assert r.status_code == 200
        # sign-in attempts are counted on their own
        form = {"origin": strict_server.url}
        for _ in range(3):
            r = web.post("/login", data={"key": "cairn_guess", "next": "/"}, headers=form)
            assert r.status_code == 401
        r = web.post("/login", data={"key": good, "next": "/"}, headers=form)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in r.text


def _session_rows(server: ServerThread) -> list[Any]:
    from cairn.metadata.accounts import DashboardSession

    engine = server.app.state.services.registry.engine
    with engine.connect() as conn:
        return list(conn.execute(sa.select(DashboardSession)).all())  # type: ignore[arg-type]


def test_dashboard_sessions_live_on_the_server(server: ServerThread, keys: dict[str, str]) -> None:
    origin = {"origin": server.url}

    def sign_in(web: httpx.Client, key: str) -> httpx.Response:
        r = web.post("/login", data={"key": key, "next": "/"}, headers=origin)
        assert r.status_code == 303, r.text
        return r

    with httpx.Client(base_url=server.url, timeout=60) as web:
        r = sign_in(web, keys["ann"])
        cookie = r.headers["set-cookie"]
        token = web.cookies["cairn_session"]
        assert keys["ann"] not in cookie and token not in keys["ann"]  # not the API key
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert "secure" not in cookie.lower()  # plain HTTP
        assert re.search(r"max-age=(\d+)", cookie, re.I)[1] == str(7 * 86400)  # type: ignore[index]
        rows = _session_rows(server)
        assert len(rows) == 1 and token not in str(tuple(rows[0]))  # stored hashed
        assert web.get("/").status_code == 200
        # signing in again rotates the token and ends the old session
        sign_in(web, keys["ann"])
        rotated = web.cookies["cairn_session"]
        assert rotated != token
        stale = httpx.get(server.url + "/", cookies={"cairn_session": token})
        assert stale.status_code == 303 and "/login" in stale.headers["location"]
        # signing out ends it for good, even for a copy of the cookie
        assert web.post("/logout", headers=origin).status_code == 303
        copy = httpx.get(server.url + "/", cookies={"cairn_session": rotated})
        assert copy.status_code == 303 and "/login" in copy.headers["location"]
        # revoking the key a session was started with ends the session
        sign_in(web, keys["ann"])
        assert web.get("/").status_code == 200
        accounts: Accounts = server.app.state.services.accounts
        for key in accounts.list_keys("ann"):
            accounts.revoke_key(key.id)
        assert web.get("/", follow_redirects=False).status_code == 303
    # behind HTTPS (a proxy on this machine says so) the cookie is Secure
    with httpx.Client(base_url=server.url, timeout=60) as web:
        r = web.post(
            "/login",
            data={"key": keys["bob"], "next": "/"},
            headers={"origin": "https://cairn.example", "x-forwarded-proto": "https",
                     "host": "cairn.example"},
        )  # fmt: skip
        assert r.status_code == 303, r.text
        assert "secure" in r.headers["set-cookie"].lower()


def test_a_session_expires(server: ServerThread, keys: dict[str, str]) -> None:
    from cairn.server.sessions import Sessions

    engine = server.app.state.services.registry.engine
    short = Sessions(engine, ttl=0)  # expired the moment it starts
    token = short.start(keys["ann"])
    assert token is not None
    assert short.user(token) is None
    lasting = Sessions(engine)
    started = lasting.start(keys["ann"])
    assert lasting.user(started) is not None
    lasting.end_all(lasting.user(started)[0])  # type: ignore[index]
    assert lasting.user(started) is None
    assert lasting.start("cairn_not_a_key") is None


def test_every_response_has_the_security_headers(
    server: ServerThread, keys: dict[str, str]
) -> None:
    for path in ("/login", "/", "/api/v1/health", "/api/v1/projects", "/static/dashboard.css"):
        r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {keys['root']}"})
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, (path, r.headers)
        assert "script-src 'self'" in csp and "object-src 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_an_uploaded_object_body_is_framed(keys: dict[str, str], raw: RawFactory) -> None:
    """The framed upload still works end to end through the gate (a chunked body)."""
    data = [b"one", b"two" * 1000]
    body = frames(data)
    r = raw(keys["ann"]).post(
        "/objects",
        content=iter([body[:10], body[10:]]),
        headers={"Content-Type": OBJECTS_TYPE},
    )
    assert r.status_code == 200 and r.json()["received"] == 2
