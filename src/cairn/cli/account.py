"""`cairn login`, `logout`, `whoami`, and `cairn user ...` / `cairn key ...`: the client side of
accounts, over a Cairn server's HTTP API.

`cairn login URL` checks a key against the server and saves ``{"url", "key"}`` in
``CAIRN_DIR/credentials.json`` (mode 0600); from then on the SDK and the CLI use that server
unless CAIRN_URL / CAIRN_API_KEY say otherwise. The `user` and `key` commands are for
administrators (a user may also list, create and revoke their own keys); `cairn server ...`
does the same on the server machine, on the database directly.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cairn.cli import output
from cairn.cli.output import JsonOpt

if TYPE_CHECKING:
    from cairn.client.http import Http

user_app = typer.Typer(
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Manage a Cairn server's users over its API (administrators; uses `cairn login`).",
)
key_app = typer.Typer(
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Manage API keys on a Cairn server over its API (your own, or anyone's as an "
    "administrator).",
)

NOT_LOGGED_IN = (
    "no Cairn server in use: run `cairn login URL` (or set CAIRN_URL and CAIRN_API_KEY); on "
    "the server machine, `cairn server users|create-user|keys|...` work on its database directly"
)


# --- the server in use --------------------------------------------------------------------------
def _source() -> str:
    """Where the server in use comes from: 'env' or 'login'."""
    from cairn import config

    return "env" if config.url_from_env() else "login"


@contextmanager
def _connect(url: str | None = None, key: str | None = None) -> Iterator[Http]:
    """An HTTP client of the server in use (CAIRN_URL, else the saved login)."""
    from cairn import config
    from cairn.client.http import Http

    if url is None:
        url = config.server_url()
        if url is None:
            output.fail(NOT_LOGGED_IN)
        key = config.api_key()
    http = Http(url, key, timeout=60.0)
    try:
        yield http
    finally:
        http.close()


def _all(http: Http, path: str) -> list[dict[str, Any]]:
    """Every item of a paged list."""
    data = http.json("GET", path)
    items: list[dict[str, Any]] = list(data.get("items") or [])
    while data.get("next"):
        data = http.json("GET", data["next"])
        items.extend(data.get("items") or [])
    return items


def _me(http: Http) -> dict[str, Any]:
    data: dict[str, Any] = http.json("GET", "/me")
    return data


def _describe(me: dict[str, Any]) -> str:
    if me.get("open"):
        return "anonymous (the server is open: it has no users yet)"
    who = str(me.get("user"))
    return f"{who} (administrator)" if me.get("admin") else who


def _projects_text(me: dict[str, Any]) -> str:
    projects = me.get("projects")
    if projects is None:
        return "every project (administrator)"
    if not projects:
        return "none yet (an administrator grants them)"
    return ", ".join(f"{name} ({role})" for name, role in sorted(projects.items()))


# --- login / logout / whoami -------------------------------------------------------------------
def _read_key(key: str | None) -> str:
    if key == "-":
        key = sys.stdin.readline()
    if not key:
        from cairn import config

        key = config.api_key_from_env()
    if not key and sys.stdin.isatty():
        key = typer.prompt("API key", hide_input=True)
    key = (key or "").strip()
    if not key:
        output.fail(
            "no API key: give --key KEY (or --key - to read it from stdin), set "
            "CAIRN_API_KEY, or run `cairn login URL` in a terminal to type it",
            output.EXIT_USAGE,
        )
    return key


def _save_login(url: str, key: str) -> None:
    from cairn import config

    path = config.credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"url": url, "key": key}, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def login(
    url: Annotated[str, typer.Argument(help="The server, e.g. http://cairn.example.com:8000.")],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="The API key ('-': read it from stdin). Default: $CAIRN_API_KEY, else asked "
            "for (hidden) on a terminal.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Log in to a Cairn server: check the key, then save the server and key in
    $CAIRN_DIR/credentials.json (readable only by you). The SDK and the CLI then use that
    server; CAIRN_URL and CAIRN_API_KEY still take precedence."""
    from cairn import config
    from cairn.errors import AuthenticationError

    url = config.normalize_url(url)
    token = _read_key(key)
    try:
        with _connect(url, token) as http:
            me = _me(http)
    except AuthenticationError:
        output.fail(
            f"the server at {url} refused this API key (mistyped, or revoked); nothing was saved"
        )
    _save_login(url, token)
    output.echo(f"Logged in to {url} as {_describe(me)}.")
    env_url = config.url_from_env()
    if env_url and config.normalize_url(env_url) != url:
        output.hint(f"note: CAIRN_URL={env_url} is set and takes precedence over this login")
    elif config.api_key_from_env() not in (None, token):
        output.hint("note: CAIRN_API_KEY is set and takes precedence over the saved key")


def logout() -> None:
    """Forget the server and key saved by `cairn login`."""
    from cairn import config

    path = config.credentials_path()
    saved = config.saved_login()
    try:
        path.unlink()
    except FileNotFoundError:
        output.echo("Not logged in (no saved credentials).")
        return
    where = f" of {saved['url']}" if saved else ""
    output.echo(f"Logged out{where}: removed {path}.")
    if config.url_from_env():
        output.hint("note: CAIRN_URL is still set in the environment")


