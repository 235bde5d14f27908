import jax
import jax.numpy as jnp


def decision(params, coherence, time_s):
    """A decision process for random-dot motion: noisy evidence accumulated to one of two bounds.

    The evidence x starts at 0 and follows dx = drift(t) dt + dW (the noise sd is fixed at 1 per sqrt(s), which
    sets the units of drift and bound). The monkey chooses the correct target when x reaches +bound(t) and the
    wrong one when x reaches -bound(t); the reaction time is that moment plus a non-decision time. Urgency,
    collapsing bounds or a drift that changes over the trial are all written through drift(t) and bound(t).

    Args:
        params: dict of free parameters (constrained values, scalars), declared in PARAMS below.
        coherence: (n_coherences,) float array, motion strength as a proportion of coherent dots (0 to 0.512).
        time_s: (n_time,) float array, time since the decision process started, s (0, 0.005, ..., 2.0).

    Returns:
        drift: (n_coherences, n_time) drift toward the correct bound, per s.
        bound: (n_coherences, n_time) distance from the start to each bound, > 0.
        nondecision_s: scalar non-decision time (sensory and motor delays), s.

    Seed model: the standard drift-diffusion model, drift = k * coherence and fixed bounds.
    """
    PARAMS = {"k": (0.0, 40.0), "bound": (0.2, 3.0), "nondecision_s": (0.05, 0.6)}
    ones = jnp.ones((coherence.shape[0], time_s.shape[0]), time_s.dtype)
    drift = params["k"] * coherence[:, None] * ones
    bound = params["bound"] * ones
    return drift, bound, params["nondecision_s"]
