import jax
import jax.numpy as jnp


def simulate(params, coherence, key):
    """Drift-diffusion with collapsing bounds (Ditterich 2006; Hawkins et al. 2015), simulated in 5 ms steps to 2 s:
    the bound falls from `bound` toward (1 - collapse) * bound, halfway there at t_half_s (a hyperbolic collapse),
    so long trials end with less evidence. Drift = k * coherence; a non-decision time. A trial undecided at 2 s is
    decided by the sign of the evidence.

    Args: params (constrained scalars, PARAMS below), coherence (n_trials,) proportion, key (JAX PRNG key).
    Returns: correct (n_trials,) bool, rt_s (n_trials,) float reaction time, s.
    """
    PARAMS = {
        "k": (0.0, 40.0),
        "bound": (0.2, 3.0),
        "collapse": (0.0, 0.99),
        "t_half_s": (0.05, 2.0),
        "nondecision_s": (0.05, 0.6),
    }
    dt_s = 0.005
    n_steps = 400
    time_s = dt_s * jnp.arange(1, n_steps + 1, dtype=jnp.float32)
    drift = params["k"] * coherence
    noise = jax.random.normal(key, (coherence.shape[0], n_steps))
    x = jnp.cumsum(drift[:, None] * dt_s + jnp.sqrt(dt_s) * noise, axis=1)
    bound = params["bound"] * (1.0 - params["collapse"] * time_s / (time_s + params["t_half_s"]))
    crossed = jnp.abs(x) >= bound[None, :]
    decided = jnp.any(crossed, axis=1)
    first = jnp.argmax(crossed, axis=1)
    x_at_decision = jnp.take_along_axis(x, first[:, None], axis=1)[:, 0]
    correct = jnp.where(decided, x_at_decision > 0, x[:, -1] > 0)
    rt_s = jnp.where(decided, time_s[first], time_s[-1]) + params["nondecision_s"]
    return correct, rt_s
