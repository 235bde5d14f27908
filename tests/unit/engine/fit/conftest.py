"""Fitting tests run under strict JAX promotion, so silent broadcasting or dtype mixing fails here."""

import jax
import pytest


@pytest.fixture(autouse=True)
def strict_jax_promotion():
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield
