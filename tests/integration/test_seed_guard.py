"""`discover run` stops before searching when its seed fails or scores away from what the task states: on a fresh
run against task.yaml's `seed_score`, on a resumed run against the seed score stored when the run began."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def discover(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stored_programs(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("select count(*) from programs").fetchone()[0]


def state_seed_score(task: Path, seed_score: float, tolerance: float) -> None:
    text = task.read_text().replace("limits:", f"seed_score: {seed_score}\nseed_score_tolerance: {tolerance}\nlimits:", 1)
    task.write_text(text)


def test_a_drifted_seed_stops_a_fresh_run_and_a_resumed_one(small_bandit_task: Path, tmp_path: Path):
    seed_py = small_bandit_task.parent / "seed.py"
    measured = json.loads(discover("eval", str(small_bandit_task), str(seed_py), "--json").stdout)["score"]

    # A fresh run whose seed scores 0.05 off seed_score stops with one sentence, and stores nothing.
    original = small_bandit_task.read_text()
    state_seed_score(small_bandit_task, round(measured + 0.05, 4), 0.002)
    db = tmp_path / "run.db"
    stopped = discover("run", str(small_bandit_task), "--db", str(db), "--max-evals", "4", "--workers", "1", "--runner", "local")
    assert stopped.returncode == 1
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error: ")]  # Ray logs warnings too
    assert len(errors) == 1, stopped.stderr
    message = errors[0]
    assert f"expected the seed to score {round(measured + 0.05, 4)} ± 0.002 (seed_score), got {measured:.4f}" in message
    assert "the scorer, the dataset or the environment" in message and "update seed_score in task.yaml" in message
    assert "bump version" in message
    assert stored_programs(db) == 0

    as_json = discover("run", str(small_bandit_task), "--db", str(tmp_path / "json.db"), "--max-evals", "4", "--runner", "local", "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["stopped_because"] == "seed" and report["expected_from"] == "task.yaml"
    assert report["seed_score"] == pytest.approx(measured) and report["tolerance"] == 0.002
    assert report["error"] == message.removeprefix("error: ")

    # With the seed_score it really has, the same database runs.
    small_bandit_task.write_text(original)
    state_seed_score(small_bandit_task, round(measured, 4), 0.002)
    ran = discover("run", str(small_bandit_task), "--db", str(db), "--max-evals", "4", "--workers", "1", "--runner", "local", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads(ran.stdout)["seed_score"] == pytest.approx(measured)
    before = stored_programs(db)

    # The scorer changes without a version bump: the resumed run re-evaluates its seed, compares it with the stored
    # seed, and stops before adding to scores it could not be compared with.
    score_py = small_bandit_task.parent / "score.py"
    changed = score_py.read_text().replace("score=heldout_score,", "score=heldout_score - 0.01,")
    assert changed != score_py.read_text(), "the scorer's return line moved: update this edit"
    score_py.write_text(changed)
    resumed = discover("run", str(small_bandit_task), "--db", str(db), "--max-evals", "8", "--workers", "1", "--runner", "local")
    assert resumed.returncode == 1
    assert re.search(rf"{re.escape(str(db))}: the seed now scores {measured - 0.01:.4f}, but it scored {measured:.4f} "
                     r"when this run began \(tolerance ± 0.002", resumed.stderr), resumed.stderr
    assert stored_programs(db) == before


def test_a_seed_that_fails_stops_the_run_with_its_error(small_bandit_task: Path, tmp_path: Path):
    seed_py = small_bandit_task.parent / "seed.py"
    seed_py.write_text(seed_py.read_text().replace("    q = state[:2]\n", "    q = state[:2]\n    raise RuntimeError('broken seed')\n"))
    db = tmp_path / "run.db"
    stopped = discover("run", str(small_bandit_task), "--db", str(db), "--max-evals", "4", "--workers", "1", "--runner", "local")
    assert stopped.returncode == 1
    assert f"the seed program {seed_py.resolve()} did not evaluate: CRASHED" in stopped.stderr
    assert "RuntimeError: broken seed" in stopped.stderr
    assert stored_programs(db) == 0
    as_json = json.loads(discover("run", str(small_bandit_task), "--db", str(db), "--max-evals", "4", "--runner", "local", "--json").stdout)
    assert as_json["outcome"] == "CRASHED" and "broken seed" in as_json["error"]
