"""What `discover task check` reports about a task's seed_score and its tolerance, and its exit status, on a toy task
whose score moves with the fit seed by a known amount (0.01 per seed), through the real sandbox."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs `discover task check` through the sandbox (6-23 s)

SEED = 'def model(params, x):\n    PARAMS = {"a": (0.0, 1.0)}\n    return x\n'
SCORE = '''def score(candidate, train, heldout, seed=0):
    return {"score": float(candidate({"a": 0.5}, heldout["x"])) + 0.01 * seed}
'''
DATA = '''def load():
    return {"train": {"x": 1.0}, "selection": {"x": 1.0}, "test": {"x": 1.0}}
'''
TASK = '''name: toy
version: 1
summary: A score that moves by 0.01 per fit seed.
evolve: seed.py:model
inputs: {{x: float32}}
score: score.py:score
data: data.py:load
{extra}limits: {{timeout_s: 20, memory_mb: 1024}}
allowed_imports: [math]
baselines:
  near: {{file: near.py, kind: literature}}
'''


def toy_task(folder: Path, extra: str = "", near: str = 'def model(params, x):\n    PARAMS = {"a": (0.0, 1.0)}\n    return x + 0.03\n',
             score: str = SCORE, limits: str = "{timeout_s: 20, memory_mb: 1024}") -> Path:
    folder.mkdir(parents=True)
    for name, text in (("seed.py", SEED), ("score.py", score), ("data.py", DATA), ("near.py", near),
                       ("task.yaml", TASK.format(extra=extra).replace("{timeout_s: 20, memory_mb: 1024}", limits))):
        (folder / name).write_text(text)
    return folder / "task.yaml"


def check(task_yaml: Path, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    plain = subprocess.run([sys.executable, "-m", "engine.cli", "task", "check", str(task_yaml), *flags],
                           capture_output=True, text=True, timeout=300)
    as_json = subprocess.run([sys.executable, "-m", "engine.cli", "task", "check", str(task_yaml), *flags, "--json"],
                             capture_output=True, text=True, timeout=300)
    assert as_json.returncode == plain.returncode, as_json.stderr
    return plain, json.loads(as_json.stdout)


FAR = 'def model(params, x):\n    PARAMS = {"a": (0.0, 1.0)}\n    return x + 0.5\n'


def test_everything_in_order_passes_with_status_0(tmp_path: Path):
    plain, report = check(toy_task(tmp_path / "toy", "seed_score: 1.0\nseed_score_tolerance: 0.05\n", near=FAR))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert report["passed"] and report["problems"] == [] and report["warnings"] == [] and report["suggested"] == {}
    assert report["seed_scores"] == pytest.approx([1.0, 1.01, 1.02]) and report["fit_seeds"] == [0, 1, 2]
    assert "seed with fit seeds 0, 1, 2: 1.0000, 1.0100, 1.0200" in plain.stdout
    assert "task check: passed" in plain.stdout


def test_a_drifted_seed_fails_with_the_problem_printed(tmp_path: Path):
    plain, report = check(toy_task(tmp_path / "toy", "seed_score: 1.5\nseed_score_tolerance: 0.05\n"), "--fit-seeds", "1")
    assert plain.returncode == 1
    assert f"problem: seed: {tmp_path / 'toy' / 'task.yaml'}: expected the seed to score 1.5 ± 0.05 (seed_score), " \
           "got 1.0000" in plain.stderr
    assert not report["passed"] and len(report["problems"]) == 1


def test_output_that_scoring_rejects_fails_the_check(tmp_path: Path):
    rejected = ('def model(params, x):\n    PARAMS = {"a": (0.0, 1.0)}\n'
                "    raise ValueError('model returned shape (3,); expected (1,)')\n")
    plain, report = check(toy_task(tmp_path / "toy", "seed_score: 1.0\nseed_score_tolerance: 0.05\n", near=rejected))
    assert plain.returncode == 1
    assert "problem: near: INVALID_OUTPUT: ValueError: model returned shape (3,); expected (1,)" in plain.stderr
    assert report["problems"] == ["near: INVALID_OUTPUT: ValueError: model returned shape (3,); expected (1,)"]


def test_a_tolerance_smaller_than_the_spread_over_fit_seeds_fails_and_says_what_it_needs(tmp_path: Path):
    plain, report = check(toy_task(tmp_path / "toy", "seed_score: 1.0\nseed_score_tolerance: 0.005\n"))
    assert plain.returncode == 1
    assert report["problems"] == [
        "seed: with fit seed 2 it scores 1.0200, 0.0200 from seed_score 1, beyond seed_score_tolerance 0.005, so "
        "`discover run --seed 2` would stop on an ordinary fit; set seed_score_tolerance to 0.04 (twice the largest "
        "distance over fit seeds 0-2)."
    ]
    assert report["suggested"] == {"seed_score_tolerance": 0.04}


def test_a_tolerance_as_wide_as_the_gap_to_a_baseline_warns(tmp_path: Path):
    plain, report = check(toy_task(tmp_path / "toy", "seed_score: 1.0\nseed_score_tolerance: 0.3\n", near=FAR))
    assert plain.returncode == 0
    assert report["warnings"] == [
        "seed_score_tolerance 0.3 is at least half the gap between the seed and near (0.5000): a change in scoring "
        "that large would pass unnoticed; it could be 0.04."
    ]
    assert f"warning: {report['warnings'][0]}" in plain.stderr
    # A baseline closer than the seed's own spread: the tolerance cannot be smaller, and the warning says so.
    _, report = check(toy_task(tmp_path / "close", "seed_score: 1.0\nseed_score_tolerance: 0.04\n"))
    assert report["warnings"][0].endswith(
        "the seed's own spread over fit seeds needs it, so the check only sees larger changes.")


def test_a_missing_seed_score_gets_a_suggested_value_and_tolerance(tmp_path: Path):
    plain, report = check(toy_task(tmp_path / "toy"))
    assert plain.returncode == 0
    assert report["suggested"] == {"seed_score": 1.0, "seed_score_tolerance": 0.04}
    assert "suggestion: seed_score is not set; put seed_score: 1, seed_score_tolerance: 0.04 in" in plain.stdout


def test_a_seed_that_uses_over_a_third_of_timeout_s_warns_and_says_what_to_set(tmp_path: Path):
    slow = "import time\n\n\n" + SCORE.replace("    return", "    time.sleep(2.0)\n    return")
    plain, report = check(toy_task(tmp_path / "toy", "seed_score: 1.0\nseed_score_tolerance: 0.05\n", near=FAR,
                                   score=slow, limits="{timeout_s: 5, memory_mb: 1024}"), "--fit-seeds", "1")
    assert plain.returncode == 0, plain.stderr
    assert 2.0 <= report["seed_time_s"] < 5 and report["timeout_s"] == 5
    (warning,) = report["warnings"]
    assert warning.startswith(f"the seed took {report['seed_time_s']:.1f} s")
    assert warning.endswith(", more than a third of limits.timeout_s 5: candidates with more parameters fit for longer "
                            "and would end as TIMEOUT; set limits.timeout_s to at least 10 in task.yaml (see Sizing "
                            "limits in docs/tasks.md).")
    # The plain run timed its own seed, so only the number in its warning may differ.
    plain_warning = re.search(r"warning: the seed took \d+\.\d s(, more than a third.*)$", plain.stderr, re.MULTILINE)
    assert plain_warning and warning.endswith(plain_warning.group(1)) and "seed: 2." in plain.stdout
