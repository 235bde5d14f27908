"""A task written from scratch by following docs/tasks.md runs with no change to engine/, islands/ or sandbox/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def discover(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=900)


def test_the_documented_example_task_checks_and_runs(tmp_path: Path):
    folder = tmp_path / "psychometric"
    shutil.copytree(REPO / "docs" / "example_task", folder)
    check = discover("task", "check", str(folder / "task.yaml"), "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    rows = {row["name"]: row for row in json.loads(check.stdout)["rows"]}
    assert rows["seed"]["outcome"] == "OK" and rows["logistic_lapse"]["outcome"] == "OK"
    assert rows["logistic_lapse"]["score"] > rows["seed"]["score"]

    run = discover("run", str(folder / "task.yaml"), "--db", str(tmp_path / "run.db"), "--max-evals", "6",
                   "--workers", "1", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["evaluations"] == 6

    # its verify.py (the one docs/tasks.md shows) uses only the engine's public recovery loop
    verify = discover("verify", str(tmp_path / "run.db"), "1", "--no-ablation", "--posterior", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    record = json.loads(verify.stdout)
    assert record["verify_outcome"] == "OK", record.get("verify_error")
    assert set(record["recovery"]) == {"bias", "slope"} and min(record["recovery"].values()) > 0.9, record["recovery"]
    assert [figure["title"] for figure in record["figures"]][0] == "Psychometric curve (held-out blocks)"
    assert set(record["posterior"]["all"]) == {"bias", "slope"}  # --posterior: NUTS quantiles around the fit
    for name, (low, median, high) in record["posterior"]["all"].items():
        assert low < record["fitted_params"]["all"][name] < high, (name, record["posterior"])
    assert record["posterior_diagnostics"]["divergences"] == 0


def test_the_documented_sequential_task_checks(tmp_path: Path):
    folder = tmp_path / "choice_history"
    shutil.copytree(REPO / "docs" / "example_sequential", folder)
    check = discover("task", "check", str(folder / "task.yaml"), "--json", "--fit-seeds", "1")
    assert check.returncode == 0, check.stdout + check.stderr
    rows = {row["name"]: row for row in json.loads(check.stdout)["rows"]}
    assert rows["seed"]["outcome"] == "OK" and rows["choice_trace"]["outcome"] == "OK"
    assert rows["choice_trace"]["score"] > rows["seed"]["score"] + 0.02  # the choice trace is found in the data


def test_posterior_is_refused_up_front_when_the_tasks_verify_cannot_give_it(tmp_path: Path):
    folder = tmp_path / "psychometric"
    shutil.copytree(REPO / "docs" / "example_task", folder)
    verify_py = folder / "verify.py"
    verify_py.write_text(verify_py.read_text().replace("seed=0, posterior=False):", "seed=0):"))
    run = discover("run", str(folder / "task.yaml"), "--db", str(tmp_path / "run.db"), "--max-evals", "1",
                   "--workers", "1", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    verify = discover("verify", str(tmp_path / "run.db"), "1", "--posterior")
    assert verify.returncode == 1
    assert "has no verify that takes a `posterior` argument" in verify.stdout + verify.stderr
    assert "Traceback" not in verify.stdout + verify.stderr
