"""`discover simplify` end to end: real sandbox, real fits, a real SQLite database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.search.evaluation import to_candidate
from engine.verification.refit import Refitter
from engine.search.session import prepare
from engine.verification.simplify import simplify_source, simplify_stored
from islands import ProgramDatabase

pytestmark = pytest.mark.slow

TANGLED = '''import jax
import jax.numpy as jnp


def agent(params, state, choice, reward):
    """Seed model: Q-learning with a softmax choice rule."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 5.0), "w_memory": (-2.0, 2.0)}
    q = state[:2]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error)
    logits = params["beta"] * params["beta"] * q + params["w_memory"] * reward
    return logits, state.at[:2].set(q)
'''

CLEAN = '''import jax
import jax.numpy as jnp


def agent(params, state, choice, reward):
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 25.0)}
    q = state[:2]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error)
    logits = params["beta"] * q
    return logits, state.at[:2].set(q)
'''


def _without_docstring(source: str) -> str:
    module = ast.parse(source)
    function = next(node for node in module.body if isinstance(node, ast.FunctionDef))
    if isinstance(function.body[0], ast.Expr) and isinstance(function.body[0].value, ast.Constant):
        function.body.pop(0)
    return ast.dump(module)


def test_a_cancelling_term_and_a_squared_parameter_simplify_to_the_clean_form(tmp_path: Path, repo: Path):
    # The full bandit task: its fits converge, so an exact reparameterization scores the same; the small copy's
    # shortened fits stop at points that differ by more than its three selection sessions can tell apart.
    task_yaml = repo / "tasks" / "bandit" / "task.yaml"
    prepared = prepare(task_yaml)
    db = tmp_path / "run.db"
    with Refitter(prepared, heldout="selection", workers=2) as refitter:
        seed_result, tangled_result = refitter.evaluate([prepared.task.seed_source, TANGLED])
    with ProgramDatabase.open(db, prepared.config.islands, prepared.meta) as database:
        database.register_seed(to_candidate(seed_result, source=prepared.task.seed_source, parent_ids=(),
                                            island_id=0, proposer="seed"))
        tangled = database.register(to_candidate(tangled_result, source=TANGLED, parent_ids=(1,), island_id=0,
                                                 proposer="test"))

    summary = simplify_stored(db, tangled.id, task_yaml=task_yaml)

    kept = [step["kind"] for step in summary["steps"] if step["kept"]]
    assert kept == ["collapse", "fix_parameter"], summary["steps"]
    with ProgramDatabase.open_readonly(db) as reader:
        simplified = reader.get(summary["new_program_id"])
    assert simplified.parent_ids == (tangled.id,) and simplified.proposer == "simplify"
    assert _without_docstring(simplified.source) == _without_docstring(CLEAN)
    assert "Seed model" not in simplified.source and f"Simplified from program {tangled.id}" in simplified.source
    assert (summary["before"]["num_params"], summary["after"]["num_params"]) == (3, 2)
    assert simplified.score == pytest.approx(tangled.score, abs=2e-3)
    assert "-    logits = params['beta'] * params['beta'] * q" in summary["diff"] or "w_memory" in summary["diff"]


def test_a_program_without_redundancy_comes_back_unchanged(repo: Path):
    prepared = prepare(repo / "tasks" / "bandit" / "task.yaml")
    with Refitter(prepared, heldout="selection", workers=2) as refitter:
        result = simplify_source(prepared.task.seed_source, "agent", refitter, prepared.task.file.per_test_units)
    assert not result.changed
    assert result.source == prepared.task.seed_source
    assert result.steps and not any(step.kept for step in result.steps)
