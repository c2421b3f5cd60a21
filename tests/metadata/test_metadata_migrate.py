"""Schema creation and migration, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from cairn.errors import StoreError
from cairn.metadata import migrate
from cairn.metadata.engine import create_engine
from cairn.metadata.tables import PG_ONLY_SCHEMA, metadata
from cairn.service.sql import SqlRegistry, open_registry


def test_head_revision_constant_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_heads() == [migrate.HEAD_REVISION]


def test_migrations_create_exactly_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    SqlRegistry(database_url).close()
    engine = create_engine(database_url)
    try:
        assert migrate.current_revision(engine) == migrate.HEAD_REVISION
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": lambda _o, name, *_: name not in PG_ONLY_SCHEMA,
                },
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_opening_a_current_database_does_not_import_alembic(database_url: str) -> None:
    SqlRegistry(database_url).close()
    code = (
        "import sys\n"
        "from cairn.service.sql import SqlRegistry\n"
        f"r = SqlRegistry({database_url!r})\n"
        "r.create_run('p')\n"
        "r.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_opening_twice_is_harmless(database_url: str) -> None:
    with SqlRegistry(database_url) as first:
        first.create_run("p")
    with SqlRegistry(database_url) as second:
        assert len(second.list_runs("p")) == 1


def test_a_newer_schema_is_refused_with_advice(database_url: str) -> None:
    SqlRegistry(database_url).close()
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"9999.*Upgrade Cairn"):
        SqlRegistry(database_url)


def test_open_registry_defaults_to_a_file_under_cairn_dir(cairn_env: Path) -> None:
    assert not cairn_env.exists()
    registry = open_registry()
    try:
        registry.create_run("p")
    finally:
        registry.close()
    assert (cairn_env / "cairn.db").is_file()


def test_open_registry_follows_cairn_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "deep" / "er" / "meta.db"
    monkeypatch.setenv("CAIRN_DATABASE_URL", f"sqlite:///{target}")
    with open_registry() as registry:
        registry.create_run("p")
    assert target.is_file()


def test_unusable_databases_raise_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match="choose a path you can write to"):
        SqlRegistry(f"sqlite:///{tmp_path}/a-file/dir/meta.db")
    with pytest.raises(StoreError, match="CAIRN_DATABASE_URL"):
        SqlRegistry("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StoreError) as info:
        SqlRegistry("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    assert "secret" not in str(info.value)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/meta.db")
    try:
        migrate.ensure_schema(engine)  # creates the schema with foreign keys off for a moment
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()


def test_a_sqlite_database_in_a_folder_that_does_not_exist_yet_is_created(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "new" / "folders" / "cairn.db"
    with open_registry(f"sqlite:///{db_file}") as registry:
        registry.create_run("p")
        assert [r.project for r in registry.list_runs("p")] == ["p"]
    assert db_file.is_file()


def test_postgresql_has_the_indexed_search_copy_of_metadata(postgres_url: str) -> None:
    SqlRegistry(postgres_url).close()
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            generated = conn.execute(
                sa.text(
                    "SELECT data_type, is_generated FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = 'versions' "
                    "AND column_name = 'metadata_search'"
                )
            ).one()
            index = conn.execute(
                sa.text(
                    "SELECT indexdef FROM pg_indexes "
                    "WHERE schemaname = current_schema() AND indexname = :n"
                ),
                {"n": "ix_versions_metadata_search"},
            ).scalar_one()
    finally:
        engine.dispose()
    assert tuple(generated) == ("jsonb", "ALWAYS")
    assert "USING gin (metadata_search jsonb_path_ops)" in index
