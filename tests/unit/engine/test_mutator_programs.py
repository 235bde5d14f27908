"""Bandit programs used as parents in the mutator tests, and a check that runs a candidate's `agent` once.

The other mutator test modules import `PROGRAMS` and `run_once` from here; the tests below check that every
parent runs, so that a mutant failing to run is the mutator's doing.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from engine.mutation import find_function, read_declaration

BANDIT = Path(__file__).resolve().parents[3] / "tasks" / "bandit"
SEED = (BANDIT / "seed.py").read_text()
GROUND_TRUTH = (BANDIT / "baselines" / "forgetting_perseveration.py").read_text()

PERSEVERATION = '''import jax
import jax.numpy as jnp


def agent(params, state, choice, reward):
    """Q-learning plus a bonus for repeating the last choice."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0), "kappa": (-5.0, 5.0)}
    q = state[:2]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error)
    previous = jax.nn.one_hot(choice, 2)
    logits = params["beta"] * q + params["kappa"] * previous
    return logits, state.at[:2].set(q)
'''

FORGETTING = '''import jax.numpy as jnp


def decay(value, rate):
    """Returns value shrunk towards zero by the fraction rate."""
    return (1.0 - rate) * value


def agent(params, state, choice, reward):
    """Asymmetric learning rates and forgetting of action values."""
    PARAMS = {"alpha_pos": (0.0, 1.0), "alpha_neg": (0.0, 1.0), "beta": (0.0, 20.0), "forget": (0.0, 1.0)}
    q = decay(state[:2], params["forget"])
    prediction_error = reward - q[choice]
    rate = jnp.where(prediction_error > 0.0, params["alpha_pos"], params["alpha_neg"])
    q = q.at[choice].add(rate * prediction_error)
    logits = params["beta"] * jnp.tanh(q)
    return logits, state.at[:2].set(q)
'''

CHOICE_KERNEL = '''import jax
import jax.numpy as jnp


def agent(params, state, choice, reward):
    """Q-learning plus a choice kernel kept in state[2:4]."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0), "alpha_c": (0.0, 1.0), "beta_c": (-5.0, 5.0)}
    q = state[:2]
    kernel = state[2:4]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error)
    kernel = kernel + params["alpha_c"] * (jax.nn.one_hot(choice, 2) - kernel)
    logits = params["beta"] * q + params["beta_c"] * kernel - 0.5 * jnp.mean(q)
    return logits, state.at[:2].set(q).at[2:4].set(kernel)
'''

# Ascending score order, as a prompt shows them (best last).
PROGRAMS = (SEED, PERSEVERATION, FORGETTING, CHOICE_KERNEL, GROUND_TRUTH)


def run_once(source: str, seed: int = 0) -> str:
    """Runs `agent` once in plain JAX on a zero state; returns "" when its outputs are fine, else why not.

    Parameters are drawn uniformly within their declared bounds; choice = 0, reward = 1.0.
    """
    namespace: dict = {}
    try:
        exec(compile(source, "<mutant>", "exec"), namespace)  # noqa: S102 - runs the test's own mutants
        declared = read_declaration(find_function(ast.parse(source), "agent"))
        draw = random.Random(seed)
        params = {name: jnp.float32(draw.uniform(low, high)) for name, (low, high) in declared.items()}
        logits, new_state = namespace["agent"](params, jnp.zeros(8), jnp.int32(0), jnp.float32(1.0))
    except Exception as error:  # noqa: BLE001 - any failure of a mutant is a result here
        return f"{type(error).__name__}: {error}"
    logits, new_state = np.asarray(logits), np.asarray(new_state)
    if logits.shape != (2,) or new_state.shape != (8,):
        return f"shapes {logits.shape} and {new_state.shape}; expected (2,) and (8,)"
    if not (np.all(np.isfinite(logits)) and np.all(np.isfinite(new_state))):
        return "non-finite output"
    return ""



@pytest.mark.parametrize("index", range(len(PROGRAMS)))
def test_every_parent_runs_on_a_zero_state(index: int) -> None:
    assert run_once(PROGRAMS[index]) == ""


def test_run_once_reports_a_wrong_state_shape() -> None:
    broken = SEED.replace("return logits, state.at[:2].set(q)", "return logits, q")
    assert run_once(broken) == "shapes (2,) and (2,); expected (2,) and (8,)"
