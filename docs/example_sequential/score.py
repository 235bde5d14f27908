"""Scoring for the sequential example: the observer is run through each session trial by trial, its parameters are
fitted by maximum likelihood on the training sessions, and the score is the held-out log-likelihood per trial."""

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec, fit_maximum_likelihood, pad_to
from engine.task.results import TaskResult, pooled_params

N_STATE = 4


def session_log_likelihoods(observer, params, split):
    """The log-likelihood of each session's choices, shape (n_sessions,): the observer's state starts at zeros
    and is carried from trial to trial by `jax.lax.scan`; padded trials (mask 0) count for nothing.

    Trial t's log-odds are formed from the choices before it: the observer is given the previous choice, never
    the one it predicts (a model handed its own answer would score perfectly and mean nothing)."""

    def one_session(strength, choice, mask):
        last_choice = jnp.concatenate([jnp.full((1,), 0.5, choice.dtype), choice[:-1]])

        def step(state, trial):
            log_odds, new_state = observer(params, state, *trial)
            return new_state, log_odds

        _, log_odds = jax.lax.scan(step, jnp.zeros(N_STATE, jnp.float32), (last_choice, strength))
        # log P(choice): log sigmoid(log_odds) for a right choice, log sigmoid(-log_odds) for a left one
        log_p = jax.nn.log_sigmoid(jnp.where(choice > 0.5, log_odds, -log_odds))
        return jnp.sum(log_p * mask)

    return jax.vmap(one_session)(split["strength"], split["choice"], split["mask"])


def score(candidate, train, heldout, seed=0):
    spec = ParamSpec.from_bounds(candidate.PARAMS)
    state = jax.eval_shape(lambda: candidate({n: jnp.float32(0.5) for n in spec.names},
                                             jnp.zeros(N_STATE, jnp.float32), jnp.float32(0.5), jnp.float32(0.0)))
    if not (isinstance(state, tuple) and len(state) == 2 and state[0].shape == () and state[1].shape == (N_STATE,)):
        raise ValueError(f"observer must return (log_odds of shape (), new_state of shape ({N_STATE},)).")
    train = {key: jnp.asarray(value) for key, value in train.items()}
    result = fit_maximum_likelihood(
        None, spec, train, held_out=pad_to(heldout, train),   # held-out terms come from the fit's own program
        log_likelihood_terms=lambda params, data: session_log_likelihoods(candidate, params, data),
        restarts=8, max_steps=100, seed=seed)
    per_session = np.asarray(result.held_out_terms, dtype=float)[:len(heldout["choice"])]
    trials = np.asarray(heldout["mask"]).sum(axis=1)
    return TaskResult(
        score=float(per_session.sum() / trials.sum()),
        train_score=-result.neg_log_likelihood / float(np.asarray(train["mask"]).sum()),
        scores_per_test={f"session_{i}": float(ll / n) for i, (ll, n) in enumerate(zip(per_session, trials))},
        fitted_params=pooled_params(result.params),
        timings=dict(result.timings),
    )
