"""`discover task check` on every task file the four shipped tasks have, real data and synthetic twins alike.

Each check validates the spec, scores the seed and the baselines through the run's sandbox path and compares the
seed with the task's `seed_score` (a scoring change without a version bump fails here). On a synthetic twin the
model that generated the data must also beat the seed. Full data: each check takes 10-35 s on two cores, the
neuron checks several minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TASK_FILES = sorted(
    path.relative_to(REPO) for name in ("bandit", "neuron", "tuning", "ddm")
    for path in (REPO / "tasks" / name).glob("*.yaml")
)


def test_each_task_has_a_real_data_file_and_a_synthetic_twin():
    names = {str(path) for path in TASK_FILES}
    assert {"tasks/bandit/human.yaml", "tasks/bandit/task.yaml"} <= names  # bandit: the twin is task.yaml
    for task in ("neuron", "tuning", "ddm"):
        assert {f"tasks/{task}/task.yaml", f"tasks/{task}/synthetic.yaml"} <= names


@pytest.mark.parametrize("task_file", TASK_FILES, ids=str)
def test_task_check_passes(task_file: Path):
    result = subprocess.run(
        # one fit seed: the spread over fit seeds is checked on a toy task (test_task_check_report.py), and here it
        # would cost two more fits of every bundled model
        [sys.executable, "-m", "engine.cli", "task", "check", str(task_file), "--json", "--workers", "2",
         "--fit-seeds", "1"],
        # the neuron checks took 6-8 min each on 2 cores while a second check ran beside them
        capture_output=True, text=True, timeout=1500, cwd=REPO,  # the environment (data mirror) is inherited
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["problems"] == []
    rows = {row["name"]: row for row in report["rows"]}
    assert rows["seed"]["kind"] == "seed" and len(rows) >= 2  # the seed and at least one baseline
    assert all(row["outcome"] == "OK" and row["score"] is not None for row in rows.values()), rows
    for row in rows.values():
        if row["kind"] == "ground_truth":
            assert row["score"] > rows["seed"]["score"], (row["name"], row["score"], rows["seed"]["score"])


def task_check(task_yaml: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "task", "check", str(task_yaml), *flags],
                          capture_output=True, text=True, timeout=600, cwd=REPO)


def test_a_seed_that_fails_makes_the_check_fail_with_its_problem_printed(small_bandit_task: Path):
    seed_py = small_bandit_task.parent / "seed.py"
    seed_py.write_text(seed_py.read_text().replace("    q = state[:2]\n", "    q = state[:2]\n    raise RuntimeError('broken seed')\n"))
    plain = task_check(small_bandit_task)
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert "problem: seed: CRASHED: RuntimeError: broken seed" in plain.stderr
    report = json.loads(task_check(small_bandit_task, "--json").stdout)
    assert report["problems"] == ["seed: CRASHED: RuntimeError: broken seed"]
