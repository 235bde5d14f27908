import jax
import jax.numpy as jnp


def agent(params, state, choice, reward):
    """Q-learning with forgetting of the unchosen arm's value and choice perseveration.

    This is the generating model of the synthetic data (tasks/bandit/data.py, GROUND_TRUTH), so on that data
    its held-out score is the ceiling a discovered model can approach.
    """
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0), "forget": (0.0, 1.0), "perseveration": (-5.0, 5.0)}
    q = state[:2]
    q = q.at[choice].add(params["alpha"] * (reward - q[choice]))
    q = q.at[1 - choice].multiply(1.0 - params["forget"])
    last = jax.nn.one_hot(choice, 2)
    logits = params["beta"] * q + params["perseveration"] * last
    return logits, state.at[:2].set(q).at[2:4].set(last)
