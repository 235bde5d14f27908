import jax
import jax.numpy as jnp


def tuning(params, direction_deg, contrast):
    """Expected spike count of one V1 neuron on each trial, given the gratings shown on that trial.

    Each stimulus is a sum of up to 9 drifting gratings (components), shown for 1 s; the neuron is fitted on
    its own (every neuron gets its own parameter values).

    Args:
        params: dict of free parameters (constrained values, scalars), declared in PARAMS below.
        direction_deg: (n_trials, 9) float array, drift direction of each component, deg in [0, 360).
        contrast: (n_trials, 9) float array, Michelson contrast of each component, 0-1; 0 = component absent
            (blank trials have every contrast 0; the contrasts of one trial sum to at most 1).

    Returns:
        rate: (n_trials,) float array, expected spike count in the 1-s window (= spikes/s), must be > 0.
            Counts are scored with a Poisson likelihood.

    Seed model: a von Mises (circular Gaussian) direction tuning curve, summed over components weighted by
    their contrast, plus a spontaneous rate.
    """
    PARAMS = {"pref_deg": (0.0, 360.0), "kappa": (0.0, 20.0), "gain": (0.0, 300.0), "baseline": (0.0, 30.0)}
    delta = jnp.deg2rad(direction_deg - params["pref_deg"])
    response = jnp.exp(params["kappa"] * (jnp.cos(delta) - 1.0))
    return params["baseline"] + params["gain"] * jnp.sum(contrast * response, axis=-1)
