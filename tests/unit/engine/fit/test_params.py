import math

import jax.numpy as jnp
import numpy as np
import pytest

from engine.fit import FitError, ParamSpec, read_params

SEED = '''
def agent(params, state, choice, reward):
    """Docstring first is fine."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0, 20)}
    return params["beta"] * params["alpha"], state
'''


def agent_source(params_line: str, body: str = 'return params["alpha"]') -> str:
    return f"def agent(params, state):\n    {params_line}\n    {body}\n"


def test_reads_names_and_bounds_in_declaration_order():
    spec = read_params(SEED, "agent")
    assert spec == ParamSpec(names=("alpha", "beta"), lows=(0.0, 0.0), highs=(1.0, 20.0))
    assert spec.size == 2


def test_reads_the_bandit_seed(repo):
    spec = read_params((repo / "tasks" / "bandit" / "seed.py").read_text(), "agent")
    assert spec.names == ("alpha", "beta")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (agent_source("x = 1"), "agent declares no PARAMS dict as its first statement"),
        ("def agent(params):\n    return 1\n", "agent declares no PARAMS dict as its first statement"),
        (agent_source('PARAMS = {"beta": (5, 1)}', "return 0"), r"PARAMS\['beta'\] = \(5, 1\): low must be < high"),
        (agent_source('PARAMS = {"alpha": (0, 1e999)}'), "bounds must be finite"),
        (agent_source('PARAMS = {1: (0, 1)}', "return 0"), "PARAMS key 1 is not a string"),
        (agent_source('PARAMS = {"alpha": (0, limit)}'), "PARAMS is not a literal"),
        (agent_source('PARAMS = {"alpha": (0, 1, 2)}'), "expected a \\(low, high\\) pair"),
        (agent_source('PARAMS = {"alpha": ("0", 1)}'), "bounds must be numbers"),
        (agent_source('PARAMS = {}'), "expected a non-empty dict"),
        (agent_source('PARAMS = {"alpha": (0, 1), "beta": (0, 2)}', 'return params["gamma"]'),
         r"agent reads params\['gamma'\] but PARAMS declares only alpha, beta"),
        ("def model(params):\n    pass\n", "no top-level function 'agent'; found model"),
        ("def agent(:\n", "does not parse"),
    ],
)
def test_bad_declarations_raise_one_sentence(source, message):
    with pytest.raises(ValueError, match=message):
        read_params(source, "agent")


def test_fit_error_is_a_value_error():
    assert issubclass(FitError, ValueError)


def test_constrain_maps_into_the_box_and_unconstrain_inverts_it():
    spec = ParamSpec.from_bounds({"alpha": (0.0, 1.0), "beta": (-5.0, 20.0)})
    values = spec.constrain(jnp.asarray([0.0, 40.0]))
    assert float(values["alpha"]) == pytest.approx(0.5)
    assert float(values["beta"]) == pytest.approx(20.0)
    z = spec.unconstrain({"alpha": 0.2, "beta": 3.0})
    back = spec.constrain(jnp.asarray(z, dtype=jnp.float32))
    assert float(back["alpha"]) == pytest.approx(0.2, rel=1e-5)
    assert float(back["beta"]) == pytest.approx(3.0, rel=1e-5)


def test_constrain_keeps_batch_axes():
    spec = ParamSpec.from_bounds({"a": (0.0, 1.0), "b": (1.0, 2.0)})
    values = spec.constrain(jnp.zeros((3, 4, 2)))
    assert values["b"].shape == (3, 4)
    np.testing.assert_allclose(values["b"], 1.5)


def test_at_bounds_is_relative_to_the_width():
    spec = ParamSpec.from_bounds({"a": (0.0, 1.0), "b": (0.0, 1000.0)})
    assert spec.at_bounds({"a": 0.0005, "b": 999.5}) == ("a", "b")
    assert spec.at_bounds({"a": 0.5, "b": 998.0}) == ()


def test_spec_rejects_bad_bounds_directly():
    with pytest.raises(FitError, match="low must be < high"):
        ParamSpec(names=("a",), lows=(1.0,), highs=(1.0,))
    with pytest.raises(FitError, match="finite"):
        ParamSpec.from_bounds({"a": (0.0, math.inf)})
