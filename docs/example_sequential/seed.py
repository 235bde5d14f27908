import jax
import jax.numpy as jnp


def observer(params, state, last_choice, strength):
    """One trial of a two-alternative choice task: updates the memory with the previous trial's choice, then
    returns the log-odds of a rightward choice on this trial and the new memory.

    Args:
        params: dict of fitted scalars, declared in PARAMS.
        state: (4,) float array of memory slots; all zeros before the first trial of a session.
        last_choice: float scalar, the previous trial's choice (1.0 = right, 0.0 = left; 0.5 on a session's
            first trial, which has none).
        strength: float scalar, this trial's signed stimulus strength, % (negative = leftward evidence).

    Returns:
        log_odds: float scalar, log P(right) - log P(left) on this trial.
        new_state: (4,) float array carried to the next trial.

    Seed model: a logistic psychometric function; every trial is independent of the ones before.
    """
    PARAMS = {"bias": (-20.0, 20.0), "slope": (0.0, 1.0)}
    log_odds = params["slope"] * (strength - params["bias"])
    return log_odds, state
