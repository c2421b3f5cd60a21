"""`cairn server`: run the HTTP server, and manage its users, API keys and project roles.

``cairn server`` alone starts the server (FastAPI on uvicorn). The other commands work on the
server's database directly (run them on the server machine): ``create-admin`` makes the first
administrator and prints their key, once.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec

import typer

from cairn.cli import output
from cairn.cli.output import JsonOpt

P = ParamSpec("P")

if TYPE_CHECKING:
    from cairn.server.deps import ServerSettings
    from cairn.service.accounts import Accounts

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Run the Cairn server (`cairn server`), and manage its users, keys and roles.",
)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="The metadata database: a PostgreSQL URL for teams "
        "(postgresql+psycopg://user@host/db). Default: $CAIRN_DATABASE_URL, else the SQLite "
        "file $CAIRN_DIR/cairn.db.",
        show_default=False,
    ),
]


def _database_url(url: str | None) -> str:
    from cairn import config
    from cairn.metadata.engine import sqlite_path

    chosen = url or config.database_url()
    db_file = sqlite_path(chosen)
    if db_file is not None:
        db_file.expanduser().parent.mkdir(parents=True, exist_ok=True)
    return chosen


def _accounts(url: str | None) -> Accounts:
    from cairn.service.accounts import Accounts
    from cairn.service.sql import SqlRegistry

    registry = SqlRegistry(_database_url(url))  # brings the schema to head
    return Accounts(registry.engine)


def audited(command: Callable[P, None]) -> Callable[P, None]:
    """An administration command changes the server's database directly: the audit log
    records its changes as done by the operating-system user on this host
    (``cli:USER@HOST``, no address)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        import getpass
        import socket

        from cairn.service.audit import Actor, acting

        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "unknown"
        with acting(Actor(user=f"cli:{who}@{socket.gethostname()}", address=None)):
            command(*args, **kwargs)

    return run


