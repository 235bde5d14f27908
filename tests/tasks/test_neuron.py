"""The neuron task: data windows and spike detection, the coincidence factor, the simulator's reset rule, the
exported model against its Python function, and verify. The fit's recovery of the twin: test_neuron_twin_recovery.py."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from engine.task.spec import load_task
from tests.tasks.candidates import candidate_from, module_from, module_from_source

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks/neuron"


def test_split_holds_out_other_step_amplitudes_of_the_same_cell():
    from tasks.neuron.data import load

    splits = load(source="bbp", subset=1)
    assert splits["train"]["voltage_mV"].shape == (1, 3, 4400)
    assert splits["selection"]["voltage_mV"].shape == (1, 1, 4400)
    steps = {name: np.round(split["step_pA"][0]).tolist() for name, split in splits.items()}
    assert steps == {"train": [119.0, 237.0, 353.0], "selection": [175.0], "test": [297.0]}
    # every recorded spike of B6's 175 pA sweep (50 upward 0 mV crossings) lies in the window
    assert splits["selection"]["spikes"].sum() == 50


def test_synthetic_twin_is_deterministic_and_spikes():
    from tasks.neuron.data import load

    first, second = load(source="synthetic", subset=1), load(source="synthetic", subset=1)
    np.testing.assert_array_equal(first["train"]["voltage_mV"], second["train"]["voltage_mV"])
    counts = first["train"]["spikes"].sum(axis=-1)[0]
    assert np.all(counts > 5) and np.all(np.diff(counts) > 0)


def test_gamma_is_one_for_identical_trains_and_near_zero_for_shifted_ones():
    from tasks.neuron.score import sweep_metrics

    n = 4400
    data = np.zeros(n, np.float32)
    data[np.arange(400, 4000, 80)] = 1.0  # 20 ms apart, inside the step
    voltage = jnp.full(n, -60.0, jnp.float32)
    gamma, rmse, count_error = sweep_metrics(voltage, jnp.asarray(data), voltage, jnp.asarray(data))
    assert float(gamma) == pytest.approx(1.0, abs=1e-5) and float(rmse) == pytest.approx(0.0, abs=1e-5)
    assert float(count_error) == 0.0
    shifted = np.roll(data, 40)  # 20 ms later: every spike half-way between two data spikes
    gamma, _, count_error = sweep_metrics(voltage, jnp.asarray(shifted), voltage, jnp.asarray(data))
    assert float(gamma) < 0.0 and float(count_error) == 0.0
    gamma, rmse, count_error = sweep_metrics(voltage + 3.0, jnp.zeros(n, jnp.float32), voltage, jnp.asarray(data))
    assert float(gamma) == pytest.approx(0.0, abs=1e-6) and float(rmse) == pytest.approx(3.0, abs=1e-4)
    assert float(count_error) == pytest.approx(1.0)  # every data spike missing


def test_firing_near_125_hz_whatever_the_input_does_not_score():
    """A train every 8.5 ms covers ~94 % of the sweep with +/- 4 ms windows: gamma is then noise divided by
    1 - 2 nu Delta ~ 0.06, and version 1 of the score (gamma - rmse / 10) ranked such models at the top of a
    search. The spike-count error keeps them far below a model that fires at the data's rate."""
    from tasks.neuron.score import combined, sweep_metrics

    n = 4400
    data = np.zeros(n, np.float32)
    data[np.arange(400, 4000, 80)] = 1.0  # 25 Hz
    dense = np.zeros(n, np.float32)
    dense[np.arange(402, 4400, 17)] = 1.0  # ~118 Hz, every data spike within 4 ms of a model spike
    voltage = jnp.full(n, -60.0, jnp.float32)
    gamma, rmse, count_error = sweep_metrics(voltage, jnp.asarray(dense), voltage, jnp.asarray(data))
    assert -1.0 <= float(gamma) <= 1.0
    assert float(count_error) > 3.0
    late = np.roll(data, 6)  # the data's rate, every spike 3 ms late
    honest = sweep_metrics(voltage, jnp.asarray(late), voltage, jnp.asarray(data))
    assert float(combined(*honest)) > 0.9 > -2.0 > float(combined(gamma, rmse, count_error))


