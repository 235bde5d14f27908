"""Fixtures for the program database tests: stores (memory and SQLite file) and small candidates."""

from __future__ import annotations

from pathlib import Path

import pytest

from islands import Candidate, IslandsConfig, MemoryStore, ProgramDatabase, RunMeta, SqliteStore

META = RunMeta(task_name="bandit", task_version=1, data_hash="d" * 16, function_name="agent")


def source(value: float, padding: int = 0, body: str = "") -> str:
    """A small candidate module returning params["alpha"] * value; `padding` adds comment characters."""
    comment = f"    # {'x' * padding}\n" if padding else ""
    return (
        "def agent(params, x):\n"
        '    PARAMS = {"alpha": (0.0, 1.0)}\n'
        f"{comment}{body}"
        f"    return params['alpha'] * x * {value!r}\n"
    )


_VALUE = object()


def candidate(value: float, score: float | None | object = _VALUE, island_id: int = 0, **fields) -> Candidate:
    """An evaluated candidate with source `source(value)` whose score is `score` (default: `value`)."""
    return Candidate(
        source=fields.pop("source", source(value)),
        island_id=island_id,
        score=value if score is _VALUE else score,  # type: ignore[arg-type]
        **fields,
    )


def open_database(path: Path | None, seed: int = 0, **config) -> ProgramDatabase:
    return ProgramDatabase.open(path, IslandsConfig(**config), META, seed=seed)


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
