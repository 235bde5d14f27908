"""Verification of a fitted bandit agent: parameter recovery and posterior predictive checks.

`verify(candidate, train, heldout, seed)` runs in the trusted scoring worker (`candidate` is the exported
computation, not the candidate's Python) and returns plain data:

- score: the held-out normalized likelihood, exactly as `score.py:score` computes it;
- recovery: K parameter sets are drawn around the fitted ones (Gaussian steps of sd RECOVERY_SD in the fitter's
  unconstrained space), each simulates a data set shaped like `train` with the candidate agent, and all K are
  refitted with the same likelihood and fitter (`engine.fit.parameter_recovery` with `refit_by_likelihood`: the K
  sets batched as groups); recovery[name] is the Pearson r between generating and recovered values, over the sets
  whose refit succeeded; recovery_failed_sets lists the others (no restart with a finite likelihood);
- figures: P(stay) after a win and after a loss, and the probability of choosing the better arm over trials,
  for the held-out sessions and for sessions simulated from the fitted agent in the same environments
  (`engine.fit.posterior_predictive`). `discover verify` adds the recovery scatter itself.

The environment of a session (each arm's reward probability on each trial) is not stored with the data, so it is
estimated from the session itself: each arm's observed outcomes, smoothed over trials with a Gaussian kernel
(sd ENV_SMOOTHING_TRIALS) and a prior of one pseudo-trial at 0.5. For the synthetic restless bandits this tracks
the drifting probabilities; for the human data (fixed 0.8/0.2, 0.7/0.3, 0.6/0.4 pairs) it is close to constant.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, parameter_recovery, posterior_predictive, posterior_summary, refit_by_likelihood
from engine.task.results import POOLED, TaskVerification

from .score import N_STATE, check_agent, score, session_log_likelihoods

Split = Mapping[str, np.ndarray]
N_RECOVERY_SETS = 6
RECOVERY_SD = 0.8
ENV_SMOOTHING_TRIALS = 15.0
N_PREDICTIVE_SIMULATIONS = 10
LEARNING_CURVE_BIN = 10


def estimate_environment(split: Split) -> np.ndarray:
    """Returns each arm's reward probability per trial, (n_sessions, n_trials, 2), from the session's own outcomes."""
    choices, rewards, mask = (np.asarray(split[key]) for key in ("choices", "rewards", "mask"))
    n_trials = choices.shape[1]
    t = np.arange(n_trials, dtype=float)
    kernel = np.exp(-0.5 * ((t[:, None] - t[None, :]) / ENV_SMOOTHING_TRIALS) ** 2)  # (trial, observed trial)
    p = np.empty(choices.shape + (2,))
    for arm in (0, 1):
        chosen = (choices == arm) * mask
        weight = chosen @ kernel.T  # (n_sessions, n_trials)
        reward_sum = (chosen * rewards) @ kernel.T
        p[..., arm] = (reward_sum + 0.5) / (weight + 1.0)
    return np.clip(p, 0.02, 0.98)


def simulate(agent: Callable, params: Mapping[str, jax.Array], environment: jax.Array, mask: jax.Array,
             key: jax.Array) -> dict[str, jax.Array]:
    """Simulates the agent in each session's environment; returns choices, rewards and mask shaped like the data.

    Args:
        environment: (n_sessions, n_trials, 2) reward probability of each arm on each trial.
        mask: (n_sessions, n_trials), copied to the output (padding trials are simulated but never scored).
    """

    def one_session(p_reward, session_key):
        def step(carry, inputs):
            state, logits = carry
            p, trial_key = inputs
            choice_key, reward_key = jax.random.split(trial_key)
            choice = jax.random.categorical(choice_key, logits).astype(jnp.int32)
            reward = (jax.random.uniform(reward_key) < p[choice]).astype(jnp.float32)
            new_logits, new_state = agent(params, state, choice, reward)
            return (new_state, new_logits), (choice, reward)

        keys = jax.random.split(session_key, p_reward.shape[0])
        start = (jnp.zeros(N_STATE, jnp.float32), jnp.zeros(2, jnp.float32))
        _, (choices, rewards) = jax.lax.scan(step, start, (p_reward, keys))
        return choices, rewards

    keys = jax.random.split(key, environment.shape[0])
    choices, rewards = jax.vmap(one_session)(environment, keys)
    return {"choices": choices, "rewards": rewards, "mask": mask}


def stay_probabilities(split: Split) -> tuple[float, float, float, float]:
    """Returns (P(stay | win), P(stay | loss), and their binomial standard errors) over all real trial pairs."""
    choices, rewards, mask = (np.asarray(split[key]) for key in ("choices", "rewards", "mask"))
    valid = (mask[:, 1:] * mask[:, :-1]) > 0
    stay = choices[:, 1:] == choices[:, :-1]
    values = []
    for won in (True, False):
        selected = valid & ((rewards[:, :-1] > 0.5) == won)
        n = max(int(selected.sum()), 1)
        p = float(stay[selected].mean()) if selected.any() else float("nan")
        values.append((p, float(np.sqrt(p * (1 - p) / n)) if np.isfinite(p) else 0.0))
    return values[0][0], values[1][0], values[0][1], values[1][1]


def better_arm_curve(split: Split, environment: np.ndarray) -> tuple[list[float], list[float]]:
    """Returns (bin centres in trials, P(choose the arm with the higher reward probability)) in bins of trials."""
    choices, mask = np.asarray(split["choices"]), np.asarray(split["mask"])
    better = np.argmax(environment, axis=-1)
    correct = (choices == better).astype(float)
    centres, values = [], []
    for start in range(0, choices.shape[1], LEARNING_CURVE_BIN):
        window = slice(start, start + LEARNING_CURVE_BIN)
        weight = mask[:, window].sum()
        if weight < 1:
            continue
        centres.append(start + LEARNING_CURVE_BIN / 2)
        values.append(float((correct[:, window] * mask[:, window]).sum() / weight))
    return centres, values


def verify(candidate: Callable, train: Split, heldout: Split, seed: int = 0,
           n_sets: int = N_RECOVERY_SETS, restarts: int = 4, max_steps: int = 300,
           posterior: bool = False) -> TaskVerification:
    """Scores the candidate, checks parameter recovery around its fit, and returns posterior predictive figures;
    with `posterior` (`discover verify --posterior`) also NUTS quantiles of the parameters on the training data."""
    agent = candidate
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    check_agent(agent, spec.names)
    scored = score(candidate, train, heldout, seed=seed)
    fitted = scored.fitted_params[POOLED]
    run = jax.jit(lambda params, environment, mask, key: simulate(agent, params, environment, mask, key))

    def simulate_split(params, split, rng):
        """Sessions like `split` (its environments, estimated from its outcomes, and its mask), played by the agent."""
        environment = jnp.asarray(split["environment"], jnp.float32)
        simulated = run({name: jnp.float32(value) for name, value in params.items()}, environment,
                        jnp.asarray(split["mask"], jnp.float32), jax.random.PRNGKey(rng.integers(2**31)))
        return {name: np.asarray(value) for name, value in simulated.items()}

    def neg_log_likelihood(params, data):
        return -jnp.sum(session_log_likelihoods(agent, params, data))

    # parameter recovery: sets around the fit, each simulated in the training sessions' environments
    train_design = {"environment": estimate_environment(train), "mask": np.asarray(train["mask"], np.float32)}
    recovery = parameter_recovery(
        spec, [fitted], [train_design], simulate_split,
        refit_by_likelihood(neg_log_likelihood, spec, restarts=restarts, max_steps=max_steps, seed=seed + 1),
        n_sets=n_sets, spread=RECOVERY_SD, seed=seed)

    # posterior predictive checks: N_PREDICTIVE_SIMULATIONS copies of the held-out sessions, played by the fitted agent
    held_env = estimate_environment(heldout)
    held_design = {"environment": held_env, "mask": np.asarray(heldout["mask"], np.float32)}
    fitted_params = {name: value for name, value in fitted.items() if name in spec.names}
    (draws,) = posterior_predictive([fitted_params], [held_design], simulate_split,
                                    n_draws=N_PREDICTIVE_SIMULATIONS, seed=seed + 2)
    model_split = {name: value.reshape((-1,) + value.shape[2:]) for name, value in draws.items()}
    model_env = np.concatenate([held_env] * N_PREDICTIVE_SIMULATIONS)

    data_win, data_loss, se_win, se_loss = stay_probabilities(heldout)
    model_win, model_loss, _, _ = stay_probabilities(model_split)
    stay_figure = {
        "title": "P(stay) after a win and after a loss (held-out sessions)",
        "xlabel": "previous outcome",
        "ylabel": "P(repeat previous choice)",
        "series": [
            {"label": "data", "x": ["win", "loss"], "y": [data_win, data_loss], "kind": "bar", "role": "data",
             "yerr": [se_win, se_loss]},
            {"label": "fitted model (simulated)", "x": ["win", "loss"], "y": [model_win, model_loss],
             "kind": "scatter", "role": "model"},
        ],
    }
    data_x, data_y = better_arm_curve(heldout, held_env)
    model_x, model_y = better_arm_curve(model_split, model_env)
    curve_figure = {
        "title": "Choices of the better arm over trials (held-out sessions)",
        "xlabel": "trial in session",
        "ylabel": "P(choose the arm with the higher reward probability)",
        "series": [
            {"label": "data", "x": data_x, "y": data_y, "kind": "line", "role": "data"},
            {"label": "fitted model (simulated)", "x": model_x, "y": model_y, "kind": "line", "role": "model"},
        ],
    }
    posterior_record = {}
    if posterior:
        train_data = {key: jnp.asarray(train[key]) for key in ("choices", "rewards", "mask")}
        posterior_record = posterior_summary(neg_log_likelihood, spec, train_data, seed=seed)
    return TaskVerification(score=scored.score, fitted_params=scored.fitted_params, recovery=recovery,
                            figures=[stay_figure, curve_figure], posterior=posterior_record)