def test_cross_entropy_search_finds_each_groups_maximum():
    from engine.fit import ParamSpec
    from tasks.neuron.fit_cross_entropy import fit_cross_entropy

    spec = ParamSpec.from_bounds({"x": (0.0, 10.0), "y": (-5.0, 5.0)})
    targets = {"x": jnp.asarray([3.0, 7.0]), "y": jnp.asarray([-1.0, 2.0])}

    def objective(params, target):
        value = -((params["x"] - target["x"]) ** 2) - (params["y"] - target["y"]) ** 2
        return value, jnp.abs(params["x"] - target["x"])

    result = fit_cross_entropy(objective, spec, targets, guide_weight=0.5, population=32, generations=25, seed=0)
    np.testing.assert_allclose(result.params["x"], [3.0, 7.0], atol=0.05)
    np.testing.assert_allclose(result.params["y"], [-1.0, 2.0], atol=0.05)
    assert result.objective.shape == (2,) and np.all(result.objective > -0.01)


def test_simulator_resets_at_the_declared_peak():
    from tasks.neuron.score import simulate

    lif = module_from(TASK / "seed.py")
    params = {"tau_m_ms": jnp.float32(10.0), "r_mohm": jnp.float32(100.0), "v_rest_mV": jnp.float32(-70.0),
              "v_threshold_mV": jnp.float32(-50.0), "v_reset_mV": jnp.float32(-65.0), "refractory_ms": jnp.float32(2.0)}
    current = jnp.full(2000, 300.0, jnp.float32)  # 1 s at 0.5 ms: v_inf = -40 mV > threshold
    voltage, spikes = simulate(lif.membrane, params, current, jnp.float32(-70.0))
    n_spikes = int(spikes.sum())
    # analytic LIF rate: 1 / (refractory + tau ln((v_inf - v_reset) / (v_inf - v_th))) = 1 / (2 + 10 ln 2.5) ms
    expected = 1000.0 / (2.0 + 10.0 * np.log(25.0 / 10.0))
    assert abs(n_spikes - expected) <= 0.08 * expected
    assert float(voltage.max()) < -50.0


def test_wrong_output_shape_is_a_one_sentence_value_error():
    from tasks.neuron.score import check_membrane

    source = (TASK / "seed.py").read_text().replace("return dstate_dt, params", "return dstate_dt[:2], params")
    candidate = module_from_source(source)
    with pytest.raises(ValueError, match=r"membrane returned dstate_dt of shape \(2,\); expected \(4,\)"):
        check_membrane(candidate.membrane, tuple(
            ["tau_m_ms", "r_mohm", "v_rest_mV", "v_threshold_mV", "v_reset_mV", "refractory_ms"]))


@pytest.mark.slow
def test_generating_parameters_reproduce_the_twin():
    """At its own parameters the generating AdEx matches every synthetic spike (gamma = 1) within the 0.5 mV noise,
    and every spike within one 0.5 ms step: the twin's window starts from the state the task's simulator starts
    from (v_start_mV, adaptation current 0). Before, the twin's adaptation current had relaxed under the holding
    current by then, and B6's first spikes came 3-7 steps after the twin's.

    Not every spike in its own step: the twin is simulated in float64 and the task in float32, which moves some of
    B8's spikes by one step, and the noise once makes a -0.5 mV step before a spike count as a spike of its own."""
    from engine.fit import window_sum
    from tasks.neuron.data import GROUND_TRUTH, load
    from tasks.neuron.score import cell_metrics, simulate

    splits = load(source="synthetic")
    adex = module_from(TASK / "baselines/adex.py")
    for c, name in enumerate(("B6", "B8")):
        params = {key: jnp.float32(value) for key, value in GROUND_TRUTH[name].items()}
        cell = {key: jnp.asarray(value[c]) for key, value in splits["selection"].items() if key != "step_pA"}
        gamma, rmse, count_error = cell_metrics(adex.membrane, params, cell)
        np.testing.assert_allclose(np.asarray(gamma), 1.0, atol=1e-5)
        assert float(rmse.max()) < 0.7 and float(count_error.max()) == 0.0
        for split in splits.values():
            for current, v_start, spikes in zip(split["current_pA"][c], split["v_start_mV"][c], split["spikes"][c]):
                _, model_spikes = simulate(adex.membrane, params, jnp.asarray(current), jnp.float32(v_start))
                near = np.asarray(window_sum(model_spikes, 1, 1))
                assert np.all(near[spikes > 0] > 0), (name, np.flatnonzero(spikes)[near[spikes > 0] == 0])
                assert abs(float(model_spikes.sum()) - spikes.sum()) <= 1, name


