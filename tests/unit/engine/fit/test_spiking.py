"""The spiking fitter: the simulator's reset rule, spike forcing, spike-time errors, and recovery of a leaky integrate-and-fire neuron's parameters from its spike-forced voltage."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.fit import ParamSpec, fit_spiking, simulate_spiking
from engine.fit.spiking import spike_time_errors

DT_MS = 0.5
LIMITS_MV = (-150.0, 100.0)


def lif(params, state, current_pA):
    """Leaky integrate-and-fire: tau dv/dt = -(v - v_rest) + R I; a spike at v_threshold, reset to v_reset."""
    dv = (-(state[0] - params["v_rest_mV"]) + params["r_mohm"] * current_pA * 1e-3) / params["tau_m_ms"]
    reset = state.at[0].set(params["v_reset_mV"])
    return jnp.zeros_like(state).at[0].set(dv), params["v_threshold_mV"], reset


TRUTH = {"tau_m_ms": 12.0, "r_mohm": 150.0, "v_rest_mV": -70.0, "v_threshold_mV": -50.0, "v_reset_mV": -62.0}
BOUNDS = {"tau_m_ms": (2.0, 50.0), "r_mohm": (20.0, 400.0), "v_rest_mV": (-85.0, -55.0),
          "v_threshold_mV": (-65.0, -30.0), "v_reset_mV": (-85.0, -40.0)}


def truth():
    return {name: jnp.float32(value) for name, value in TRUTH.items()}


def test_free_simulation_resets_where_the_voltage_reaches_the_peak():
    current = jnp.full(1000, 200.0, jnp.float32)  # v_inf = -40 mV, above threshold
    voltage, spikes, margin = simulate_spiking(lif, truth(), current, jnp.zeros(2).at[0].set(-70.0), dt_ms=DT_MS,
                                               voltage_limits_mV=LIMITS_MV)
    fired = np.flatnonzero(np.asarray(spikes))
    assert len(fired) > 5
    np.testing.assert_allclose(np.asarray(voltage)[fired], -62.0)
    assert np.all(np.asarray(margin)[fired] >= 0) and float(voltage.max()) < -50.0
    # analytic rate 1 / (tau ln((v_inf - v_reset) / (v_inf - v_th))), within the Euler error
    interval_ms = 12.0 * np.log(22.0 / 10.0)
    assert np.mean(np.diff(fired)) * DT_MS == pytest.approx(interval_ms, rel=0.05)


def test_forced_simulation_resets_only_at_the_given_spikes_and_holds_the_voltage_below_the_peak():
    current = jnp.full(400, 300.0, jnp.float32)  # fires on its own every ~6 ms
    forced = jnp.zeros(400, jnp.float32).at[jnp.array([100, 300])].set(1.0)
    voltage, spikes, _ = simulate_spiking(lif, truth(), current, jnp.zeros(2).at[0].set(-70.0), dt_ms=DT_MS,
                                          voltage_limits_mV=LIMITS_MV, forced_spikes=forced)
    np.testing.assert_array_equal(np.asarray(spikes), np.asarray(forced))
    np.testing.assert_allclose(np.asarray(voltage)[[100, 300]], -62.0)
    assert float(voltage.max()) <= -50.0 and float(voltage[99]) == pytest.approx(-50.0)


def test_forced_simulation_is_differentiable_where_the_free_one_is_not():
    current = jnp.full(600, 200.0, jnp.float32)
    start = jnp.zeros(2).at[0].set(-70.0)
    forced = jnp.zeros(600, jnp.float32).at[jnp.arange(50, 600, 40)].set(1.0)

    def mean_voltage(threshold, spikes):
        params = {**truth(), "v_threshold_mV": threshold}
        return jnp.mean(simulate_spiking(lif, params, current, start, dt_ms=DT_MS, voltage_limits_mV=LIMITS_MV,
                                         forced_spikes=spikes)[0])

    assert float(jax.grad(mean_voltage)(jnp.float32(-50.0), None)) == 0.0  # piecewise constant in the threshold
    assert float(jax.grad(mean_voltage)(jnp.float32(-50.0), forced)) > 0.0  # held at a higher threshold: higher


def test_spike_time_errors_interpolate_the_crossing_and_extrapolate_a_late_one():
    # segment 1: crosses half-way through step 3 (at 2.5), recorded in step 5 (between 4 and 5) -> 1.5 steps early
    # segment 2: at the end of the recorded step 8 still 4 mV below, rising 2 mV a step -> 2 steps late
    # segment 3: crosses in the recorded step 11 itself -> no error
    margin = jnp.array([-9.0, -6.0, -3.0, 3.0, 3.0, 0.0, -10.0, -6.0, -4.0, -1.0, -1.0, 30.0], jnp.float32)
    recorded = jnp.zeros(12, jnp.float32).at[jnp.array([5, 8, 11])].set(1.0)
    errors = np.asarray(spike_time_errors(margin, recorded, cap_steps=20.0))
    np.testing.assert_allclose(errors[[5, 8]], [-1.5, 2.0], atol=1e-6)
    assert np.count_nonzero(errors) == 2


@pytest.mark.slow
def test_recovers_a_leaky_integrate_and_fire_neuron_from_its_spikes_and_voltage(monkeypatch):
    # stage 1 evaluates the restarts still moving 3 at a time (the last chunk of 8 is short and repeats rows)
    monkeypatch.setattr("engine.fit.spiking.FORCED_CHUNK", 3)
    rng = np.random.default_rng(0)
    steps = np.array([150.0, 200.0, 260.0], np.float32)[:, None]
    current = np.repeat(np.concatenate([np.zeros((3, 100)), np.ones((3, 1200)), np.zeros((3, 100))], axis=1)
                        * steps, 1, axis=0).astype(np.float32)
    v_start = np.full(3, -70.0, np.float32)
    run = jax.vmap(lambda i, v0: simulate_spiking(lif, truth(), i, jnp.zeros(2).at[0].set(v0), dt_ms=DT_MS,
                                                  voltage_limits_mV=LIMITS_MV)[:2])
    voltage, spikes = (np.asarray(x) for x in run(jnp.asarray(current), jnp.asarray(v_start)))
    assert np.all(spikes.sum(axis=1) > 3)
    data = {"current_pA": current[None], "v_start_mV": v_start[None], "spikes": spikes[None],
            "voltage_mV": (voltage + 0.5 * rng.standard_normal(voltage.shape)).astype(np.float32)[None]}

    def score(params, group):  # minus the spike-count error and the voltage error, as a task's score would be
        model = jax.vmap(lambda i, v0: simulate_spiking(lif, params, i, jnp.zeros(2).at[0].set(v0), dt_ms=DT_MS,
                                                        voltage_limits_mV=LIMITS_MV)[:2])
        model_voltage, model_spikes = model(group["current_pA"], group["v_start_mV"])
        count = jnp.abs(model_spikes.sum(axis=1) - group["spikes"].sum(axis=1)) / group["spikes"].sum(axis=1)
        return -jnp.mean(count) - jnp.sqrt(jnp.mean((model_voltage - group["voltage_mV"]) ** 2)) / 10.0

    spec = ParamSpec.from_bounds(BOUNDS)
    result = fit_spiking(lif, spec, data, score=score, dt_ms=DT_MS, voltage_limits_mV=LIMITS_MV,
                         exclude_ms=(2.0, 8.0), n_state=2, restarts=8, max_steps=100, seed=0)
    tolerance = {"tau_m_ms": 0.6, "r_mohm": 6.0, "v_rest_mV": 0.5, "v_threshold_mV": 0.5, "v_reset_mV": 0.5}
    for name, value in TRUTH.items():
        assert float(result.params[name][0]) == pytest.approx(value, abs=tolerance[name]), name
    assert result.restarts_ok[0] >= 4 and result.stage[0] in ("forced", "scan", "local")


def test_the_coordinate_scan_moves_a_start_off_a_plateau_into_a_narrow_well():
    """Stage 1b's scan: where the loss is flat (no gradient for L-BFGS to follow) and its minimum is a narrow well
    along one coordinate, one sweep over that coordinate's grid finds the well; a start already at the minimum is
    not moved, and the local offsets refine a point near it."""
    from engine.fit.spiking import _coordinate_scan

    def value(z, weights, data):  # (G, P, 2) -> (G, P): flat at 1 except a well of width ~0.1 at z0 = 2.0
        return 1.0 - np.exp(-((z[..., 0] - 2.0) / 0.1) ** 2) + 0.01 * z[..., 1] ** 2 + 0.0 * weights

    z = np.array([[[-3.0, 1.0], [2.0, 0.0], [2.03, 0.0]]], np.float32)  # stuck, at the minimum, near it
    loss = value(z, np.zeros((1, 3)), None)
    grid = np.linspace(-4.0, 4.0, 33, dtype=np.float32)
    offsets = np.linspace(-0.05, 0.05, 11, dtype=np.float32)
    moved, moved_loss = _coordinate_scan(value, z, loss, np.ones((1, 3), np.float32), None, grid, offsets)
    np.testing.assert_allclose(moved[0, 0], [2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(moved[0, 1], [2.0, 0.0], atol=1e-6)
    assert abs(moved[0, 2, 0] - 2.0) < 0.006 and moved_loss[0, 2] < loss[0, 2]
    np.testing.assert_allclose(moved_loss, value(moved, np.zeros((1, 3)), None), rtol=1e-6)


LIF_SOURCE = '''
import jax
import jax.numpy as jnp


def membrane(params, state, current_pA):
    dv = (-(state[0] - params["v_rest_mV"]) + params["r_mohm"] * current_pA * 1e-3) / params["tau_m_ms"]
    # a loop with no reverse derivative (lax.while_loop), which adds nothing
    dv = dv + 0.0 * jax.lax.while_loop(lambda c: c < 3.0, lambda c: c + 1.0, state[1])
    reset = state.at[0].set(params["v_reset_mV"])
    return jnp.zeros_like(state).at[0].set(dv), params["v_threshold_mV"], reset
'''


# the same LIF through a custom_vjp function, which has no forward-mode derivative
LIF_CUSTOM_VJP_SOURCE = LIF_SOURCE.replace(
    "    # a loop with no reverse derivative (lax.while_loop), which adds nothing\n"
    "    dv = dv + 0.0 * jax.lax.while_loop(lambda c: c < 3.0, lambda c: c + 1.0, state[1])\n",
    "    dv = identity(dv)\n",
).replace("def membrane(", """@jax.custom_vjp
def identity(x):
    return x


