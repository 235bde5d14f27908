"""The database layout version and its upgrade path."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.unit.islands.islands_helpers import META, candidate, open_database
from islands import IslandsConfig, IslandsError, ProgramDatabase
from islands.schema import SCHEMA_VERSION

V0_PROGRAMS = """CREATE TABLE programs (
    id INTEGER PRIMARY KEY, created_at FLOAT, island_id INTEGER, source TEXT, source_length INTEGER,
    parent_ids JSON, outcome VARCHAR, score FLOAT, scores_per_test JSON, error TEXT, fitted_params JSON,
    timings JSON, extra_scores JSON, proposer VARCHAR, tokens INTEGER, cost_usd FLOAT, canonical_hash VARCHAR,
    num_params INTEGER, ast_size INTEGER)"""


def make_v0(path: Path) -> None:
    """A version-0 database by hand: no behaviour column, no island events table, no schema_version row."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value TEXT)")
    connection.execute(V0_PROGRAMS)
    meta = {
        "task_name": META.task_name,
        "task_version": str(META.task_version),
        "data_hash": META.data_hash,
        "function_name": META.function_name,
        "islands_config": IslandsConfig(num_islands=2).model_dump_json(),
    }
    connection.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
    seed = candidate(0.5)
    rows = [
        (1, 100.0, -1, seed.source, len(seed.source), "[]", "OK", 0.5, "{}", "", "{}", "{}", "{}", "seed", 0, 0.0,
         "h1", 1, 20),
        (2, 101.0, 1, "x = 1\n", 6, "[1]", "OK", 0.7, json.dumps({"a": 0.7}), "", "{}", "{}", "{}", "mutator", 3,
         0.1, "h2", 0, 5),
    ]  # fmt: skip
    connection.executemany(f"INSERT INTO programs VALUES ({', '.join('?' * len(rows[0]))})", rows)
    connection.commit()
    connection.close()


def test_version_0_database_is_upgraded_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v0(path)
    with pytest.raises(IslandsError, match="old database layout version 0; open it once for writing"):
        ProgramDatabase.open_readonly(path)
    with open_database(path, num_islands=2) as database:
        assert [p.id for p in database.all_programs()] == [1, 2]
        assert database.get(2).behaviour is None
        assert database.num_evaluations == 1 and database.best(1)[0].id == 2
        assert database.register(candidate(0.9, behaviour=(1.0,))).id == 3
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    connection.close()
    with ProgramDatabase.open_readonly(path) as reader:
        assert reader.get(3).behaviour == (1.0,)


def test_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_database(path).close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    connection.commit()
    connection.close()
    with pytest.raises(IslandsError, match="layout version 99, newer than this version of discover reads"):
        open_database(path)


def test_other_sqlite_files_and_other_files_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE things (x)")
    connection.commit()
    connection.close()
    with pytest.raises(IslandsError, match=r"is not a program database \(tables found: \['things'\]\)"):
        open_database(other)
    text = tmp_path / "notes.db"
    text.write_text("these are not the programs you are looking for" * 100)
    with pytest.raises(IslandsError, match="is not a readable SQLite database"):
        open_database(text)


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with open_database(path) as database:
        database.register_seed(candidate(0.5))
        connection = sqlite3.connect(path)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        connection.close()
