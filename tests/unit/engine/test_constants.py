"""Lifting a candidate's float literals into constants: which literals move, and when nothing does."""

from __future__ import annotations

import textwrap

from engine.constants import CONSTANT_PREFIX, lift_constants


def source(body: str) -> str:
    return textwrap.dedent('''
        import jax.numpy as jnp

        def agent(params, state, choice, reward):
            """An agent."""
            PARAMS = {"alpha": (0.0, 1.0), "beta": (0.5, 20.0)}
    ''') + textwrap.indent(textwrap.dedent(body), "    ")


def test_float_literals_in_float_positions_are_read_from_params():
    lifted = lift_constants(source('''
        q = state[:2] * 0.9 + 0.1 * reward
        logits = params["beta"] * jnp.exp(-1.5 * q)
        return logits, state.at[:2].set(q)
    '''), "agent")
    assert lifted.constants == ((f"{CONSTANT_PREFIX}0", 0.9), (f"{CONSTANT_PREFIX}1", 0.1),
                                (f"{CONSTANT_PREFIX}2", 1.5))
    assert "0.9" not in lifted.source and f"params['{CONSTANT_PREFIX}0']" in lifted.source
    assert "'beta': (0.5, 20.0)" in lifted.source  # PARAMS stays as written


def test_indices_integers_and_exponents_stay_literal():
    lifted = lift_constants(source('''
        q = state[:2] ** 2.0 + state[2] * 2
        return q * 3, state.at[:2].set(q)
    '''), "agent")
    assert lifted is None


def test_a_rebound_or_shadowed_params_name_is_left_alone():
    rebound = source('''
        params = {"alpha": 0.5}
        return state[:2] * 0.9, state
    ''')
    shadowed = source('''
        f = lambda params: params * 0.5
        return state[:2] * 0.9, state
    ''')
    assert lift_constants(rebound, "agent") is None
    assert lift_constants(shadowed, "agent") is None


def test_unparsable_or_missing_function_lifts_nothing():
    assert lift_constants("def agent(:", "agent") is None
    assert lift_constants(source("return state[:2] * 0.9, state"), "other") is None
