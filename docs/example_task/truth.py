import jax


def psychometric(params, strength):
    """The generating model of the synthetic data: a logistic function with symmetric lapses."""
    PARAMS = {"bias": (-20.0, 20.0), "slope": (0.0, 1.0), "lapse": (0.0, 0.5)}
    return params["lapse"] + (1.0 - 2.0 * params["lapse"]) * jax.nn.sigmoid(params["slope"] * (strength - params["bias"]))