def whoami(json_out: JsonOpt = False) -> None:
    """Show where Cairn's calls go: the server, who you are on it, your projects and roles;
    or the embedded store."""
    from cairn import config

    url = config.server_url()
    if url is None:
        _whoami_embedded(json_out)
        return
    with _connect() as http:
        me = _me(http)
        origin = http.origin
    if json_out:
        output.print_json({"mode": "server", "url": origin, "source": _source(), **me})
        return
    rows = [
        ("server", f"{origin} (from {'CAIRN_URL' if _source() == 'env' else 'cairn login'})"),
        ("user", _describe(me)),
        ("admin", "yes" if me.get("admin") else "no"),
        ("projects", _projects_text(me)),
    ]
    output.print_key_values(rows)


def _whoami_embedded(json_out: bool) -> None:
    from cairn import config
    from cairn.metadata.engine import safe_url

    home = config.cairn_dir()
    database = safe_url(config.database_url())
    store = config.store_url() or str(home / "store")
    if json_out:
        output.print_json(
            {"mode": "embedded", "home": str(home), "database": database, "store": store}
        )
        return
    output.echo(f"Embedded store at {home} (no server: `cairn login URL` to use one).")
    output.print_key_values([("database", database), ("objects", store)])


# --- users -------------------------------------------------------------------------------------
@user_app.command("ls")
def user_ls(json_out: JsonOpt = False) -> None:
    """List the server's users (administrators)."""
    with _connect() as http:
        users = _all(http, "/users")
    if json_out:
        output.print_json(users)
        return
    t = output.table("USER", "ADMIN", "CREATED")
    for u in users:
        output.add_row(t, str(u["name"]), "yes" if u.get("is_admin") else "", _when(u))
    t.print()


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make them an administrator.")] = False,
    label: Annotated[str, typer.Option(help="What their first key is for.")] = (
        "created with cairn user create"
    ),
) -> None:
    """Create a user and print their first API key (shown once). Give them projects with
    `cairn server grant` (or the members API)."""
    from urllib.parse import quote

    with _connect() as http:
        http.json("POST", "/users", json={"name": name, "admin": admin})
        created = http.json("POST", f"/users/{quote(name, safe='')}/keys", json={"label": label})
    _print_key(created, name)


def _when(record: dict[str, Any], field: str = "created_at") -> str:
    from datetime import datetime

    value = record.get(field)
    if not value:
        return ""
    try:
        return output.when(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value)


def _print_key(created: dict[str, Any], user: str) -> None:
    output.echo(str(created["key"]))
    output.hint(
        f"This is {user}'s API key (id {created.get('id')}); it is shown only now. They log in "
        "with `cairn login URL --key <key>`."
    )


# --- keys --------------------------------------------------------------------------------------
def _user_or_me(http: Http, user: str | None) -> str:
    if user:
        return user
    me = _me(http)
    if me.get("open") or not me.get("user"):
        output.fail(
            "this server has no users yet (it runs open): name the user, after creating the "
            "first administrator on the server with `cairn server create-admin NAME`"
        )
    return str(me["user"])


UserArg = Annotated[
    str | None,
    typer.Argument(help="Whose keys. Default: yours.", show_default=False),
]


@key_app.command("ls")
def key_ls(user: UserArg = None, json_out: JsonOpt = False) -> None:
    """List a user's API keys (ids and first characters; never the secrets)."""
    from urllib.parse import quote

    with _connect() as http:
        who = _user_or_me(http, user)
        keys = _all(http, f"/users/{quote(who, safe='')}/keys")
    if json_out:
        output.print_json(keys)
        return
    t = output.table("ID", "USER", "KEY", "LABEL", "CREATED", "REVOKED")
    for k in keys:
        output.add_row(
            t,
            str(k["id"]),
            str(k.get("user", who)),
            f"{k.get('prefix', '')}...",
            str(k.get("label") or ""),
            _when(k),
            _when(k, "revoked_at"),
        )
    t.print()


@key_app.command("create")
def key_create(
    user: UserArg = None,
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
) -> None:
    """Create an API key and print it (shown once)."""
    from urllib.parse import quote

    with _connect() as http:
        who = _user_or_me(http, user)
        created = http.json("POST", f"/users/{quote(who, safe='')}/keys", json={"label": label})
    _print_key(created, who)


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `cairn key ls`).")],
) -> None:
    """Revoke an API key: the server refuses it from now on."""
    with _connect() as http:
        info = http.json("DELETE", f"/keys/{key_id}")
    output.echo(f"Revoked key {info['id']} ({info.get('prefix', '')}...) of {info.get('user')}.")


def register(app: typer.Typer) -> None:
    """Add these commands to the `cairn` app."""
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
    app.add_typer(user_app, name="user")
    app.add_typer(key_app, name="key")


__all__ = ["register"]
