import jax
import jax.numpy as jnp


def decision(params, coherence, time_s):
    """The standard drift-diffusion model (Ratcliff 1978; Palmer, Huk & Shadlen 2005): drift = k * coherence,
    bounds fixed at +/- bound, a non-decision time. The same model as the seed.

    Returns drift (n_coherences, n_time) per s, bound (n_coherences, n_time) and nondecision_s (scalar, s).
    """
    PARAMS = {"k": (0.0, 40.0), "bound": (0.2, 3.0), "nondecision_s": (0.05, 0.6)}
    ones = jnp.ones((coherence.shape[0], time_s.shape[0]), time_s.dtype)
    drift = params["k"] * coherence[:, None] * ones
    bound = params["bound"] * ones
    return drift, bound, params["nondecision_s"]
