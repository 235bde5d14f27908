"""Verification records go through the store, under the one writer's lock of the database file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.unit.islands.islands_helpers import candidate, open_database
from islands import IslandsError, ProgramDatabase


def a_run(path: Path) -> None:
    with open_database(path) as database:
        database.register_seed(candidate(0.5))


def test_a_verification_is_stored_and_read_back_latest_first(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    a_run(path)
    with ProgramDatabase.open_to_annotate(path) as database:
        database.save_verification(1, {"test_score": 0.7, "recovery": {"alpha": float("nan")}})
        database.save_verification(1, {"test_score": 0.71})
        with pytest.raises(IslandsError, match="no program with id 5"):
            database.save_verification(5, {})
    reader = ProgramDatabase.open_readonly(path)
    try:
        assert reader.verifications() == {1: {"test_score": 0.71}}
        with pytest.raises(IslandsError, match="opened read-only"):
            reader.save_verification(1, {})
    finally:
        reader.close()
    events_before = sqlite3.connect(path).execute("SELECT COUNT(*) FROM island_events").fetchone()
    ProgramDatabase.open_to_annotate(path).close()
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM island_events").fetchone() == events_before


def test_no_verification_is_written_while_a_run_writes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    a_run(path)
    with open_database(path):  # the run, holding the writer's lock
        with pytest.raises(IslandsError, match="another process is writing"):
            ProgramDatabase.open_to_annotate(path)
        reader = ProgramDatabase.open_readonly(path)
        assert reader.verifications() == {}
        reader.close()


def test_a_file_from_before_the_table_reads_as_unverified_and_gets_it_when_annotated(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    a_run(path)
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE verifications")
    reader = ProgramDatabase.open_readonly(path)
    assert reader.verifications() == {}
    reader.close()
    with ProgramDatabase.open_to_annotate(path) as database:
        database.save_verification(1, {"test_score": 0.6})
    reader = ProgramDatabase.open_readonly(path)
    assert reader.verifications() == {1: {"test_score": 0.6}}
    reader.close()
