def observer(params, state, last_choice, strength):
    """The generating model of the synthetic data: a logistic psychometric function plus a decaying trace of
    past choices (+1 right, -1 left) that pulls each choice towards the recent ones."""
    PARAMS = {"bias": (-20.0, 20.0), "slope": (0.0, 1.0), "history": (-3.0, 3.0), "decay": (0.0, 1.0)}
    trace = params["decay"] * state[0] + (2.0 * last_choice - 1.0)
    log_odds = params["slope"] * (strength - params["bias"]) + params["history"] * trace
    return log_odds, state.at[0].set(trace)
