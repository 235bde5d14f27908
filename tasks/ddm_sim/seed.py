import jax
import jax.numpy as jnp


def simulate(params, coherence, key):
    """Simulates one decision per trial of a random-dot motion reaction-time task.

    The evidence x starts at 0 and is accumulated in steps of DT_S = 5 ms up to 2 s:
    x += drift * dt + sqrt(dt) * N(0, 1) (noise sd 1 per sqrt(s), which sets the units of drift and bound).
    The correct target is chosen when x first reaches +bound, the wrong one at -bound; the reaction time is that
    moment plus a non-decision time. A trial still undecided at 2 s is decided by the sign of x, at 2 s.
    Collapsing bounds, urgency, variable drift or starting point are all written here.

    Args:
        params: dict of free parameters (constrained values, scalars), declared in PARAMS below.
        coherence: (n_trials,) float array, motion strength as a proportion of coherent dots (0 to 0.512).
        key: a JAX PRNG key; all randomness must come from it.

    Returns:
        correct: (n_trials,) bool, True when the correct target was chosen.
        rt_s: (n_trials,) float, reaction time from motion onset to the saccade, s.

    Seed model: the standard drift-diffusion model, drift = k * coherence, fixed bounds.
    """
    PARAMS = {"k": (0.0, 40.0), "bound": (0.2, 3.0), "nondecision_s": (0.05, 0.6)}
    dt_s = 0.005
    n_steps = 400
    time_s = dt_s * jnp.arange(1, n_steps + 1, dtype=jnp.float32)
    drift = params["k"] * coherence
    noise = jax.random.normal(key, (coherence.shape[0], n_steps))
    x = jnp.cumsum(drift[:, None] * dt_s + jnp.sqrt(dt_s) * noise, axis=1)
    bound = params["bound"] * jnp.ones_like(time_s)
    crossed = jnp.abs(x) >= bound[None, :]
    decided = jnp.any(crossed, axis=1)
    first = jnp.argmax(crossed, axis=1)
    x_at_decision = jnp.take_along_axis(x, first[:, None], axis=1)[:, 0]
    correct = jnp.where(decided, x_at_decision > 0, x[:, -1] > 0)
    rt_s = jnp.where(decided, time_s[first], time_s[-1]) + params["nondecision_s"]
    return correct, rt_s
