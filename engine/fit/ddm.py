"""The drift-diffusion model's first-passage-time density, in JAX (Navarro & Fuss, 2009).

A diffusion starts at `starting_point * boundary_separation` between an absorbing lower boundary at 0 and an
upper one at `boundary_separation`, drifts at `drift` per second with unit diffusion coefficient, and the
response is recorded `non_decision_time_s` after it hits a boundary. `wiener_log_density` gives the log joint
density of (choice, reaction time); it is differentiable in every parameter, so tasks can fit it with
`fit_maximum_likelihood`.

Reference: Navarro, D. J. & Fuss, I. G. (2009). Fast and accurate calculations for first-passage times in
Wiener diffusion models. J Math Psychol 53:222-230.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["wiener_log_density", "wiener_upper_probability"]

SERIES_TERMS = 12  # terms in each series; with the switching rule below, enough for float32 precision
SERIES_ERROR = 1e-7  # error target of the Navarro & Fuss rule that picks the small- or large-time series


def _standard_lower_density(u: jax.Array, w: jax.Array) -> jax.Array:
    """Density of hitting the lower boundary at normalized time u = t / a**2, for drift 0, a = 1, start w."""
    u = jnp.maximum(u, 1e-10)
    # number of terms each series needs for SERIES_ERROR (Navarro & Fuss 2009, eqs. 5 and 6)
    pi_u_error = math.pi * u * SERIES_ERROR
    large_terms = jnp.where(
        pi_u_error < 1.0,
        jnp.maximum(jnp.sqrt(-2.0 * jnp.log(jnp.minimum(pi_u_error, 0.999)) / (math.pi**2 * u)),
                    1.0 / (math.pi * jnp.sqrt(u))),
        1.0 / (math.pi * jnp.sqrt(u)),
    )
    small_bound = 2.0 * jnp.sqrt(2.0 * math.pi * u) * SERIES_ERROR
    small_terms = jnp.where(
        small_bound < 1.0,
        jnp.maximum(2.0 + jnp.sqrt(-2.0 * u * jnp.log(jnp.minimum(small_bound, 0.999))), jnp.sqrt(u) + 1.0),
        2.0,
    )
    use_small = small_terms < large_terms

    # small-time series: (2 pi u^3)^(-1/2) sum_k (w + 2k) exp(-(w + 2k)^2 / (2u)), k = -K..K
    half = SERIES_TERMS // 2
    term_axis = (1,) * u.ndim + (-1,)  # the series terms run along a new last axis
    k_small = jnp.arange(-half, half + 1, dtype=u.dtype).reshape(term_axis)
    offsets = w[..., None] + 2.0 * k_small
    u_small = jnp.where(use_small, u, 1.0)[..., None]
    small = jnp.sum(offsets * jnp.exp(-(offsets**2) / (2.0 * u_small)), axis=-1)
    small = small / jnp.sqrt(2.0 * math.pi * u_small[..., 0] ** 3)

    # large-time series: pi sum_k k exp(-k^2 pi^2 u / 2) sin(k pi w), k = 1..K
    k_large = jnp.arange(1, SERIES_TERMS + 1, dtype=u.dtype).reshape(term_axis)
    u_large = jnp.where(use_small, 1.0, u)[..., None]
    large = math.pi * jnp.sum(
        k_large * jnp.exp(-(k_large**2) * math.pi**2 * u_large / 2.0) * jnp.sin(k_large * math.pi * w[..., None]),
        axis=-1,
    )
    return jnp.where(use_small, small, large)


def wiener_log_density(
    rt_s: jax.Array,
    upper: jax.Array,
    drift: jax.Array,
    boundary_separation: jax.Array,
    starting_point: jax.Array,
    non_decision_time_s: jax.Array,
) -> jax.Array:
    """Returns the log joint density of each (choice, reaction time) under the drift-diffusion model.

    Args:
        rt_s: reaction times in seconds, shape (n_trials,) (any shape; the others broadcast against it).
        upper: bool or 0/1 array, true where the response was the upper boundary, same shape as rt_s.
        drift: drift rate towards the upper boundary (1/s, unit diffusion coefficient).
        boundary_separation: distance between the boundaries (> 0).
        starting_point: start as a fraction of boundary_separation, in (0, 1); 0.5 is unbiased.
        non_decision_time_s: time added to the first-passage time (s). A trial faster than it is impossible
            under the model; it gets log density -1e4 rather than -inf, so that gradients stay finite.

    Returns:
        log density (nats, per second of reaction time), shape of rt_s.
    """
    rt_s = jnp.asarray(rt_s)
    dtype = rt_s.dtype if jnp.issubdtype(rt_s.dtype, jnp.floating) else jnp.float32
    rt_s = rt_s.astype(dtype)
    upper = jnp.asarray(upper).astype(bool)
    drift, boundary_separation, starting_point, non_decision_time_s = (
        jnp.broadcast_to(jnp.asarray(x, dtype=dtype), rt_s.shape)
        for x in (drift, boundary_separation, starting_point, non_decision_time_s)
    )
    decision_time = rt_s - non_decision_time_s
    valid = decision_time > 0
    decision_time = jnp.where(valid, decision_time, 1.0)
    # the upper boundary is the lower boundary of the mirrored process: drift -> -drift, w -> 1 - w
    v = jnp.where(upper, -drift, drift)
    w = jnp.where(upper, 1.0 - starting_point, starting_point)
    a = boundary_separation
    standard = _standard_lower_density(decision_time / a**2, w)
    log_density = (
        -v * a * w - v**2 * decision_time / 2.0 - 2.0 * jnp.log(a) + jnp.log(jnp.maximum(standard, 1e-30))
    )
    return jnp.where(valid, log_density, -1e4)


def wiener_upper_probability(drift: jax.Array, boundary_separation: jax.Array,
                             starting_point: jax.Array) -> jax.Array:
    """Returns the probability that the diffusion ends at the upper boundary (closed form)."""
    v, a, w = drift, boundary_separation, starting_point
    # P(upper) = (1 - exp(-2 v a w)) / (1 - exp(-2 v a)), evaluated for |v| (stable) and mirrored for v < 0;
    # as v -> 0 it tends to w
    flip = v < 0
    v_abs = jnp.maximum(jnp.abs(v), 1e-6)
    w_toward = jnp.where(flip, 1.0 - w, w)
    p_toward = jnp.expm1(-2.0 * v_abs * a * w_toward) / jnp.expm1(-2.0 * v_abs * a)
    p_upper = jnp.where(flip, 1.0 - p_toward, p_toward)
    return jnp.where(jnp.abs(v) < 1e-6, w, p_upper)
