"""Fixtures for the program database tests: stores (memory and SQLite file) and database paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from islands import MemoryStore, SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """A `ProgramStore`: the in-memory twin and the SQLite file, so that both behave the same."""
    made = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "run.db")
    yield made
    made.close()


@pytest.fixture(params=["memory", "sqlite"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """None (in-memory database) or a SQLite file path."""
    return None if request.param == "memory" else tmp_path / "run.db"
