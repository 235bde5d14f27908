"""A flexible ceiling for the bandit task: a small GRU trained on the training sessions, scored like any candidate.

The network (baselines/gru.py: `init_weights`, `gru_step`) reads the previous choice and reward and outputs the
logits of the next choice, exactly like an agent. Its weights are trained by full-batch Adam on the training
sessions minus a validation slice (VALIDATION_FRACTION of them, chosen by `seed`); training stops when the
validation log-likelihood has not improved for PATIENCE evaluations, and the best weights are kept. The held-out
score is the task's normalized likelihood (geometric-mean probability of each held-out choice), as in score.py.
How far the best mechanistic model stays below this score bounds how much behaviour it leaves unexplained.

The GRU is this task's own code, imported from its file here in the trusted scorer; the candidate this entry
receives (the exported placeholder `agent` of baselines/gru.py) is not used.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
import types
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from engine.task.results import TaskResult

Split = Mapping[str, np.ndarray]
VALIDATION_FRACTION = 0.2
LEARNING_RATE = 0.01
MAX_STEPS = 1500
EVALUATE_EVERY = 10
PATIENCE = 15


def session_log_likelihoods(gru_step: Callable, weights: Any, hidden_units: int, split: Mapping[str, jax.Array]) -> jax.Array:
    """Returns the log-likelihood of each session's choices (trials 2..n, masked), shape (n_sessions,)."""

    def one_session(choices, rewards, mask):
        def step(hidden, trial):
            logits, hidden = gru_step(weights, hidden, trial[0], trial[1])
            return hidden, logits

        _, logits = jax.lax.scan(step, jnp.zeros(hidden_units), (choices, rewards))
        log_p = jax.nn.log_softmax(logits[:-1], axis=-1)
        chosen = jnp.take_along_axis(log_p, choices[1:, None], axis=1)[:, 0]
        return jnp.sum(chosen * mask[1:])

    return jax.vmap(one_session)(split["choices"], split["rewards"], split["mask"])


def _rows(split: Split, rows: np.ndarray) -> dict[str, jax.Array]:
    return {key: jnp.asarray(np.asarray(split[key])[rows]) for key in ("choices", "rewards", "mask")}


def gru_network() -> types.ModuleType:
    """Returns the GRU's module, baselines/gru.py (`HIDDEN_UNITS`, `init_weights`, `gru_step`)."""
    spec = importlib.util.spec_from_file_location("bandit_gru", Path(__file__).parent / "baselines" / "gru.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def score(candidate: Callable, train: Split, heldout: Split, seed: int = 0) -> TaskResult:
    """Trains the GRU of baselines/gru.py on `train` and scores `heldout` (`candidate` is not used).

    Returns:
        score: held-out normalized likelihood (geometric-mean choice probability per trial).
        train_score: the same on the sessions used for the weight updates.
        scores_per_test: held-out normalized likelihood per session.
        n_weights: number of trained weights; best_step: the Adam step whose weights were kept.
        timings: seconds for "fit" and "score".
    """
    started = time.perf_counter()
    network = gru_network()
    hidden_units = int(network.HIDDEN_UNITS)
    n_sessions = np.asarray(train["choices"]).shape[0]
    order = np.random.default_rng(seed).permutation(n_sessions)
    n_validation = max(1, int(round(VALIDATION_FRACTION * n_sessions)))
    fit_rows, validation_rows = np.sort(order[n_validation:]), np.sort(order[:n_validation])
    fit_split, validation_split = _rows(train, fit_rows), _rows(train, validation_rows)
    fit_trials = float(np.asarray(train["mask"])[fit_rows, 1:].sum())

    def loss(weights, split):
        return -jnp.sum(session_log_likelihoods(network.gru_step, weights, hidden_units, split))

    weights = network.init_weights(jax.random.PRNGKey(seed), hidden_units)
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(weights)

    @jax.jit
    def update(weights, opt_state):
        value, grads = jax.value_and_grad(loss)(weights, fit_split)
        updates, opt_state = optimizer.update(grads, opt_state, weights)
        return optax.apply_updates(weights, updates), opt_state, value

    validation_loss = jax.jit(lambda w: loss(w, validation_split))
    best_loss, best_weights, best_step, waited = np.inf, weights, 0, 0
    for step in range(1, MAX_STEPS + 1):
        weights, opt_state, _ = update(weights, opt_state)
        if step % EVALUATE_EVERY:
            continue
        current = float(validation_loss(weights))
        if current < best_loss - 1e-4:
            best_loss, best_weights, best_step, waited = current, weights, step, 0
        else:
            waited += 1
            if waited >= PATIENCE:
                break
    fit_s = time.perf_counter() - started

    started = time.perf_counter()
    held = {key: jnp.asarray(heldout[key]) for key in ("choices", "rewards", "mask")}
    per_session = np.asarray(
        jax.jit(lambda w, d: session_log_likelihoods(network.gru_step, w, hidden_units, d))(best_weights, held)
    )
    trials_per_session = np.asarray(heldout["mask"])[:, 1:].sum(axis=1)
    heldout_score = float(np.exp(per_session.sum() / trials_per_session.sum()))
    if not np.isfinite(heldout_score):
        raise ValueError("the trained GRU gives a non-finite held-out likelihood.")
    train_ll = float(-loss(best_weights, fit_split))
    return TaskResult(
        score=heldout_score,
        train_score=float(np.exp(train_ll / fit_trials)),
        scores_per_test={f"session_{i}": float(np.exp(ll / max(n, 1.0)))
                         for i, (ll, n) in enumerate(zip(per_session, trials_per_session))},
        fitted_params={},  # the network's weights are not parameters of a model a scientist reads
        extra_scores={"n_weights": float(sum(np.size(leaf) for leaf in jax.tree.leaves(best_weights))),
                      "best_step": float(best_step)},
        timings={"fit_s": fit_s, "score_s": time.perf_counter() - started},
    )