@pytest.mark.slow
def test_verify_returns_recovery_and_well_formed_figures(monkeypatch):
    import tasks.neuron.verify as verify_module
    from tasks.neuron import score as score_module

    task = load_task(TASK / "task.yaml")
    splits = task.load_splits(subset=1)
    monkeypatch.setattr(verify_module, "RECOVERY_SETS", 2)
    fast_score = lambda *args, **kwargs: score_module.score(*args, **kwargs, restarts=4, max_steps=30,
                                                                   generations=4)
    monkeypatch.setattr(verify_module, "score", fast_score)
    monkeypatch.setattr(verify_module, "RECOVERY_RESTARTS", 4)
    monkeypatch.setattr(verify_module, "RECOVERY_GENERATIONS", 4)
    result = verify_module.verify(candidate_from(TASK / "seed.py"), splits["train"], splits["selection"],
                                  seed=0).record()
    assert np.isfinite(result["score"])
    assert set(result["recovery"]) == {"tau_m_ms", "r_mohm", "v_rest_mV", "v_threshold_mV", "v_reset_mV",
                                       "refractory_ms"}
    assert [figure["title"].split(",")[0] for figure in result["figures"]] == ["f-I curve", "Held-out sweep", "Cell B6"]
    whole = result["figures"][1]  # thinned by block maxima, so every spike of the data keeps its peak
    assert max(whole["series"][0]["y"]) == pytest.approx(float(np.max(splits["selection"]["voltage_mV"][0, 0])))
    assert [check["name"] for check in result["checks"]] == ["f-I gain, cell B6"]
    assert isinstance(result["checks"][0]["passed"], bool)
    for figure in result["figures"]:
        assert {"title", "xlabel", "ylabel", "series"} <= set(figure)
        for series in figure["series"]:
            assert len(series["x"]) == len(series["y"]) and series["role"] in ("data", "model")


def test_a_recovery_set_the_score_cannot_measure_is_drawn_again():
    from tasks.neuron.verify import MEASURABLE_RATE_HZ, unmeasurable_sweeps

    n_steps = 5000  # 600-3100 ms at 0.5 ms; the score's window is 700-2800 ms
    every = lambda period_ms: (np.arange(n_steps) % int(period_ms / 0.5) == 0).astype(np.float32)[None]
    assert MEASURABLE_RATE_HZ == 125.0
    assert unmeasurable_sweeps({"spikes": np.concatenate([every(20.0), every(10.0)])}) == ""  # 50 and 100 Hz
    assert unmeasurable_sweeps({"spikes": np.concatenate([every(20.0), every(4.0)])}).startswith("fires at 250 Hz")


