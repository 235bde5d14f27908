"""Shared fixtures: the offline data mirror, the repository root, a fast bandit task."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data"

# Tests never reach the network for data: the mirror beside the checkout stands in for the public origins.
if MIRROR.is_dir():
    os.environ.setdefault("DISCOVER_DATA_MIRROR", str(MIRROR))
os.environ.setdefault("DISCOVER_CACHE", str(REPO / ".pytest_cache" / "discover-data"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

#: The test files that take longest, with one worker's seconds in a full parallel run on 2 cores (load 4, 2026-12-08).
#: They are handed to the workers first (pyproject.toml turns off pytest-xdist's own order, which is by number of
#: tests per file and started the 331 s twin recovery, a file of one test, among the last), so that a parallel run
#: does not end with one worker on a long file while the others idle. The other files follow in collection order.
RUN_FIRST = (
    "tests/integration/test_task_checks.py",  # 662 s: the neuron checks 283 s and 210 s
    "tests/tasks/test_neuron_twin_recovery.py",  # 331 s
    "tests/tasks/test_ddm_sim.py",  # 263 s
    "tests/integration/test_cli_run.py",  # 233 s
    "tests/tasks/test_ddm.py",  # 199 s
    "tests/integration/test_task_check_report.py",  # 188 s
    "tests/integration/test_llm_run.py",  # 185 s
    "tests/integration/test_new_task.py",  # 128 s
    "tests/tasks/test_neuron.py",  # 103 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Puts RUN_FIRST's files first, in its order; the sort is stable, so tests keep their order within a file."""
    rank = {REPO / path: i for i, path in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.resolve(), len(RUN_FIRST)))


@pytest.fixture
def repo() -> Path:
    return REPO


def _small_bandit_task(root: Path) -> Path:
    import shutil

    folder = root / "bandit"
    shutil.copytree(REPO / "tasks" / "bandit", folder, ignore=shutil.ignore_patterns("__pycache__"))
    text = (folder / "task.yaml").read_text()
    text = text.replace("data_options: {source: synthetic, n_sessions: 40, n_trials: 200, seed: 0}",
                        "data_options: {source: synthetic, n_sessions: 15, n_trials: 100, seed: 0}")
    # The GRU ceiling has its own tests; runs and reports built on this small copy do without it. The stated
    # seed_score is the full task's: with less data and a shorter fit the copy's seed scores otherwise.
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(("gru:", "seed_score"))) + "\n"
    (folder / "task.yaml").write_text(text + "score_options: {restarts: 4}\n")
    return folder / "task.yaml"


@pytest.fixture
def small_bandit_task(tmp_path: Path) -> Path:
    """A copy of the bandit task with less data and fewer restarts (score_options), for quick end-to-end runs."""
    return _small_bandit_task(tmp_path)


@pytest.fixture(scope="session")
def small_bandit_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(task.yaml, database, run summary) of one real 16-evaluation run, shared by the inspection tests."""
    import json
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("small_run")
    task = _small_bandit_task(root)
    db = root / "run.db"
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(task), "--db", str(db), "--max-evals", "16",
         "--workers", "2", "--json"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return task, db, json.loads(result.stdout)
