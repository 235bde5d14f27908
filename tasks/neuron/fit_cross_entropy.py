"""Gradient-free fitting for objectives that are not differentiable (spike counts, coincidences): the
cross-entropy method (Rubinstein 1999) in the unconstrained space of a candidate's parameters, one search per
group (cell), every generation's population simulated in one batched, compiled program.

Generation g: draw `population` points z ~ N(mean, sd^2) (the current mean is always one of them), evaluate the
objective of each, and refit mean and sd to the best `elite_fraction` of them (sd smoothed with the previous sd
and floored at SD_FLOOR). The objective returns (value, penalty): selection ranks value - w_g * penalty with
w_g = guide_weight * max(0, 1 - 2 g / generations), so the penalty guides the first half of the search only, and
the point with the best value ever evaluated is returned. Deterministic given `seed`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from engine.fit import ParamSpec

__all__ = ["CrossEntropyResult", "fit_cross_entropy"]

INITIAL_SD = 1.5  # in unconstrained (logit) units: covers most of each parameter's box
SD_SMOOTHING = 0.3  # new sd = (1 - SD_SMOOTHING) * elite sd + SD_SMOOTHING * old sd
SD_FLOOR = 0.02


@dataclass(frozen=True, slots=True)
class CrossEntropyResult:
    """The best parameters found for each group.

    Attributes:
        params: name -> (n_groups,) constrained values.
        objective: (n_groups,) the objective at those values (higher is better).
        at_bounds: per group, names of parameters within 1e-3 * (high - low) of a bound.
        timings: {"compile_s": ..., "fit_s": ...}.
    """

    params: dict[str, np.ndarray]
    objective: np.ndarray
    at_bounds: tuple[tuple[str, ...], ...]
    timings: dict[str, float]


def fit_cross_entropy(
    objective: Callable[[dict[str, jax.Array], Any], tuple[jax.Array, jax.Array]],
    spec: ParamSpec,
    data: Any,
    *,
    guide_weight: float = 0.0,
    population: int = 96,
    generations: int = 25,
    elite_fraction: float = 0.125,
    seed: int = 0,
) -> CrossEntropyResult:
    """Maximises objective(params, group_data) separately for each group of `data`.

    Args:
        objective: (params dict of scalars, one group's data) -> (value to maximise, guiding penalty), scalars;
            traceable by JAX. Non-finite values count as the worst possible.
        guide_weight: weight of the penalty at the first generation (it falls to 0 at half the generations).
        spec: the free parameters and their bounds.
        data: pytree whose leaves all have a leading group axis (n_groups, ...).
        population: parameter sets evaluated per generation and group.
        generations: number of generations.
        elite_fraction: share of each generation that the next one is fitted to.
        seed: seeds the draws.
    """
    n_elite = max(2, int(round(elite_fraction * population)))
    n_groups = jax.tree.leaves(data)[0].shape[0]

    def evaluate(z, group):  # z (population, n) for one group -> values, penalties (population,)
        values, penalties = jax.vmap(lambda zi: objective(spec.constrain(zi), group))(z)
        finite = jnp.isfinite(values) & jnp.isfinite(penalties)
        return jnp.where(finite, values, -jnp.inf), jnp.where(finite, penalties, 0.0)

    def search(key, group):
        mean = jnp.zeros(spec.size, jnp.float32)
        sd = jnp.full(spec.size, INITIAL_SD, jnp.float32)
        init = (mean, sd, mean, jnp.asarray(-jnp.inf, jnp.float32))

        def generation(carry, inputs):
            key, weight = inputs
            mean, sd, best_z, best_value = carry
            z = mean + sd * jax.random.normal(key, (population, spec.size), jnp.float32)
            z = z.at[0].set(mean)
            values, penalties = evaluate(z, group)
            _, top = jax.lax.top_k(values - weight * penalties, n_elite)
            elite = z[top]
            new_mean = jnp.mean(elite, axis=0)
            new_sd = jnp.maximum((1 - SD_SMOOTHING) * jnp.std(elite, axis=0) + SD_SMOOTHING * sd, SD_FLOOR)
            best = jnp.argmax(values)
            improved = values[best] > best_value
            best_z = jnp.where(improved, z[best], best_z)
            best_value = jnp.where(improved, values[best], best_value)
            return (new_mean, new_sd, best_z, best_value), None

        fraction = jnp.arange(generations, dtype=jnp.float32) / generations
        weights = guide_weight * jnp.maximum(0.0, 1.0 - 2.0 * fraction)
        (_, _, best_z, best_value), _ = jax.lax.scan(generation, init, (jax.random.split(key, generations), weights))
        return best_z, best_value

    program = jax.vmap(search)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_groups)
    data = jax.tree.map(jnp.asarray, data)
    started = time.perf_counter()
    compiled = jax.jit(program).lower(keys, data).compile()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    best_z, best_value = jax.block_until_ready(compiled(keys, data))
    fit_s = time.perf_counter() - started
    if not np.all(np.isfinite(np.asarray(best_value))):
        raise ValueError("the model gave a non-finite objective for every parameter set tried in some cell.")
    constrained = spec.constrain(best_z)
    params = {name: np.asarray(value, dtype=float) for name, value in constrained.items()}
    at_bounds = tuple(spec.at_bounds({n: params[n][g] for n in spec.names}) for g in range(n_groups))
    return CrossEntropyResult(params=params, objective=np.asarray(best_value, dtype=float), at_bounds=at_bounds,
                              timings={"compile_s": compile_s, "fit_s": fit_s})
