"""Shared fixtures. Tests that need a real service (PostgreSQL, ...) skip when it is missing,
unless CAIRN_REQUIRE_ALL=1 (set by .ci/run), which turns every such skip into a failure."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "CAIRN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def require(condition: bool, why: str) -> None:
    """Skip (locally) or fail (in CI) when a real part a test needs is missing."""
    if condition:
        return
    if os.environ.get("CAIRN_REQUIRE_ALL") == "1":
        pytest.fail(f"required test dependency missing: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(autouse=True)
def cairn_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own empty CAIRN_DIR and working directory, and leaves the
    process environment as it found it (cairn.wandb.init(mode="offline") sets
    CAIRN_OFFLINE for the process, as wandb sets WANDB_MODE)."""
    saved = dict(os.environ)
    home = tmp_path / "cairn-home"
    monkeypatch.setenv("CAIRN_DIR", str(home))
    for var in ("CAIRN_DATABASE_URL", "CAIRN_URL", "CAIRN_API_KEY", "CAIRN_PROJECT", "CAIRN_STORE"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield home
    os.environ.clear()
    os.environ.update(saved)


def _postgres_available() -> bool:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    require(_postgres_available(), f"PostgreSQL not reachable at {POSTGRES_URL}")
    return POSTGRES_URL


@contextmanager
def fresh_schema(server_url: str) -> Iterator[str]:
    """A URL whose connections see a fresh, empty schema of the test database (dropped on
    exit)."""
    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(server_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in server_url else "?"
    yield f"{server_url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections see a fresh, empty schema of the test database."""
    with fresh_schema(postgres_server) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server: str) -> Iterator[str]:
    """`postgres_url` shared by a module's tests (for module-scoped fixtures that only tests
    which read it share)."""
    with fresh_schema(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
