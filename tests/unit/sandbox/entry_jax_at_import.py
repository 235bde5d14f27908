"""Test entry that wrongly creates a JAX array at import time, which initialises a backend before forking."""

import jax.numpy as jnp

OFFSET = jnp.zeros(())


def score(candidate, **_):
    return {"score": float(candidate.agent(1.0))}
