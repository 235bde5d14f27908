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


def program(source: str, fitted: dict[str, float]) -> Program:
    return Program(id=1, island_id=0, source=source, parent_ids=(), outcome="OK", score=0.0, scores_per_test={},
                   error="", fitted_params=fitted, timings={}, extra_scores={}, behaviour=None, proposer="seed",
                   tokens=0, cost_usd=0.0, canonical_hash="", num_params=len(fitted), ast_size=0, created_at=0.0)


SOURCE = '''
def f(params, x):
    PARAMS = {"k": (0.0, 40.0), "k_scale": (0.0, 1.0), "bound": (0.2, 3.0)}
    return x
'''


def test_pooled_and_grouped_names_are_found():
    pooled = program(SOURCE, {"k": 40.0, "k_scale": 0.5, "bound": 0.2})
    assert at_bounds(pooled, "f") == ["k", "bound"]
    grouped = program(SOURCE, {"k_B": 40.0, "k_J": 12.0, "k_scale_B": 0.5, "k_scale_J": 1.0, "bound_B": 1.0,
                               "bound_J": 1.1})
    assert at_bounds(grouped, "f") == ["k (1 of 2 groups)", "k_scale (1 of 2 groups)"]
    per_unit = program(SOURCE, {"bound[u1]": 3.0, "bound[u2]": 3.0, "k[u1]": 5.0, "k[u2]": 6.0})
    assert at_bounds(per_unit, "f") == ["bound (2 of 2 groups)"]


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
    assert "k_B" in result["fitted_params"]
    stored = program(narrow, result["fitted_params"])
    hint = at_bounds(stored, "decision")
    assert hint and hint[0].startswith("k")
    assert "at a bound: k" in diagnostics_text(0.0, stored.fitted_params, hint)
