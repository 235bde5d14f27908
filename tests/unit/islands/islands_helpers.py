"""Helpers for the program database tests: run metadata, small candidate modules, opening a database."""

from __future__ import annotations

from pathlib import Path

from islands import Candidate, IslandsConfig, ProgramDatabase, RunMeta

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
