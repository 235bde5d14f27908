"""Databases that cannot be written: a run refuses them before evaluating anything; reading commands read them."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Ray's own log lines ("2026-01-01 10:00:00,000\tWARNING ...") are Ray's, not the command's message.
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(INFO|WARNING) ")
ReadOnly = Callable[..., list[str]]


@pytest.fixture
def read_only() -> Iterator[ReadOnly]:
    """Returns `make(*paths)`: a command prefix under which those files and folders cannot be written.

    A non-root user gets file modes (555 folders, 444 files). Root writes through file modes, so it gets
    bubblewrap's read-only bind mounts instead, the way read-only media look.
    """
    changed: list[tuple[Path, int]] = []

    def make(*paths: Path) -> list[str]:
        if os.geteuid() != 0:
            for path in paths:
                changed.append((path, path.stat().st_mode))
                path.chmod(0o555 if path.is_dir() else 0o444)
            return []
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            pytest.skip("as root, a read-only location needs bubblewrap (apt-get install bubblewrap)")
        prefix = [bwrap, "--dev-bind", "/", "/"]
        for path in paths:
            prefix += ["--ro-bind", str(path), str(path)]
        return prefix

    yield make
    for path, mode in reversed(changed):
        path.chmod(mode)


def discover(prefix: list[str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed (Ray's own log lines aside)."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not RAY_LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def stored_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as connection:
        return connection.execute("select id, source from programs order by id").fetchall()


@pytest.mark.slow
def test_a_run_on_a_database_in_a_read_only_folder_stops_before_evaluating(small_bandit_run, read_only, tmp_path):
    task, db, _ = small_bandit_run
    folder = tmp_path / "read-only"
    folder.mkdir()
    shutil.copy(db, folder / "run.db")
    before = stored_rows(folder / "run.db")
    prefix = read_only(folder)
    for target in (folder / "run.db", folder / "new.db", folder / "sub" / "new.db"):
        result = discover(prefix, "run", str(task), "--db", str(target), "--max-evals", "100")
        line = error_line(result)
        assert f"cannot write the database {target}" in line and "give --db a file in a folder you can write" in line
        assert "resuming" not in result.stdout and "starting" not in result.stdout  # stopped while opening it
    assert stored_rows(folder / "run.db") == before
    assert sorted(p.name for p in folder.iterdir()) == ["run.db"]


def test_a_run_on_a_read_only_database_file_stops_before_the_seed_is_evaluated(small_bandit_task, read_only, tmp_path):
    from islands import IslandsConfig, ProgramDatabase, RunMeta

    db = tmp_path / "run.db"
    ProgramDatabase.open(db, IslandsConfig(), RunMeta("bandit", 1, "d" * 16, "agent")).close()  # no seed yet
    result = discover(read_only(db), "run", str(small_bandit_task), "--db", str(db), "--max-evals", "3")
    line = error_line(result)
    assert f"cannot write the database {db} (attempt to write a readonly database)" in line
    assert "seed program" not in result.stdout and "starting" not in result.stdout
    assert stored_rows(db) == []


def test_a_folder_given_as_the_database_is_named_as_such(small_bandit_task, tmp_path):
    line = error_line(discover([], "run", str(small_bandit_task), "--db", str(tmp_path)))
    assert f"{tmp_path} is a folder; --db takes a database file, e.g. {tmp_path / 'run.db'}" in line


@pytest.mark.slow
def test_best_show_and_stats_read_a_database_on_read_only_media(small_bandit_run, read_only, tmp_path):
    _, db, summary = small_bandit_run
    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(db, folder / "run.db")
    prefix = read_only(folder)
    best_id = str(summary["best_id"])
    for command in (["best", "--n", "5", "--json"], ["best", "--pareto", "--json"], ["show", best_id, "--json"],
                    ["stats", "--json"], ["lineage", best_id, "--json"]):
        on_media = discover(prefix, command[0], str(folder / "run.db"), *command[1:])
        assert on_media.returncode == 0, on_media.stdout + on_media.stderr
        original = discover([], command[0], str(db), *command[1:])
        assert on_media.stdout == original.stdout, command
    assert sorted(p.name for p in folder.iterdir()) == ["run.db"]  # nothing written beside it


def test_a_copy_whose_last_commits_wait_in_its_wal_file_is_refused_on_read_only_media(read_only, tmp_path):
    from islands import Candidate, IslandsConfig, ProgramDatabase, RunMeta

    live, media = tmp_path / "live", tmp_path / "media"
    media.mkdir()
    source = "def agent(params, x):\n    return x * {}\n"
    with ProgramDatabase.open(live / "run.db", IslandsConfig(), RunMeta("bandit", 1, "d" * 16, "agent")) as database:
        database.register_seed(Candidate(source=source.format(1), score=0.5))
        database.register(Candidate(source=source.format(2), score=0.7, island_id=0))
        # Copied while the run is open: the commits are in run.db-wal, not yet in run.db.
        assert (live / "run.db-wal").stat().st_size > 0
        for name in ("run.db", "run.db-wal"):
            shutil.copy(live / name, media / name)
    result = discover(read_only(media), "stats", str(media / "run.db"))
    line = error_line(result)
    assert "its last commits are still in run.db-wal" in line and "copy run.db and run.db-wal to a folder" in line
