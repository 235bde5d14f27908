import jax


def psychometric(params, strength):
    """Returns P(choice = right) for each trial, shape (n_trials,).

    Args:
        params: dict of fitted scalars, declared in PARAMS.
        strength: (n_trials,) signed stimulus strength, % (negative = leftward evidence).

    Seed model: a logistic function with a bias and a slope.
    """
    PARAMS = {"bias": (-20.0, 20.0), "slope": (0.0, 1.0)}
    return jax.nn.sigmoid(params["slope"] * (strength - params["bias"]))
