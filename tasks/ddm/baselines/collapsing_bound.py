import jax
import jax.numpy as jnp


def decision(params, coherence, time_s):
    """Drift-diffusion with collapsing bounds (Ditterich 2006; Hawkins et al. 2015): the bound falls from
    `bound` toward (1 - collapse) * bound, halfway there at t_half_s (a hyperbolic collapse), so long trials end
    with less evidence. Drift = k * coherence; a non-decision time.

    Returns drift (n_coherences, n_time) per s, bound (n_coherences, n_time) and nondecision_s (scalar, s).
    """
    PARAMS = {
        "k": (0.0, 40.0),
        "bound": (0.2, 3.0),
        "collapse": (0.0, 0.99),
        "t_half_s": (0.05, 2.0),
        "nondecision_s": (0.05, 0.6),
    }
    ones = jnp.ones((coherence.shape[0], time_s.shape[0]), time_s.dtype)
    drift = params["k"] * coherence[:, None] * ones
    shape = 1.0 - params["collapse"] * time_s / (time_s + params["t_half_s"])
    bound = params["bound"] * shape[None, :] * ones
    return drift, bound, params["nondecision_s"]