identity.defvjp(lambda x: (x, None), lambda _, g: (g,))


def membrane(""")


@pytest.mark.slow
@pytest.mark.parametrize(("source", "missing", "why"), [(LIF_SOURCE, "reverse", "while_loop"),
                                                        (LIF_CUSTOM_VJP_SOURCE, "forward", "custom_vjp")])
def test_an_exported_model_with_one_derivative_only_is_fitted_in_the_mode_it_has(source, missing, why):
    """Stages 1 and 1b take reverse-mode gradients; a candidate whose reverse derivative could not be exported
    (lax.while_loop) is fitted in forward mode instead of failing, and one without a forward derivative (custom_vjp)
    still in reverse mode."""
    from sandbox.exported import export_candidate, load_candidate
    from tests.tasks.candidates import module_from_source

    inputs = ["float32[2]", "float32"]
    blob = export_candidate(module_from_source(source), function_name="membrane", parameters=list(BOUNDS),
                            inputs=inputs)["exported"]
    membrane = load_candidate(blob, function_name="membrane", parameters=BOUNDS, inputs=inputs)
    assert list(membrane.problems) == [missing] and why in membrane.problems[missing]
    current = np.concatenate([np.zeros(40), np.full(400, 200.0), np.zeros(40)]).astype(np.float32)[None, None]
    v_start = np.full((1, 1), -70.0, np.float32)
    voltage, spikes = (np.asarray(x)[None, None] for x in simulate_spiking(
        lif, truth(), jnp.asarray(current[0, 0]), jnp.zeros(2).at[0].set(-70.0), dt_ms=DT_MS,
        voltage_limits_mV=LIMITS_MV)[:2])
    data = {"current_pA": current, "v_start_mV": v_start, "voltage_mV": voltage, "spikes": spikes}

    def score(params, group):
        model_voltage = jax.vmap(lambda i, v0: simulate_spiking(membrane, params, i, jnp.zeros(2).at[0].set(v0),
                                                                dt_ms=DT_MS, voltage_limits_mV=LIMITS_MV)[0])(
            group["current_pA"], group["v_start_mV"])
        return -jnp.sqrt(jnp.mean((model_voltage - group["voltage_mV"]) ** 2))

    result = fit_spiking(membrane, ParamSpec.from_bounds(BOUNDS), data, score=score, dt_ms=DT_MS,
                         voltage_limits_mV=LIMITS_MV, exclude_ms=(2.0, 8.0), n_state=2, restarts=4, max_steps=20,
                         scan_rounds=1, scan_steps=5, local_generations=0, seed=0)
    assert result.restarts_ok[0] == 4 and np.isfinite(result.score[0])
