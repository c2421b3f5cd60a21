"""Fixtures for the metadata tests: a `SqlRegistry` on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cairn.core.digest import hash_bytes
from cairn.service.sql import SqlRegistry


@pytest.fixture
def registry(database_url: str) -> Iterator[SqlRegistry]:
    reg = SqlRegistry(database_url)
    yield reg
    reg.close()


def make_digest(seed: str) -> str:
    return hash_bytes(seed.encode())


@pytest.fixture
def digest() -> Callable[[str], str]:
    """A function giving a distinct well-formed digest for each seed."""
    return make_digest
