"""Maximum-likelihood fits on a Gaussian model whose MLE is known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.fit import FitError, FitResult, GroupFitResult, ParamSpec, fit_maximum_likelihood, fit_per_group, pad_to

SPEC = ParamSpec.from_bounds({"mu": (-5.0, 5.0), "sigma": (0.1, 10.0)})


def gaussian_nll(params, data):
    z = (data["x"] - params["mu"]) / params["sigma"]
    return jnp.sum(0.5 * z**2 + jnp.log(params["sigma"]))


@pytest.fixture(scope="module")
def sample():
    x = np.random.default_rng(0).normal(1.5, 2.0, size=400).astype(np.float32)
    return {"x": x}


# L-BFGS reaches the float32 optimum; first-order steps stop on the relative-change rule a little before it
@pytest.mark.parametrize(("optimizer", "tolerance"), [("lbfgs", 2e-3), ("adam", 1e-2), ("adabelief", 1e-2)])
def test_finds_the_closed_form_maximum(sample, optimizer, tolerance):
    result = fit_maximum_likelihood(gaussian_nll, SPEC, sample, optimizer=optimizer, restarts=8, max_steps=400,
                                    learning_rate=0.1)
    assert isinstance(result, FitResult)
    x = sample["x"].astype(np.float64)
    assert result.params["mu"] == pytest.approx(x.mean(), abs=tolerance)
    assert result.params["sigma"] == pytest.approx(x.std(), rel=tolerance)
    best = float(gaussian_nll({"mu": x.mean(), "sigma": x.std()}, {"x": x}))
    assert result.neg_log_likelihood == pytest.approx(best, abs=0.05)
    assert result.restarts_ok == 8
    assert result.converged
    assert result.at_bounds == ()
    assert set(result.timings) == {"compile_s", "fit_s", "compile_cpu_s", "fit_cpu_s"}
    assert 1 <= result.steps <= 400


@pytest.mark.slow  # the device loop compiles the optimizer too
@pytest.mark.parametrize(("optimizer", "loop"), [("lbfgs", "device"), ("adam", "device")])
def test_device_loop_matches_host_loop(sample, optimizer, loop):
    host = fit_maximum_likelihood(gaussian_nll, SPEC, sample, optimizer="lbfgs", restarts=4, loop="host")
    device = fit_maximum_likelihood(gaussian_nll, SPEC, sample, optimizer=optimizer, restarts=4, loop=loop,
                                    learning_rate=0.1, max_steps=400)
    tolerance = 1e-2 if optimizer == "adam" else 1e-3
    assert device.params["mu"] == pytest.approx(host.params["mu"], abs=tolerance)
    assert device.params["sigma"] == pytest.approx(host.params["sigma"], rel=tolerance)
    assert device.converged


def test_same_seed_same_result_and_the_compiled_program_is_reused(sample):
    first = fit_maximum_likelihood(gaussian_nll, SPEC, sample, restarts=4, max_steps=20, seed=3)
    second = fit_maximum_likelihood(gaussian_nll, SPEC, sample, restarts=4, max_steps=20, seed=3)
    assert first.params == second.params
    assert second.timings["compile_s"] == 0.0


def test_held_out_score_is_computed_at_the_fitted_parameters(sample):
    held_out = {"x": np.linspace(-1.0, 4.0, 50, dtype=np.float32)}
    result = fit_maximum_likelihood(gaussian_nll, SPEC, sample, held_out=held_out, optimizer="lbfgs", restarts=4)
    expected = float(gaussian_nll({k: jnp.float32(v) for k, v in result.params.items()}, held_out))
    assert result.held_out_neg_log_likelihood == pytest.approx(expected, rel=1e-4)


def test_restarts_that_go_non_finite_are_dropped(sample):
    def nan_above_two_and_a_half(params, data):
        return jnp.where(params["mu"] > 2.5, jnp.nan, gaussian_nll(params, data))

    result = fit_maximum_likelihood(nan_above_two_and_a_half, SPEC, sample, optimizer="adam", restarts=16,
                                    learning_rate=0.1)
    assert 0 < result.restarts_ok < 16
    assert np.isfinite(result.neg_log_likelihood)
    assert result.params["mu"] == pytest.approx(sample["x"].mean(), abs=1e-2)


def test_all_restarts_non_finite_raises(sample):
    def always_nan(params, data):
        return jnp.sum(data["x"]) * jnp.nan * params["mu"]

    with pytest.raises(ValueError, match="all 16 restarts gave a non-finite likelihood"):
        fit_maximum_likelihood(always_nan, SPEC, sample, restarts=16, max_steps=5)


def test_reports_parameters_at_their_bounds(sample):
    spec = ParamSpec.from_bounds({"mu": (-5.0, 0.0), "sigma": (0.1, 10.0)})
    result = fit_maximum_likelihood(gaussian_nll, spec, sample, optimizer="lbfgs", restarts=4)
    assert result.at_bounds == ("mu",)


def test_bad_arguments_raise_clear_errors(sample):
    with pytest.raises(FitError, match="optimizer = 'sgd'; expected one of adam, adabelief, lbfgs"):
        fit_maximum_likelihood(gaussian_nll, SPEC, sample, optimizer="sgd")
    with pytest.raises(FitError, match="restarts = 0"):
        fit_maximum_likelihood(gaussian_nll, SPEC, sample, restarts=0)
    with pytest.raises(FitError, match="loop = 'gpu'"):
        fit_maximum_likelihood(gaussian_nll, SPEC, sample, loop="gpu")


def test_a_likelihood_that_is_not_a_scalar_is_rejected(sample):
    def per_trial(params, data):
        return 0.5 * (data["x"] - params["mu"]) ** 2

    with pytest.raises(FitError, match=r"returned a float32 array of shape \(400,\); expected a float scalar"):
        fit_maximum_likelihood(per_trial, SPEC, sample, restarts=2, max_steps=2)


def test_per_group_fits_each_group_on_its_own():
    rng = np.random.default_rng(1)
    means = np.array([-2.0, 0.0, 3.0])
    x = (means[:, None] + rng.normal(0.0, 1.0, size=(3, 300))).astype(np.float32)
    result = fit_per_group(gaussian_nll, SPEC, {"x": x}, optimizer="lbfgs", restarts=4)
    assert isinstance(result, GroupFitResult)
    np.testing.assert_allclose(result.params["mu"], x.mean(axis=1), atol=2e-3)
    np.testing.assert_allclose(result.params["sigma"], x.std(axis=1), rtol=2e-3)
    assert result.neg_log_likelihood.shape == (3,)
    assert result.restarts_ok.tolist() == [4, 4, 4]
    assert result.converged.all()


def test_per_group_rejects_ragged_groups():
    with pytest.raises(FitError, match="same group axis"):
        fit_per_group(gaussian_nll, SPEC, {"x": np.zeros((3, 5)), "y": np.zeros((4, 5))})


def test_per_group_can_leave_a_group_it_cannot_fit_unfitted():
    rng = np.random.default_rng(2)
    x = (np.array([-2.0, 1.0, 3.0])[:, None] + rng.normal(0.0, 1.0, size=(3, 200))).astype(np.float32)
    x[1, 0] = np.nan  # group 1's likelihood is NaN at every parameter value
    with pytest.raises(FitError, match=r"all 4 restarts gave a non-finite likelihood for group\(s\) \[1\]"):
        fit_per_group(gaussian_nll, SPEC, {"x": x}, optimizer="lbfgs", restarts=4)
    held = {"x": np.zeros((3, 5), np.float32)}
    result = fit_per_group(gaussian_nll, SPEC, {"x": x}, held_out=held, optimizer="lbfgs", restarts=4,
                           allow_failed_groups=True)
    assert result.restarts_ok.tolist() == [4, 0, 4]
    assert np.isnan(result.params["mu"][1]) and np.isnan(result.params["sigma"][1])
    assert result.neg_log_likelihood[1] == np.inf and result.held_out_neg_log_likelihood[1] == np.inf
    assert result.at_bounds[1] == () and not result.converged[1]
    np.testing.assert_allclose(result.params["mu"][[0, 2]], x[[0, 2]].mean(axis=1), atol=2e-3)


def gaussian_terms(params, data):
    """Log-likelihood of each observation, zero where the mask is 0 (padding)."""
    z = (data["x"] - params["mu"]) / params["sigma"]
    return -(0.5 * z**2 + jnp.log(params["sigma"])) * data["mask"]


@pytest.mark.parametrize("loop", ["host", pytest.param("device", marks=pytest.mark.slow)])
def test_log_likelihood_terms_of_padded_held_out_data_come_from_the_fit_program(sample, loop):
    train = {"x": sample["x"][:300], "mask": np.ones(300, np.float32)}
    held = {"x": sample["x"][300:], "mask": np.ones(100, np.float32)}
    padded = pad_to(held, train)
    assert padded["x"].shape == (300,) and padded["mask"][100:].sum() == 0.0

    with_terms = fit_maximum_likelihood(None, SPEC, train, held_out=padded, log_likelihood_terms=gaussian_terms,
                                        optimizer="lbfgs", restarts=4, loop=loop)
    plain = fit_maximum_likelihood(gaussian_nll, SPEC, {"x": train["x"]}, held_out={"x": held["x"]},
                                   optimizer="lbfgs", restarts=4, loop=loop)
    assert with_terms.params["mu"] == pytest.approx(plain.params["mu"], abs=1e-4)
    assert with_terms.neg_log_likelihood == pytest.approx(plain.neg_log_likelihood, rel=1e-5)
    assert with_terms.held_out_terms.shape == (300,)
    direct = gaussian_terms({k: jnp.float32(v) for k, v in with_terms.params.items()}, padded)
    np.testing.assert_allclose(with_terms.held_out_terms, direct, rtol=1e-4, atol=1e-5)
    assert -with_terms.held_out_terms.sum() == pytest.approx(with_terms.held_out_neg_log_likelihood, rel=1e-5)
    assert with_terms.held_out_neg_log_likelihood == pytest.approx(plain.held_out_neg_log_likelihood, rel=1e-4)


def test_held_out_data_shaped_like_the_training_data_need_no_second_compile(sample, monkeypatch):
    from engine.fit import gradient

    compiles = []
    real_compile = gradient._compile
    monkeypatch.setattr(gradient, "_compile", lambda *args: compiles.append(1) or real_compile(*args))
    train = {"x": sample["x"][:200], "mask": np.ones(200, np.float32)}
    held = {"x": sample["x"][200:300], "mask": np.ones(100, np.float32)}
    fit_maximum_likelihood(None, SPEC, train, held_out=pad_to(held, train), log_likelihood_terms=gaussian_terms,
                           restarts=2, optimizer="lbfgs", seed=11)
    assert len(compiles) == 1
    fit_maximum_likelihood(None, SPEC, train, held_out=held, log_likelihood_terms=gaussian_terms, restarts=2,
                           optimizer="lbfgs", seed=12)  # unpadded: the fit's program again, and one to score
    assert len(compiles) == 2


def test_pad_to_leaves_larger_or_differently_shaped_trees_alone():
    small = {"x": np.ones((2, 3), np.float32)}
    assert pad_to({"x": np.ones((3, 3), np.float32)}, small)["x"].shape == (3, 3)
    assert pad_to({"y": np.ones((1, 3), np.float32)}, small)["y"].shape == (1, 3)
    assert pad_to({"x": np.ones((1, 2), np.float32)}, small)["x"].tolist() == [[1, 1, 0], [0, 0, 0]]


def test_neither_a_likelihood_nor_terms_is_an_error(sample):
    with pytest.raises(FitError, match="log_likelihood_terms"):
        fit_maximum_likelihood(None, SPEC, sample)


def test_the_pooled_fit_is_the_one_fit_with_a_single_group(sample):
    """fit_maximum_likelihood and fit_per_group are one `fit`: a pooled fit equals a grouped fit of one group."""
    from engine.fit import fit

    pooled = fit_maximum_likelihood(gaussian_nll, SPEC, sample, optimizer="lbfgs", restarts=4, seed=3)
    as_groups = fit(gaussian_nll, SPEC, sample, grouped=False, optimizer="lbfgs", restarts=4, seed=3)
    assert isinstance(as_groups, GroupFitResult) and as_groups.params["mu"].shape == (1,)
    from dataclasses import replace

    assert replace(as_groups.group(0), timings={}) == replace(pooled, timings={})  # the second reused the program
    one_group = fit_per_group(gaussian_nll, SPEC, {"x": sample["x"][None]}, optimizer="lbfgs", restarts=4, seed=3)
    assert one_group.group(0).params == pytest.approx(pooled.params, abs=1e-5)


REGRESSION_SOURCE = '''
import jax
import jax
import jax.numpy as jnp


def predict(params, x):
    weights = jnp.stack([params[f"w{i}"] for i in range(9)])
    # a loop with no reverse derivative (lax.while_loop), which adds nothing
    return x @ weights + 0.0 * jax.lax.while_loop(lambda c: c < 3.0, lambda c: c + 1.0, x[0])
'''


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["host", "device"])
def test_an_exported_model_without_a_reverse_derivative_is_fitted_in_forward_mode_whatever_its_size(loop):
    """Above FORWARD_MODE_MAX_PARAMS the fit takes reverse-mode gradients; a candidate whose reverse derivative could
    not be exported (lax.while_loop) is fitted in forward mode instead of failing."""
    from engine.fit.gradient import FORWARD_MODE_MAX_PARAMS
    from sandbox.exported import export_candidate, load_candidate
    from tests.tasks.candidates import module_from_source

    bounds = {f"w{i}": (-3.0, 3.0) for i in range(9)}
    assert len(bounds) > FORWARD_MODE_MAX_PARAMS
    blob = export_candidate(module_from_source(REGRESSION_SOURCE), function_name="predict", parameters=list(bounds),
                            inputs=["float32[9]"])["exported"]
    predict = load_candidate(blob, function_name="predict", parameters=bounds, inputs=["float32[9]"])
    assert "reverse" in predict.problems and "while_loop" in predict.problems["reverse"]
    rng = np.random.default_rng(0)
    truth = np.linspace(-2.0, 2.0, 9).astype(np.float32)
    x = rng.normal(size=(300, 9)).astype(np.float32)
    data = {"x": x, "y": (x @ truth + 0.1 * rng.normal(size=300)).astype(np.float32)}

    def nll(params, data):
        return 0.5 * jnp.sum((data["y"] - jax.vmap(lambda row: predict(params, row))(data["x"])) ** 2)

    result = fit_maximum_likelihood(nll, ParamSpec.from_bounds(bounds), data, restarts=4, max_steps=200, loop=loop)
    np.testing.assert_allclose([result.params[f"w{i}"] for i in range(9)], truth, atol=0.05)


CUSTOM_VJP_SOURCE = '''
import jax
import jax.numpy as jnp


@jax.custom_vjp
def identity(x):
    return x


identity.defvjp(lambda x: (x, None), lambda _, g: (g,))


def predict(params, x):
    # a custom_vjp function has no forward-mode derivative
    return identity(x @ jnp.stack([params["w0"], params["w1"]]))
'''


@pytest.mark.slow
def test_an_exported_model_without_a_forward_derivative_is_fitted_in_reverse_mode_whatever_its_size():
    """Up to FORWARD_MODE_MAX_PARAMS the fit takes forward-mode gradients; a candidate whose forward derivative could
    not be exported (a custom_vjp function) is fitted in reverse mode instead of failing."""
    from sandbox.exported import export_candidate, load_candidate
    from tests.tasks.candidates import module_from_source

    bounds = {"w0": (-3.0, 3.0), "w1": (-3.0, 3.0)}
    blob = export_candidate(module_from_source(CUSTOM_VJP_SOURCE), function_name="predict", parameters=list(bounds),
                            inputs=["float32[2]"])["exported"]
    predict = load_candidate(blob, function_name="predict", parameters=bounds, inputs=["float32[2]"])
    assert "forward" in predict.problems and "custom_vjp" in predict.problems["forward"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    data = {"x": x, "y": (x @ np.array([1.5, -0.5], np.float32) + 0.1 * rng.normal(size=300)).astype(np.float32)}

    def nll(params, data):
        return 0.5 * jnp.sum((data["y"] - jax.vmap(lambda row: predict(params, row))(data["x"])) ** 2)

    result = fit_maximum_likelihood(nll, ParamSpec.from_bounds(bounds), data, restarts=4, max_steps=200)
    np.testing.assert_allclose([result.params["w0"], result.params["w1"]], [1.5, -0.5], atol=0.05)
