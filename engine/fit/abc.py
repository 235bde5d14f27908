"""Simulation-based inner loop: population Monte Carlo ABC for simulators without a tractable likelihood.

Sequential Monte Carlo ABC (Beaumont, Cornuet, Marin & Robert 2009, Biometrika 96:983) with an adaptive
tolerance: each generation keeps the proposals whose summary statistics lie within epsilon of the observed
ones, and the next epsilon is a quantile of the accepted distances. Particles live in the unconstrained space
of `ParamSpec.constrain`, where the uniform prior on the PARAMS box is a standard logistic prior; proposals
perturb resampled particles with a Gaussian kernel of twice their weighted covariance.

Simulations run in batches of `num_particles`, vmapped in one compiled program per candidate.
Distances are Euclidean on summaries scaled by their standard deviation under the prior predictive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit.errors import FitError
from engine.fit.params import ParamSpec

__all__ = ["SimulationFitResult", "fit_simulation_based"]

Simulate = Callable[[dict[str, jax.Array], jax.Array], Any]
"""(params: name -> scalar, key: PRNG key) -> simulated data (pytree of arrays)."""
Summary = Callable[[Any], jax.Array]
"""data -> (n_summaries,) summary statistics."""


@dataclass(frozen=True, slots=True)
class SimulationFitResult:
    """Weighted posterior particles from SMC-ABC, and the posterior-predictive distance.

    Attributes:
        particles: name -> (num_particles,) constrained parameter values.
        weights: (num_particles,) normalized importance weights.
        epsilons: the tolerance of each generation (scaled-summary units), first generation = inf.
        acceptance_rates: fraction of proposals accepted in each generation.
        num_simulations: simulator calls, all generations together.
        posterior_predictive_distance: mean distance (scaled-summary units) between the summaries of data
            simulated from posterior draws and the observed (or held-out) summaries; lower is better.
        timings: wall seconds {"compile_s", "fit_s"}.
    """

    particles: dict[str, np.ndarray]
    weights: np.ndarray
    epsilons: tuple[float, ...]
    acceptance_rates: tuple[float, ...]
    num_simulations: int
    posterior_predictive_distance: float
    timings: dict[str, float]

    def mean(self) -> dict[str, float]:
        """Returns the weighted posterior mean of each parameter."""
        return {name: float(np.sum(self.weights * values)) for name, values in self.particles.items()}

    def quantiles(self, levels=(0.05, 0.5, 0.95)) -> dict[str, list[float]]:
        """Returns each parameter's weighted posterior quantiles at `levels` (the weighted empirical CDF, inverted)."""
        result = {}
        for name, values in self.particles.items():
            order = np.argsort(values)
            cumulative = np.cumsum(self.weights[order])
            cumulative = cumulative / cumulative[-1]
            result[name] = [float(values[order][min(np.searchsorted(cumulative, level), len(values) - 1)])
                            for level in levels]
        return result

    def posterior_record(self) -> dict[str, Any]:
        """Returns a verify record's posterior entries (as `posterior_summary` gives for NUTS): 5/50/95 %
        quantiles, and as diagnostics the particle count, their effective number (1 / sum w^2) and the final
        tolerance."""
        return {"posterior": self.quantiles(), "posterior_diagnostics": {
            "method": "smc-abc", "particles": int(self.weights.size),
            "ess_min": float(1.0 / np.sum(self.weights**2)), "final_epsilon": float(self.epsilons[-1]),
            "fit_s": float(self.timings.get("fit_s", 0.0)),
        }}

    def sd(self) -> dict[str, float]:
        """Returns the weighted posterior standard deviation of each parameter."""
        means = self.mean()
        return {name: float(np.sqrt(np.sum(self.weights * (values - means[name]) ** 2)))
                for name, values in self.particles.items()}


