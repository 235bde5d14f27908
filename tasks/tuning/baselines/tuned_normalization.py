import jax
import jax.numpy as jnp


def tuning(params, direction_deg, contrast):
    """Tuned divisive normalization, after Goris, Simoncelli & Movshon (2015), stated compactly.

    drive = sum over components of contrast * direction tuning (a von Mises lobe at the preferred direction and a
    smaller one, null_ratio, at the opposite direction); the normalization pool = sum over components of
    contrast * (untuned part + pool_tuned * an orientation-tuned part centred on the preferred orientation);
    rate = baseline + gain * drive^n / (sigma^n + pool^n).

    Simplified from the paper: one spatial frequency (the experiment's), no explicit population of afferent
    filters (their pooled tuning is the von Mises drive), contrast enters linearly, no temporal dynamics.
    It is also the generating model of the synthetic twin (tasks/tuning/data.py, GROUND_TRUTH).
    """
    PARAMS = {
        "pref_deg": (0.0, 360.0),
        "kappa": (0.0, 20.0),
        "null_ratio": (0.0, 1.0),
        "pool_tuned": (0.0, 1.0),
        "pool_kappa": (0.0, 10.0),
        "sigma": (0.01, 1.0),
        "exponent": (0.5, 5.0),
        "gain": (0.0, 300.0),
        "baseline": (0.0, 30.0),
    }
    delta = jnp.deg2rad(direction_deg - params["pref_deg"])
    drive_tuning = jnp.exp(params["kappa"] * (jnp.cos(delta) - 1.0)) + params["null_ratio"] * jnp.exp(
        params["kappa"] * (-jnp.cos(delta) - 1.0)
    )
    pool_tuning = (1.0 - params["pool_tuned"]) + params["pool_tuned"] * jnp.exp(
        params["pool_kappa"] * (jnp.cos(2.0 * delta) - 1.0)
    )
    drive = jnp.sum(contrast * drive_tuning, axis=-1)
    pool = jnp.sum(contrast * pool_tuning, axis=-1)
    n = params["exponent"]
    # x^n as exp(n log x), kept finite (and differentiable in n) on blank trials where drive = pool = 0
    drive_n = jnp.exp(n * jnp.log(drive + 1e-6))
    pool_n = jnp.exp(n * jnp.log(pool + 1e-6))
    return params["baseline"] + params["gain"] * drive_n / (params["sigma"] ** n + pool_n)
