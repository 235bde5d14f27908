"""The prompt's "at a bound" hint, for pooled fits and for tasks that fit each group (monkey, neuron) on its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.search.evaluation import at_bounds
from engine.proposers.prompts import diagnostics_text
from islands import Program

REPO = Path(__file__).resolve().parents[3]
DDM = REPO / "tasks/ddm/task.yaml"


def program(source: str, fitted: dict[str, dict[str, float]]) -> Program:
    return Program(id=1, island_id=0, source=source, parent_ids=(), outcome="OK", score=0.0, scores_per_test={},
                   error="", fitted_params=fitted, timings={}, extra_scores={}, behaviour=None, proposer="seed",
                   tokens=0, cost_usd=0.0, canonical_hash="", num_params=3, ast_size=0, created_at=0.0)


SOURCE = '''
def f(params, x):
    PARAMS = {"k": (0.0, 40.0), "k_scale": (0.0, 1.0), "bound": (0.2, 3.0)}
    return x
'''


def test_pooled_and_grouped_fits_are_read_by_declared_name():
    pooled = program(SOURCE, {"all": {"k": 40.0, "k_scale": 0.5, "bound": 0.2}})
    assert at_bounds(pooled, "f") == ["k", "bound"]
    grouped = program(SOURCE, {"B": {"k": 40.0, "k_scale": 0.5, "bound": 1.0},
                               "J": {"k": 12.0, "k_scale": 1.0, "bound": 1.1}})
    assert at_bounds(grouped, "f") == ["k (1 of 2 groups)", "k_scale (1 of 2 groups)"]
    per_unit = program(SOURCE, {"u1": {"bound": 3.0, "k": 5.0}, "u2": {"bound": 3.0, "k": 6.0}})
    assert at_bounds(per_unit, "f") == ["bound (2 of 2 groups)"]
    # a database written before results were grouped: flat names are one pooled group
    assert at_bounds(program(SOURCE, {"k": 40.0, "bound": 1.0}), "f") == ["k"]
    assert "fitted bound=3 [3, 3], k=5.5 [5, 6] (median [range] over 2 groups)" in diagnostics_text(
        0.0, per_unit.fitted_params)


@pytest.mark.slow
def test_a_ddm_drift_fitted_to_its_bound_shows_up_in_the_prompt():
    from engine.search.session import prepare
    from tests.tasks.candidates import MIRROR, candidate_from_source

    os.environ.setdefault("DISCOVER_DATA_MIRROR", str(MIRROR))
    seed = (DDM.parent / "seed.py").read_text()
    narrow = seed.replace('"k": (0.0, 40.0)', '"k": (0.0, 1.0)')  # the monkeys' drift gain is far above 1
    assert narrow != seed
    prepared = prepare(DDM, None, {})
    score = prepared.task.score.load()
    result = score(candidate_from_source(narrow, DDM), prepared.splits["train"], prepared.splits["selection"])
    assert set(result.fitted_params) == {"B", "N"}
    stored = program(narrow, result.record()["fitted_params"])
    hint = at_bounds(stored, "decision")
    assert hint and hint[0].startswith("k")
    assert "at a bound: k" in diagnostics_text(0.0, stored.fitted_params, hint)
