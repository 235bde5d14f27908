"""The mechanical JAX repairs of an answer: each rewrite computes, under jax.jit, what the Python code computes
for concrete values, and what cannot be repaired is left as written."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.proposers.repair import repair_jax

SEED = textwrap.dedent('''
    import jax.numpy as jnp


    def agent(params, state, choice, reward):
        PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
        q = state[:2]
        q = q.at[choice].add(params["alpha"] * (reward - q[choice]))
        return params["beta"] * q, state.at[:2].set(q)
''')


def functions(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<candidate>", "exec"), namespace)
    return namespace


def python_and_jitted(source: str, arguments: list[tuple], reference: str = "") -> None:
    """The original (or `reference`, its numpy twin) on concrete values against the repaired source under jit."""
    repaired, repairs = repair_jax(source, "agent")
    assert repairs, "expected a repair"
    original, fixed = functions(reference or source)["agent"], jax.jit(functions(repaired)["agent"])
    for args in arguments:
        expected = original(*[np.array(a, dtype=float) if isinstance(a, list) else a for a in args])
        got = fixed(*[jnp.asarray(a, dtype=jnp.float32) if isinstance(a, list) else a for a in args])
        for want, have in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
            np.testing.assert_allclose(np.asarray(have), np.asarray(want), rtol=1e-5, atol=1e-6)


PARAMS = {"alpha": 0.3, "beta": 2.0}


def test_an_if_on_a_traced_value_becomes_a_where_per_assigned_name():
    source = textwrap.dedent('''
        import numpy as np


        def agent(params, state, choice, reward):
            q = state[:2]
            if choice == 1 and reward > 0:
                new_q0 = (1 - params["alpha"]) * q[0] + params["alpha"] * reward
                bonus = 1.0
            elif not reward > 0:
                new_q0 = q[0]
                bonus = -1.0
            else:
                new_q0 = q[0] * 0.5
                bonus = 0.0
            if state[2]:
                new_q0 += params["beta"]   # assigned in one branch: keeps its value in the other
            return new_q0 * bonus, state
    ''')
    cases = [(PARAMS, [0.1, 0.2, s, 0, 0, 0, 0, 0], c, r) for s in (0.0, 1.0) for c in (0, 1) for r in (0.0, 1.0)]
    python_and_jitted(source, cases)
    assert "jnp.where" in repair_jax(source, "agent")[0]


def test_in_place_updates_become_at_updates():
    source = textwrap.dedent('''
        import jax.numpy as jnp


        def agent(params, state, choice, reward):
            q = jnp.zeros(2) + state[:2]
            q[choice] += params["alpha"] * (reward - q[choice])
            q[1 - choice] *= 0.9
            q[0] -= 0.1
            state[:2] = q
            memory = [0.0, 0.0]
            memory[0] = 1.0          # a list stays a list
            return q * memory[0], state
    ''')
    repaired, repairs = repair_jax(source, "agent")
    assert repairs == ("in-place array update",)
    assert "memory[0] = 1.0" in repaired and "q = q.at[choice].add(" in repaired
    fixed = jax.jit(functions(repaired)["agent"])
    logits, state = fixed(PARAMS, jnp.array([0.2, 0.4, 0, 0, 0, 0, 0, 0.0]), 1, 1.0)
    q1 = 0.4 + 0.3 * (1.0 - 0.4)
    np.testing.assert_allclose(logits, [0.2 * 0.9 - 0.1, q1], rtol=1e-6)
    np.testing.assert_allclose(state[:2], logits, rtol=1e-6)


def test_an_if_expression_min_max_and_clip_keywords():
    source = textwrap.dedent('''
        import jax.numpy as jnp
        import numpy as np


        def agent(params, state, choice, reward):
            sign = 1.0 if 0 < reward <= 1 else -1.0
            top = max(state[0], params["alpha"])
            low = min(state[1], 0.5)
            return jnp.clip(jnp.array([sign * top, low]), a_min=-0.6, a_max=0.6), state
    ''')
    cases = [(PARAMS, [s0, 0.7, 0, 0, 0, 0, 0, 0], 0, r) for s0 in (0.1, 0.9) for r in (0.0, 0.5, 2.0)]
    python_and_jitted(source, cases, reference=source.replace("jnp.clip(", "np.clip("))  # numpy keeps a_min
    assert set(repair_jax(source, "agent")[1]) == {"if on a traced value", "min/max on traced values",
                                                   "clip keywords"}


def test_what_is_not_traced_or_cannot_be_repaired_is_left_as_written():
    static = textwrap.dedent('''
        import jax.numpy as jnp


        def agent(params, state, choice, reward):
            q = state[:2]
            for step in range(3):
                if step == 0:
                    q = q * 2
            if q.shape[0] == 2:
                q = q + 1
            return q, state
    ''')
    assert repair_jax(static, "agent") == (static, ())
    returns = textwrap.dedent('''
        def agent(params, state, choice, reward):
            if choice == 0:
                return state[:2], state
            return -state[:2], state
    ''')
    assert repair_jax(returns, "agent") == (returns, ())
    one_sided = textwrap.dedent('''
        def agent(params, state, choice, reward):
            if choice == 0:
                fresh = state[:2]
            return fresh, state
    ''')
    assert repair_jax(one_sided, "agent") == (one_sided, ())  # Python raises NameError on one path
    assert repair_jax("def agent(:\n", "agent") == ("def agent(:\n", ())


def test_a_missing_declaration_is_copied_from_the_prompt_only_when_every_name_is_known():
    answer = textwrap.dedent('''
        def agent(params, state, choice, reward):
            q = state[:2]
            return params["beta"] * q, state.at[:2].set(q + params["alpha"])
    ''')
    repaired, repairs = repair_jax(answer, "agent", [SEED])
    assert repairs == ("declaration copied from the prompt",)
    assert "PARAMS = {'beta': (0.0, 20.0), 'alpha': (0.0, 1.0)}" in repaired
    unknown = answer.replace('params["alpha"]', 'params["gamma"]')
    assert repair_jax(unknown, "agent", [SEED]) == (unknown, ())


@pytest.mark.parametrize("fragment", ["while reward > 0:\n        reward = reward - 1", "x = jnp.random.uniform()"])
def test_loops_and_randomness_on_traced_values_are_not_touched(fragment):
    source = (f"import jax.numpy as jnp\n\n\ndef agent(params, state, choice, reward):\n    {fragment}\n"
              "    return state[:2], state\n")
    assert repair_jax(source, "agent") == (source, ())


def test_numpy_math_and_missing_jax_functions_become_jnp_and_old_index_updates_at_updates():
    source = textwrap.dedent('''
        import math
        import jax
        import numpy as np


        def agent(params, state, choice, reward):
            for name in ["alpha"]:
                params[name] = np.clip(params[name], 0.0, 1.0)   # a dict: stays a subscript assignment
            q = np.exp(state[:2]) + math.exp(0.0) + jax.log(1.0 + reward)
            q = jax.ops.index_update(q, jax.ops.index[choice], params["alpha"])
            q = jax.ops.index_add(q, 1, jax.lax.abs(-reward))
            return q, state
    ''')
    repaired, repairs = repair_jax(source, "agent")
    assert set(repairs) == {"numpy, math or missing jax function -> jnp", "jax.ops index update"}
    assert "math.exp(0.0)" in repaired and "jax.lax.abs(" in repaired  # untraced, and an existing function
    assert "params[name] = jnp.clip(" in repaired
    logits, _ = jax.jit(functions(repaired)["agent"])(dict(PARAMS), jnp.zeros(8), 0, 1.0)
    np.testing.assert_allclose(logits, [0.3, 2.0 + np.log(2.0) + 1.0], rtol=1e-6)


def test_a_traced_if_that_adjusts_a_parameter_and_typing_annotations():
    source = textwrap.dedent('''
        from typing import Dict, Tuple
        import jax.numpy as jnp


        def agent(params: Dict[str, float], state, choice: int, reward: float) -> Tuple[jnp.ndarray, jnp.ndarray]:
            q: jnp.ndarray = state[:2]
            if reward == 1:
                params["beta"] = params["beta"] * 1.1
                params["beta"] += 1.0
            else:
                q = q * 0.5
            return params["beta"] * q, state
    ''')
    repaired, repairs = repair_jax(source, "agent")
    assert set(repairs) == {"typing annotations dropped", "if on a traced value"}
    assert "typing" not in repaired and "Dict" not in repaired
    fixed = jax.jit(functions(repaired)["agent"])
    for reward in (0.0, 1.0):
        logits, _ = fixed(dict(PARAMS), jnp.array([0.2, 0.4, 0, 0, 0, 0, 0, 0]), 0, reward)
        beta, scale = (2.0 * 1.1 + 1.0, 1.0) if reward == 1 else (2.0, 0.5)
        np.testing.assert_allclose(logits, [beta * 0.2 * scale, beta * 0.4 * scale], rtol=1e-6)
    used = "from typing import cast\n\n\ndef agent(params, state, choice, reward):\n    return cast(int, state), state\n"
    assert repair_jax(used, "agent") == (used, ())  # typing used by the code: left to the static check
