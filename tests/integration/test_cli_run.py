"""End to end: `discover run` on a small bandit task, then every inspection command on its database."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def discover(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"discover {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_run_then_best_show_stats_eval(small_bandit_task: Path, tmp_path: Path):
    db = tmp_path / "run.db"
    run = discover("run", str(small_bandit_task), "--db", str(db), "--max-evals", "16", "--workers", "2", "--json")
    summary = json.loads(run.stdout)
    assert summary["db"] == str(db) and db.exists()
    assert summary["evaluations"] == 16
    assert summary["seed_score"] > 0.5 and summary["best_score"] >= summary["seed_score"]

    best = json.loads(discover("best", str(db), "--n", "5", "--json").stdout)
    assert best and {"id", "score", "island", "outcome"} <= set(best[0])
    assert best[0]["score"] == pytest.approx(summary["best_score"])
    assert [b["score"] for b in best] == sorted((b["score"] for b in best), reverse=True)

    shown = json.loads(discover("show", str(db), str(best[0]["id"]), "--json").stdout)
    assert "def agent" in shown["code"] and shown["fitted_params"] and shown["outcome"] == "OK"

    stats = json.loads(discover("stats", str(db), "--json").stdout)
    assert stats["evaluations"] == 16
    assert sum(stats["outcomes"].values()) >= 16
    assert stats["seed_score"] == pytest.approx(summary["seed_score"])
    assert stats["best_score"] == pytest.approx(summary["best_score"])
    assert stats["evaluations_per_s"] > 0

    seed_file = small_bandit_task.parent / "seed.py"
    evaluated = json.loads(discover("eval", str(small_bandit_task), str(seed_file), "--json").stdout)
    assert evaluated["outcome"] == "OK" and evaluated["error"] == ""
    assert evaluated["score"] == pytest.approx(summary["seed_score"], abs=1e-4)
    assert set(evaluated["fitted_params"]) == {"alpha", "beta"}
    assert {"compile_s", "fit_s", "wall"} <= set(evaluated["timings"])

    # The same database refuses another task, with a message saying what differs.
    other = small_bandit_task.parent / "task.yaml"
    other.write_text(other.read_text().replace("name: bandit", "name: bandit_other"))
    refused = discover("run", str(other), "--db", str(db), "--max-evals", "17", check=False)
    assert refused.returncode == 1
    assert "bandit" in refused.stderr and "bandit_other" in refused.stderr


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(small_bandit_task: Path, tmp_path: Path):
    db = tmp_path / "run.db"
    command = [sys.executable, "-m", "engine.cli", "run", str(small_bandit_task), "--db", str(db),
               "--max-evals", "30", "--workers", "2", "--quiet"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and stored < 8:
        time.sleep(0.5)
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                    stored = connection.execute("select count(*) from programs").fetchone()[0]
            except sqlite3.OperationalError:
                pass
        assert process.poll() is None, process.stderr.read().decode()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with sqlite3.connect(db) as connection:
        before = connection.execute("select id, source from programs order by id").fetchall()
    assert len(before) >= 8

    discover(*command[3:], timeout=600)
    with sqlite3.connect(db) as connection:
        after = connection.execute("select id, source from programs order by id").fetchall()
    assert after[: len(before)] == before  # nothing stored before the kill was lost or changed
    ids = [row[0] for row in after]
    assert len(ids) == len(set(ids))
    stats = json.loads(discover("stats", str(db), "--json").stdout)
    assert stats["evaluations"] == 30  # the budget counts what was done before the kill
    seeds = [p for p in json.loads(discover("best", str(db), "--n", "1000", "--json").stdout) if p["proposer"] == "seed"]
    assert len(seeds) == 1
