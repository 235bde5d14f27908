import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.fit.ddm import wiener_log_density, wiener_upper_probability

log_density_jit = jax.jit(wiener_log_density)


@pytest.mark.parametrize(
    ("drift", "boundary", "start", "non_decision_s"),
    [(1.0, 1.5, 0.5, 0.3), (-2.0, 2.0, 0.3, 0.2), (0.0, 1.0, 0.6, 0.1), (3.0, 0.8, 0.7, 0.25)],
)
def test_density_integrates_to_the_closed_form_choice_probabilities(drift, boundary, start, non_decision_s):
    # a geometric grid resolves the sharp rise just after the non-decision time
    rt_s = non_decision_s + np.geomspace(1e-4, 15.0, 20_000)

    def mass(upper):
        log_density = log_density_jit(jnp.asarray(rt_s, dtype=jnp.float32), jnp.full(rt_s.shape, upper),
                                      jnp.float32(drift), jnp.float32(boundary), jnp.float32(start),
                                      jnp.float32(non_decision_s))
        return float(np.trapezoid(np.exp(np.asarray(log_density, dtype=np.float64)), rt_s))

    p_upper = float(wiener_upper_probability(jnp.float32(drift), jnp.float32(boundary), jnp.float32(start)))
    assert mass(True) == pytest.approx(p_upper, abs=2e-3)
    assert mass(True) + mass(False) == pytest.approx(1.0, abs=2e-3)


def test_responses_faster_than_the_non_decision_time_are_impossible_but_finite():
    log_density = log_density_jit(jnp.asarray([0.1, 0.5]), jnp.asarray([True, True]), 1.0, 1.0, 0.5, 0.2)
    assert float(log_density[0]) == -1e4
    assert np.isfinite(float(log_density[1]))
