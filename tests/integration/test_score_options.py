"""task.yaml's score_options reach the task's score function in the scoring worker, and nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.verification.checks import evaluate_sources
from engine.search.session import prepare
from sandbox.results import Outcome

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def example_task(folder: Path, options: str) -> Path:
    shutil.copytree(REPO / "docs" / "example_task", folder)
    text = (folder / "task.yaml").read_text().replace("score_options: {restarts: 8}", f"score_options: {options}")
    (folder / "task.yaml").write_text(text)
    return folder / "task.yaml"


def test_the_score_gets_the_options_and_verify_does_not(tmp_path):
    usual = prepare(example_task(tmp_path / "usual", "{restarts: 8}"))
    hurried = prepare(example_task(tmp_path / "hurried", "{restarts: 1, max_steps: 1}"))
    seed = usual.task.seed_source
    verify_entry = str(hurried.task.resolve_entry(hurried.task.file.verify, "verify"))
    full = evaluate_sources(usual, {"seed": (seed, None)}, heldout="selection", workers=1)["seed"]
    results = evaluate_sources(hurried, {"seed": (seed, None), "verify": (seed, verify_entry)},
                               heldout="selection", workers=1)
    assert full.outcome is Outcome.OK and results["seed"].outcome is Outcome.OK, results["seed"].error
    assert full.scores["score"] == pytest.approx(-0.4425, abs=0.002)  # the task's stated seed_score
    assert results["seed"].scores["score"] < full.scores["score"] - 0.05  # one step of one restart: far from it
    # verify takes (candidate, train, heldout, seed) only: given restarts=1 it would fail with a TypeError
    assert results["verify"].outcome is Outcome.OK, results["verify"].error