def fit_simulation_based(
    simulate: Simulate,
    summary: Summary,
    spec: ParamSpec,
    observed: Any,
    *,
    held_out: Any = None,
    num_particles: int = 1000,
    max_generations: int = 10,
    quantile: float = 0.5,
    min_acceptance_rate: float = 0.02,
    max_simulations: int = 200_000,
    seed: int = 0,
) -> SimulationFitResult:
    """Samples an approximate posterior of `spec`'s parameters by SMC-ABC on summary statistics.

    Args:
        simulate: (params, key) -> simulated data; params maps each name to a scalar. Traceable by JAX.
        summary: data -> (n_summaries,) array; applied to simulated and observed data alike.
        spec: the free parameters; their box is the (uniform) prior.
        observed: the observed data, in the form `simulate` returns.
        held_out: optional held-out data of the same form; when given, the posterior-predictive distance is
            measured to it instead of to `observed`.
        num_particles: particles per generation (also the simulation batch size).
        max_generations: generations after the prior one.
        quantile: the next epsilon is this quantile of the accepted distances (0.5: halve the accepted set).
        min_acceptance_rate: stop when a generation accepts fewer proposals than this.
        max_simulations: stop when the simulation budget is spent.
        seed: the run is deterministic given it.

    Returns:
        the last complete generation's particles and weights.

    Raises:
        FitError when summaries are not finite for the observed data or for every prior draw.
    """
    if not 0.0 < quantile < 1.0:
        raise FitError(f"quantile = {quantile}; expected a number strictly between 0 and 1.")
    observed_summary = np.asarray(summary(jax.tree.map(jnp.asarray, observed)), dtype=np.float64).ravel()
    if not np.isfinite(observed_summary).all():
        raise FitError(f"summary of the observed data is not finite: {observed_summary.tolist()}.")

    def simulate_one(z, key):
        return jnp.ravel(summary(simulate(spec.constrain(z), key)))

    root_key = jax.random.PRNGKey(seed)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    z_prior = rng.logistic(size=(num_particles, spec.size))
    batch_program = jax.jit(jax.vmap(simulate_one)).lower(
        jnp.asarray(z_prior, dtype=jnp.float32), jax.random.split(root_key, num_particles)
    ).compile()
    compile_s = time.perf_counter() - start
    batches = iter(range(1 << 30))

    def simulate_batch(z):
        keys = jax.random.split(jax.random.fold_in(root_key, next(batches)), z.shape[0])
        return np.asarray(batch_program(jnp.asarray(z, dtype=jnp.float32), keys), dtype=np.float64)
    summaries = simulate_batch(z_prior)
    finite = np.isfinite(summaries).all(axis=1)
    if not finite.any():
        raise FitError(f"all {num_particles} prior simulations gave non-finite summaries; check the simulator.")
    scale = summaries[finite].std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)

    def distance(batch_summaries):
        d = np.sqrt(np.sum(((batch_summaries - observed_summary) / scale) ** 2, axis=1))
        return np.where(np.isfinite(d), d, np.inf)

    z = z_prior
    distances = distance(summaries)
    weights = np.full(num_particles, 1.0 / num_particles)
    epsilons, acceptance_rates = [np.inf], [float(finite.mean())]
    num_simulations = num_particles
    for _ in range(max_generations):
        epsilon = float(np.quantile(distances[np.isfinite(distances)], quantile))
        covariance = 2.0 * np.atleast_2d(np.cov(z, rowvar=False, aweights=weights))
        cholesky = np.linalg.cholesky(covariance + 1e-9 * np.eye(spec.size))
        accepted_z, accepted_d, proposed = [], [], 0
        while sum(len(a) for a in accepted_z) < num_particles and num_simulations < max_simulations:
            parents = rng.choice(num_particles, size=num_particles, p=weights)
            proposal = z[parents] + rng.standard_normal((num_particles, spec.size)) @ cholesky.T
            proposal_d = distance(simulate_batch(proposal))
            num_simulations += num_particles
            proposed += num_particles
            keep = proposal_d <= epsilon
            accepted_z.append(proposal[keep])
            accepted_d.append(proposal_d[keep])
            if proposed >= num_particles / min_acceptance_rate:
                break
        n_accepted = sum(len(a) for a in accepted_z)
        rate = n_accepted / max(proposed, 1)
        if n_accepted < num_particles:
            break  # budget or acceptance floor reached mid-generation: keep the last complete generation
        new_z = np.concatenate(accepted_z)[:num_particles]
        new_d = np.concatenate(accepted_d)[:num_particles]
        weights = _importance_weights(new_z, z, weights, covariance)
        z, distances = new_z, new_d
        epsilons.append(epsilon)
        acceptance_rates.append(rate)
        if rate < min_acceptance_rate:
            break

    # posterior predictive: simulate once from each of num_particles weighted draws
    target = observed_summary
    if held_out is not None:
        target = np.asarray(summary(jax.tree.map(jnp.asarray, held_out)), dtype=np.float64).ravel()
    draws = z[rng.choice(num_particles, size=num_particles, p=weights)]
    predictive = simulate_batch(draws)
    predictive_d = np.sqrt(np.sum(((predictive - target) / scale) ** 2, axis=1))
    num_simulations += num_particles
    fit_s = time.perf_counter() - start - compile_s
    particles = {name: np.asarray(values, dtype=float)
                 for name, values in spec.constrain(jnp.asarray(z, dtype=jnp.float32)).items()}
    return SimulationFitResult(
        particles=particles,
        weights=weights,
        epsilons=tuple(epsilons),
        acceptance_rates=tuple(acceptance_rates),
        num_simulations=num_simulations,
        posterior_predictive_distance=float(np.mean(predictive_d[np.isfinite(predictive_d)])),
        timings={"compile_s": compile_s, "fit_s": fit_s},
    )


def _importance_weights(z_new, z_old, weights_old, covariance):
    """w_i ~ prior(z_i) / sum_j w_j K(z_i | z_j), with the standard logistic prior and Gaussian kernel K."""
    log_prior = np.sum(-z_new - 2.0 * np.logaddexp(0.0, -z_new), axis=1)
    precision = np.linalg.inv(covariance)
    difference = z_new[:, None, :] - z_old[None, :, :]
    mahalanobis = np.einsum("ijk,kl,ijl->ij", difference, precision, difference)
    log_kernel = -0.5 * mahalanobis  # the kernel's normalizing constant cancels in the weights
    log_mixture = np.log(np.sum(weights_old[None, :] * np.exp(log_kernel - log_kernel.max(axis=1, keepdims=True)),
                                axis=1)) + log_kernel.max(axis=1)
    log_weights = log_prior - log_mixture
    log_weights -= log_weights.max()
    weights = np.exp(log_weights)
    return weights / weights.sum()
