import jax
import jax.numpy as jnp


def agent(params, state, choice, reward):
    """One trial of a learner in a two-armed bandit; returns the logits of its next choice and its new state.

    Args:
        params: dict of free parameters (constrained values, scalars), declared in PARAMS below.
        state: (8,) float array of memory slots; all zeros before the first trial of a session.
        choice: int scalar, the arm chosen on this trial (0 or 1).
        reward: float scalar, the reward received on this trial (0.0 or 1.0).

    Returns:
        logits: (2,) float array; softmax(logits) is the probability of each arm on the next trial.
        new_state: (8,) float array carried to the next trial.

    Seed model: Q-learning with a softmax choice rule.
    """
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
    q = state[:2]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error)
    logits = params["beta"] * q
    return logits, state.at[:2].set(q)
