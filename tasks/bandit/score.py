"""Scoring for the bandit task: fit the candidate agent on training sessions, score held-out sessions.

score = exp(mean log-probability of each held-out choice): the geometric mean per-trial choice probability
("normalized likelihood"); 0.5 is chance, 1.0 is perfect prediction. Higher is better.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, fit_maximum_likelihood, pad_to
from engine.task.results import TaskResult, pooled_params

N_STATE = 8
Split = Mapping[str, np.ndarray]


def session_log_likelihoods(agent: Callable, params: Mapping[str, jax.Array], split: Split) -> jax.Array:
    """Returns the log-likelihood of each session's choices, shape (n_sessions,).

    The agent's logits after trial t predict the choice on trial t + 1; the first trial of a session has no
    prediction and is not scored.
    """

    def one_session(choices: jax.Array, rewards: jax.Array, mask: jax.Array) -> jax.Array:
        def step(state, trial):
            choice, reward = trial
            logits, new_state = agent(params, state, choice, reward)
            return new_state, logits

        _, logits = jax.lax.scan(step, jnp.zeros(N_STATE, jnp.float32), (choices, rewards))
        log_p = jax.nn.log_softmax(logits[:-1], axis=-1)
        chosen = jnp.take_along_axis(log_p, choices[1:, None], axis=1)[:, 0]
        return jnp.sum(chosen * mask[1:])

    return jax.vmap(one_session)(split["choices"], split["rewards"], split["mask"])


def check_agent(agent: Callable, names: tuple[str, ...]) -> None:
    """Raises ValueError with one sentence when the agent's outputs have the wrong shape."""
    params = {name: jnp.float32(0.5) for name in names}
    outputs = jax.eval_shape(agent, params, jnp.zeros(N_STATE, jnp.float32), jnp.int32(0), jnp.float32(1.0))
    if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2):
        if isinstance(outputs, (tuple, list)):
            found = f"{len(outputs)} values"
        else:
            found = f"one array of shape {getattr(outputs, 'shape', type(outputs).__name__)}"
        raise ValueError(
            f"agent must return a pair (logits of shape (2,), new_state of shape ({N_STATE},)); it returned {found}."
        )
    logits, state = outputs
    if getattr(logits, "shape", None) != (2,):
        raise ValueError(f"agent returned logits of shape {getattr(logits, 'shape', type(logits))}; expected (2,).")
    if getattr(state, "shape", None) != (N_STATE,):
        raise ValueError(f"agent returned a state of shape {getattr(state, 'shape', type(state))}; expected (8,).")


def n_scored_trials(split: Split) -> float:
    return float(np.sum(np.asarray(split["mask"])[:, 1:]))


def score(
    candidate: Callable,
    train: Split,
    heldout: Split,
    seed: int = 0,
    restarts: int = 16,
    max_steps: int = 100,
    optimizer: str = "lbfgs",
) -> TaskResult:
    """Fits the candidate's PARAMS on `train` by maximum likelihood and scores it on `heldout`.

    Returns:
        score: held-out normalized likelihood (geometric mean choice probability per trial).
        train_score: the same on the training sessions.
        extra_scores: train_log_likelihood and n_train_observations, the fitted log-likelihood (nats) of the
            scored training trials and their number (for AIC and BIC).
        scores_per_test: held-out normalized likelihood per session.
        fitted_params: one pooled group, parameter name -> fitted value.
        timings: seconds: "compile_s" and "fit_s" (from the fitter) and "score_s".
    """
    agent = candidate
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    check_agent(agent, spec.names)
    train = {k: jnp.asarray(v) for k, v in train.items()}
    heldout_arrays = {k: jnp.asarray(v) for k, v in heldout.items()}

    result = fit_maximum_likelihood(
        None, spec, train, held_out=pad_to(heldout_arrays, train),
        log_likelihood_terms=lambda params, data: session_log_likelihoods(agent, params, data),
        restarts=restarts, max_steps=max_steps, optimizer=optimizer, seed=seed,
    )
    started = time.perf_counter()
    per_session = np.asarray(result.held_out_terms, dtype=float)[:len(heldout["choices"])]
    trials_per_session = np.asarray(heldout["mask"])[:, 1:].sum(axis=1)
    heldout_score = float(np.exp(per_session.sum() / trials_per_session.sum()))
    if not np.isfinite(heldout_score):
        raise ValueError("the fitted agent gives a non-finite held-out likelihood.")
    timings = {**result.timings, "score_s": time.perf_counter() - started}
    return TaskResult(
        score=heldout_score,
        train_score=float(np.exp(-result.neg_log_likelihood / n_scored_trials(train))),
        extra_scores={"train_log_likelihood": float(-result.neg_log_likelihood),
                      "n_train_observations": n_scored_trials(train)},
        scores_per_test={f"session_{i}": float(np.exp(ll / max(n, 1.0)))
                         for i, (ll, n) in enumerate(zip(per_session, trials_per_session))},
        fitted_params=pooled_params(result.params),
        timings=timings,
    )