def _print_key(token: str, user: str) -> None:
    output.echo(token)
    output.hint(
        f"This is {user}'s API key; it is shown only now. Clients use it as "
        "CAIRN_API_KEY=<key> with CAIRN_URL=http://<server>:<port>."
    )


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every one).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: DatabaseOpt = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Where objects live: a folder (default: $CAIRN_DIR/store, the embedded "
            "store), or a bucket: s3://bucket/prefix, gs://bucket/prefix, "
            "az://container/prefix (credentials from the usual environment variables and "
            "profiles; several servers may share one bucket).",
            show_default=False,
        ),
    ] = None,
    store_endpoint: Annotated[
        str | None,
        typer.Option(
            help="The endpoint of an S3-compatible service (MinIO, R2, Ceph ...) or an "
            "emulator. Default: $AWS_ENDPOINT_URL.",
            show_default=False,
        ),
    ] = None,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct/--no-direct",
            help="With a bucket store: clients upload and download objects straight to and "
            "from the bucket on short-lived signed URLs (default), or send them through the "
            "server (--no-direct: clients need no access to the bucket).",
        ),
    ] = True,
    signed_url_ttl: Annotated[
        int,
        typer.Option(min=1, help="Seconds a signed URL stays valid (direct transfers)."),
    ] = 900,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            max=1024,
            help="Threads per server process for requests' blocking work (database, files). "
            "A few keep Python's interpreter lock uncontended; more suit a server that moves "
            "bytes from a slow bucket (--no-direct).",
        ),
    ] = 4,
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate/--no-migrate",
            help="Bring the database schema up to date at start (default), or refuse to start "
            "when it is not.",
        ),
    ] = True,
    max_object_mb: Annotated[
        int, typer.Option(min=1, help="Largest object accepted, in MiB.")
    ] = 64,
    max_batch_mb: Annotated[
        int,
        typer.Option(
            min=1, help="Largest upload request (or pack uploaded on a signed URL), in MiB."
        ),
    ] = 256,
    user_quota_gb: Annotated[
        float,
        typer.Option(
            min=0,
            help="Bytes each user may upload (new to them), in GiB; 0: no quota. "
            "Administrators have none.",
        ),
    ] = 1024,
    session_days: Annotated[
        float, typer.Option(min=0.001, help="Days a dashboard sign-in lasts.")
    ] = 7,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Start the server: the REST API under /api/v1 (OpenAPI at /api/v1/openapi.json, docs
    at /api/v1/docs). Runs open (no keys needed) until the first user is created."""
    if ctx.invoked_subcommand is not None:
        return
    from cairn import config
    from cairn.server.deps import ServerSettings

    bucket = store if store and store.split("://", 1)[0] in ("s3", "gs", "az") else None
    if store and not bucket and "://" in store and not store.startswith("file://"):
        output.fail(
            f"--store {store!r}: use a folder, or a bucket as s3://bucket/prefix, "
            "gs://bucket/prefix or az://container/prefix"
        )
    if store_endpoint and not bucket:
        output.fail("--store-endpoint needs a bucket store (--store s3://bucket/prefix)")
    folder = Path(store.removeprefix("file://")) if store and not bucket else None
    settings = ServerSettings(
        database_url=_database_url(database_url),
        store=(folder or config.cairn_dir() / "store").expanduser().absolute(),
        max_object_bytes=max_object_mb << 20,
        max_batch_bytes=max_batch_mb << 20,
        user_quota=int(user_quota_gb * (1 << 30)),
        session_ttl=session_days * 86400,
        store_url=bucket,
        store_endpoint=store_endpoint,
        direct=direct,
        signed_url_ttl=signed_url_ttl,
        cache_dir=config.cairn_dir() / "cache" / "stores" if bucket else None,
        threads=threads,
        **_environment_only(),
    )
    if not migrate:
        _refuse_old_schema(settings.database_url)
    _run(settings, host=host, port=port, workers=workers, log_level=log_level)


ENVIRONMENT_ONLY = (
    "max_json_bytes",
    "max_form_bytes",
    "auth_failures",
    "auth_window",
    "oidc_issuer",
    "oidc_client_id",
    "oidc_client_secret",
    "oidc_username_claim",
    "oidc_create_users",
)


def _environment_only() -> dict[str, Any]:
    """The settings with no option of their own, from their CAIRN_SERVER_* variables
    (docs/server.md): the JSON and form body caps and the sign-in rate limit."""
    from cairn import config

    chosen = config.server_settings()
    return {field: chosen[field] for field in ENVIRONMENT_ONLY if field in chosen}  # type: ignore[literal-required]


def _refuse_old_schema(url: str) -> None:
    from cairn.metadata.engine import create_engine, safe_url
    from cairn.metadata.migrate import HEAD_REVISION, current_revision

    engine = create_engine(url)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    if revision != HEAD_REVISION:
        output.fail(
            f"the database {safe_url(url)} has schema revision {revision or 'none (empty)'}, "
            f"this server needs {HEAD_REVISION}, and --no-migrate was given: run "
            "`cairn server migrate` (back the database up first), or start without "
            "--no-migrate"
        )


def _raise_fd_limit() -> None:
    """Each pack file read stays open; allow as many as the system lets us."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def _run(settings: ServerSettings, *, host: str, port: int, workers: int, log_level: str) -> None:
    import uvicorn

    from cairn.metadata.engine import safe_url
    from cairn.server.app import create_app
    from cairn.server.deps import Services

    _raise_fd_limit()
    # migrations run here, once, before any worker starts; the store is opened (a bucket is
    # listed) so that a wrong URL or missing credentials stop the server now, in one line
    services = Services.open(settings)
    sys.stderr.write(
        f"cairn server: database {safe_url(settings.database_url)}, store "
        f"{services.objects.describe()}, http://{host}:{port}/api/v1 "
        f"({workers} worker{'s' if workers != 1 else ''})\n"
    )
    sys.stderr.flush()
    if workers == 1:
        uvicorn.run(create_app(settings, services), host=host, port=port, log_level=log_level)
        return
    services.close()
    os.environ.update(settings.to_env())
    uvicorn.run(
        "cairn.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


@app.command("migrate")
def migrate_command(database_url: DatabaseOpt = None) -> None:
    """Bring the database schema up to date (the server does it at start unless
    --no-migrate)."""
    from cairn.metadata.engine import safe_url
    from cairn.metadata.migrate import HEAD_REVISION

    url = _database_url(database_url)
    _accounts(url).engine.dispose()
    output.hint(f"{safe_url(url)} is at schema revision {HEAD_REVISION}")


@app.command("create-admin")
@audited
def create_admin(
    name: Annotated[str, typer.Argument(help="The administrator's user name.")],
    database_url: DatabaseOpt = None,
) -> None:
    """Create an administrator and print their API key (shown once). The first one ends the
    server's open mode: from then on every request needs a key."""
    accounts = _accounts(database_url)
    try:
        accounts.create_user(name, admin=True)
        _info, token = accounts.create_key(name, "created with create-admin")
    finally:
        accounts.engine.dispose()
    _print_key(token, name)


@app.command("create-user")
@audited
def create_user(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make them an administrator.")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a user and print their first API key (shown once). Give them projects with
    `cairn server grant`."""
    accounts = _accounts(database_url)
    try:
        accounts.create_user(name, admin=admin)
        _info, token = accounts.create_key(name, "created with create-user")
    finally:
        accounts.engine.dispose()
    _print_key(token, name)


@app.command("create-key")
@audited
def create_key(
    user: Annotated[str, typer.Argument(help="Whose key.")],
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
    database_url: DatabaseOpt = None,
) -> None:
    """Create another API key for a user and print it (shown once)."""
    accounts = _accounts(database_url)
    try:
        _info, token = accounts.create_key(user, label)
    finally:
        accounts.engine.dispose()
    _print_key(token, user)


@app.command("revoke-key")
@audited
def revoke_key(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `cairn server keys USER`).")],
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke an API key: every server process refuses it from now on."""
    accounts = _accounts(database_url)
    try:
        info = accounts.revoke_key(key_id)
    finally:
        accounts.engine.dispose()
    output.hint(f"revoked key {info.id} ({info.prefix}...) of {info.user}")


@app.command("set-password")
@audited
def set_password(
    user: Annotated[str, typer.Argument(help="Whose password.")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from standard input."),
    ] = False,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the password: the user signs in with keys.")
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Let a person sign in to the dashboard with their user name and a password (12 to
    1,024 characters, stored as an Argon2id hash). Asks for it twice unless --password-stdin.
    Their sessions started with the old password end."""
    import sys

    if clear:
        password = None
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    accounts = _accounts(database_url)
    try:
        accounts.set_password(user, password)
    finally:
        accounts.engine.dispose()
    output.hint(
        f"{user} signs in with keys only now"
        if clear
        else f"{user} can sign in to the dashboard with this password"
    )


@app.command("users")
def users(database_url: DatabaseOpt = None, json_out: JsonOpt = False) -> None:
    """List the users."""
    accounts = _accounts(database_url)
    try:
        infos = accounts.list_users()
    finally:
        accounts.engine.dispose()
    if json_out:
        output.print_json([u.to_dict() for u in infos])
        return
    if not infos:
        output.echo("No users: the server runs open. Create one with `cairn server create-admin`.")
        return
    t = output.table("USER", "ADMIN", "CREATED")
    for u in infos:
        output.add_row(t, u.name, "yes" if u.is_admin else "", output.when(u.created_at))
    t.print()


@app.command("keys")
def keys(
    user: Annotated[str, typer.Argument(help="Whose keys.")],
    database_url: DatabaseOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List a user's API keys (their ids and first characters; never the secrets)."""
    accounts = _accounts(database_url)
    try:
        infos = accounts.list_keys(user)
    finally:
        accounts.engine.dispose()
    if json_out:
        output.print_json([k.to_dict() for k in infos])
        return
    t = output.table("ID", "KEY", "LABEL", "CREATED", "REVOKED")
    for k in infos:
        revoked = output.when(k.revoked_at) if k.revoked_at else ""
        output.add_row(t, str(k.id), k.prefix + "...", k.label, output.when(k.created_at), revoked)
    t.print()


@app.command("grant")
@audited
def grant(
    user: Annotated[str, typer.Argument(help="The user.")],
    project: Annotated[str, typer.Argument(help="The project (created if it does not exist).")],
    role: Annotated[str, typer.Argument(help="read, write or admin.")],
    database_url: DatabaseOpt = None,
) -> None:
    """Give a user a role in a project (replacing the role they had)."""
    accounts = _accounts(database_url)
    try:
        accounts.set_role(project, user, role, create=True)
    finally:
        accounts.engine.dispose()
    output.hint(f"{user} has {role} access to project {project}")


@app.command("revoke-access")
@audited
def revoke_access(
    user: Annotated[str, typer.Argument(help="The user.")],
    project: Annotated[str, typer.Argument(help="The project.")],
    database_url: DatabaseOpt = None,
) -> None:
    """Remove a user from a project."""
    accounts = _accounts(database_url)
    try:
        accounts.remove_member(project, user)
    finally:
        accounts.engine.dispose()
    output.hint(f"{user} no longer has access to project {project}")


__all__ = ["app"]
