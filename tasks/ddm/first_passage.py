"""First-passage-time densities of a diffusion between two bounds: numerical (any drift and bound over time) and
analytic (constant drift and bounds, Navarro & Fuss 2009).

The evidence x(t) starts at 0 and follows dx = drift(t) dt + dW (unit noise: drift is in units of the noise sd
per second, per second). A decision is made when x reaches +bound(t) (the correct choice) or -bound(t) (an error).

`first_passage_densities` solves the Fokker-Planck equation in the scaled coordinate y = x / bound(t), which
turns any smooth bound into the fixed interval (-1, 1):

    dy = (drift / bound - y * bound' / bound) dt + (1 / bound) dW

on a grid of N_SPACE cells with absorbing edges, by backward-Euler steps of the Scharfetter-Gummel operator (a
tridiagonal solve per step). The scheme keeps every mass positive and conserves probability exactly for any drift
and bound, so no candidate can make probability out of numerical error (a central-difference Crank-Nicolson
scheme could, and a search found that); the mass that leaves through each edge in a step is the probability of
that choice in that step. Every coefficient varies smoothly with the drift and the bound, so the densities are
differentiable in the candidate's parameters (forward and reverse mode).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["N_SPACE", "first_passage_densities", "navarro_fuss_density"]

N_SPACE = 40  # cells across (-1, 1), h = 0.05


def first_passage_densities(drift: jax.Array, bound: jax.Array, dt_s: float) -> tuple[jax.Array, jax.Array]:
    """Returns the first-passage densities at the upper (correct) and lower (error) bound, 1/s.

    Args:
        drift: (n_conditions, n_time) drift at times 0, dt, 2 dt, ... per second (noise sd 1 per sqrt(s)).
        bound: (n_conditions, n_time) distance from the start to each bound, > 0 (same units as x).
        dt_s: time step of the grid, s.

    Returns:
        upper, lower: (n_conditions, n_time) densities; entry n is the probability of absorbing during the step
        that ends at time n * dt, divided by dt (entry 0 is 0). Their sum over time times dt is at most 1; the
        remainder has not decided by the end of the grid.
    """
    return jax.vmap(lambda mu, b: _one_condition(mu, b, dt_s))(drift, bound)


def _bernoulli(x: jax.Array) -> jax.Array:
    """B(x) = x / (exp(x) - 1), with B(0) = 1; B(x) -> 0 for large x and B(-x) -> x."""
    small = jnp.abs(x) < 1e-4
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - 0.5 * x, safe / jnp.expm1(safe))


def _operator(drift, bound, bound_rate, y_faces, h):
    """Returns (sub, diag, super) diagonals of the generator L (dP/dt = L P) and the edge exit rates (1/s).

    Scharfetter-Gummel fluxes between neighbouring cells, J = (D / h^2) (B(-theta) P_left - B(theta) P_right) with
    theta = advection * h / D at the face: exact for locally constant coefficients, upwind when advection
    dominates, and every off-diagonal is >= 0, so implicit steps keep the masses positive at any Peclet number.
    """
    advection = drift / bound - y_faces * bound_rate / bound  # at the N_SPACE faces, (N_SPACE,)
    diffusion = 0.5 / (bound * bound)
    d_h2 = diffusion / (h * h)
    theta = advection * h / diffusion
    forward = d_h2 * _bernoulli(-theta)  # rate from the cell left of a face to the cell right of it
    backward = d_h2 * _bernoulli(theta)  # rate from the right cell to the left cell
    # interior cell i (1 .. N_SPACE - 1) has face i - 1/2 = index i - 1 and face i + 1/2 = index i
    zero = jnp.zeros(1, y_faces.dtype)
    sub = jnp.concatenate([zero, forward[1:-1]])  # inflow from cell i - 1 through face i - 1/2
    sup = jnp.concatenate([backward[1:-1], zero])  # inflow from cell i + 1 through face i + 1/2
    diag = -(forward[1:] + backward[:-1])  # outflow of cell i through both faces
    return sub, diag, sup, forward[-1], backward[0]


def _one_condition(drift: jax.Array, bound: jax.Array, dt_s: float) -> tuple[jax.Array, jax.Array]:
    """Backward-Euler steps: (I - dt L) P_new = P_old. L is an M-matrix generator, so the masses stay positive and
    the probability that leaves through the edges is exactly the probability lost by the interior."""
    n_interior = N_SPACE - 1
    h = 2.0 / N_SPACE
    y_faces = -1.0 + h * (jnp.arange(N_SPACE, dtype=drift.dtype) + 0.5)  # faces between cells 0 .. N_SPACE
    start = jnp.zeros(n_interior, drift.dtype).at[n_interior // 2].set(1.0)  # y = 0
    bound_rate = jnp.diff(bound) / dt_s  # bound' over each step, (n_time - 1,)

    def step(mass, inputs):
        mu, b, rate = inputs  # at the end of the step
        sub, diag, sup, exit_up, exit_down = _operator(mu, b, rate, y_faces, h)
        new_mass = jax.lax.linalg.tridiagonal_solve(-dt_s * sub, 1.0 - dt_s * diag, -dt_s * sup, mass[:, None])[:, 0]
        return new_mass, (exit_up * new_mass[-1], exit_down * new_mass[0])

    _, (upper, lower) = jax.lax.scan(step, start, (drift[1:], bound[1:], bound_rate))
    zero = jnp.zeros(1, drift.dtype)
    return jnp.concatenate([zero, upper]), jnp.concatenate([zero, lower])


def navarro_fuss_density(t_s: np.ndarray, drift: float, bound: float, n_terms: int = 10) -> np.ndarray:
    """Returns the analytic density of hitting the upper bound at t_s (1/s), constant drift and bounds.

    Navarro & Fuss (2009), small-time series (2 * n_terms + 1 terms), for a start halfway between bounds at 0
    and 2 * bound with unit noise; the upper-bound density is the lower-bound density of the mirrored process
    (drift -> -drift).

    Args:
        t_s: (n,) decision times, s, > 0.
        drift: drift toward the upper bound, per s.
        bound: distance from the start to each bound.
    """
    t = np.asarray(t_s, dtype=float)
    a = 2.0 * bound  # separation
    v = -drift  # density at the lower bound of the mirrored process
    w = 0.5
    tau = t[None, :] / a**2
    k = np.arange(-n_terms, n_terms + 1)[:, None]
    series = np.sum((w + 2 * k) * np.exp(-((w + 2 * k) ** 2) / (2 * tau)), axis=0) / np.sqrt(2 * np.pi * tau[0] ** 3)
    return np.exp(-v * a * w - v**2 * t / 2) * series / a**2