@pytest.mark.slow
def test_recovery_around_the_twin_draws_again_only_the_set_that_fires_past_what_the_score_measures():
    """Ten sets around the twin's generating parameters at verify's spread (seed 0): set 6 fired far past 125 Hz, and
    the score put its recovered parameters above its generating ones, with tau_w and b far off (version 7,
    tasks/neuron/README.md). The rule draws that set again and no other: B8's fastest sets fire at about 100 Hz."""
    from engine.fit import ParamSpec, parameter_recovery
    from tasks.neuron import verify as verify_module
    from tasks.neuron.data import GROUND_TRUTH, load
    from tasks.neuron.score import CELLS, SWEEP_KEYS

    adex = module_from(TASK / "baselines/adex.py").membrane
    spec = ParamSpec.from_bounds(candidate_from(TASK / "baselines/adex.py").PARAMS)
    train = load(source="synthetic")["train"]
    cells = [{key: np.asarray(train[key][c]) for key in SWEEP_KEYS} for c in range(len(CELLS))]
    fitted = [dict(GROUND_TRUTH[name]) for name in CELLS]
    rates = []

    def simulate(params, cell, rng):
        voltage, spikes = verify_module._simulate_cell(adex, {n: jnp.float32(v) for n, v in params.items()}, cell)
        rates.append(verify_module.unmeasurable_sweeps({"spikes": spikes}))
        return {**cell, "voltage_mV": voltage + verify_module.NOISE_MV * rng.standard_normal(voltage.shape),
                "spikes": spikes}

    result = parameter_recovery(spec, fitted, cells, simulate, lambda stacked: [fitted[0]] * 10, n_sets=10,
                                spread=verify_module.RECOVERY_SPREAD, seed=0,
                                unmeasurable=verify_module.unmeasurable_sweeps)
    assert list(result.redrawn) == [6] and len(result.redrawn[6]) == 1, (result.redrawn, rates)
    assert int(result.redrawn[6][0].split()[2]) > 500 and result.unmeasured_sets == []


def test_the_f_i_check_fails_a_model_that_fires_at_one_rate_whatever_the_current():
    from tasks.neuron.verify import fi_gain_check

    steps, data = [100.0, 150.0, 200.0, 250.0], [15, 40, 70, 98]  # counts like cell B6's in the twin
    constant = fi_gain_check("B6", steps, data, [28, 28, 28, 28])  # the version-2 search's winner (program 163)
    assert not constant["passed"] and "ratio 0.00, outside [0.50, 2.00]" in constant["detail"]
    assert fi_gain_check("B6", steps, data, [14, 42, 66, 99])["passed"]
    assert not fi_gain_check("B6", steps, data, [0, 60, 130, 200])["passed"]  # three times too steep
    flat = fi_gain_check("B8", steps, [20, 20, 20, 20], [5, 5, 5, 5])
    assert flat["passed"] and flat["detail"].startswith("not checked: the data's gain is not positive")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["seed.py", "baselines/adex.py"])
def test_the_exported_model_scores_and_differentiates_as_its_python_function(model: str):
    """The scorer sees the same function through the export: at fixed parameters, the sweep metrics and the
    spike-forced fit loss with its gradient agree with the Python function's. (The fit from random restarts
    does not: float32 rounding differs between the two compiled programs, about 1e-5 of a gradient, and L-BFGS
    on the spiking model amplifies it until some restarts end in other local optima after ~30 steps.)"""
    import jax

    from engine.fit import ParamSpec, read_params
    from engine.fit.spiking import _value_and_grad, forced_loss
    from tasks.neuron.data import load
    from tasks.neuron.score import SWEEP_KEYS, V_LIMITS_MV, cell_metrics

    source = (TASK / model).read_text()
    names = read_params(source, "membrane").names
    python = module_from_source(source).membrane
    exported = candidate_from(TASK / model)
    spec = ParamSpec.from_bounds(exported.PARAMS)
    cell = {key: jnp.asarray(value[0, :2]) for key, value in load(source="bbp", subset=1)["train"].items()
            if key in SWEEP_KEYS}
    settings = dict(n_state=4, dt_ms=0.5, voltage_limits_mV=V_LIMITS_MV, exclude_ms=(2.0, 8.0),
                    spike_time_weight=1.0, missed_spike_weight=1.0)
    z = jnp.asarray(np.random.default_rng(0).normal(size=len(names)), jnp.float32)
    both = []
    for membrane in (python, exported):
        metrics = jax.jit(lambda p, m=membrane: cell_metrics(m, p, cell))(spec.constrain(z))
        loss = _value_and_grad(lambda p, g, m=membrane: forced_loss(m, p, g, **settings), spec)
        both.append([*(np.asarray(x) for x in metrics), *(np.asarray(x) for x in jax.jit(loss)(z, cell))])
    for python_value, exported_value in zip(*both):
        np.testing.assert_allclose(exported_value, python_value, rtol=1e-4, atol=1e-4)
