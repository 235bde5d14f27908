"""Duplicate detection: which edits make a new program and which do not."""

from __future__ import annotations

import pytest

from islands import canonical_hash

BASE = '''import jax.numpy as jnp


def agent(params, state, choice, reward):
    """Q-learning with a softmax choice rule."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
    q = state[:2]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error)
    logits = params["beta"] * q
    return logits, state.at[:2].set(q)
'''

SAME = {
    "reformatted": BASE.replace("reward - q[choice]", "reward-q[ choice ]").replace(
        "logits = params", "logits = (params"
    ).replace('["beta"] * q', '["beta"] * q)'),
    "comments added": BASE.replace("    q = state[:2]", "    # the two action values\n    q = state[:2]  # (2,)"),
    "docstring changed": BASE.replace("Q-learning with a softmax choice rule.", "Something else entirely."),
    "docstring removed": BASE.replace('    """Q-learning with a softmax choice rule."""\n', ""),
    "blank lines": BASE.replace("\n    q = state", "\n\n\n    q = state"),
    "local renamed": BASE.replace("prediction_error", "delta"),
    "two locals swapped names": BASE.replace("logits", "TMP").replace("q", "logits").replace("TMP", "q"),
    "string quotes": BASE.replace('params["alpha"]', "params['alpha']"),
    "float written differently": BASE.replace("20.0", "20.00"),
}

DIFFERENT = {
    "constant changed": BASE.replace("20.0", "21.0"),
    "bound changed": BASE.replace("(0.0, 1.0)", "(0.0, 0.9)"),
    "parameter key renamed": BASE.replace('"alpha"', '"eta"'),
    "function renamed": BASE.replace("def agent", "def learner"),
    "argument renamed": BASE.replace("reward", "outcome"),
    "operator changed": BASE.replace("reward - q", "q - reward"),
    "statement added": BASE.replace("    logits =", "    q = q * 0.5\n    logits ="),
    "global name changed": BASE.replace("jnp", "np"),
    "int instead of float": BASE.replace("20.0", "20"),
}


def test_base_is_stable() -> None:
    assert canonical_hash(BASE) == canonical_hash(BASE)
    assert len(canonical_hash(BASE)) == 32


@pytest.mark.parametrize("edit", sorted(SAME))
def test_cosmetic_edits_are_duplicates(edit: str) -> None:
    assert SAME[edit] != BASE
    assert canonical_hash(SAME[edit]) == canonical_hash(BASE), edit


@pytest.mark.parametrize("edit", sorted(DIFFERENT))
def test_meaningful_edits_are_new_programs(edit: str) -> None:
    assert DIFFERENT[edit] != BASE
    assert canonical_hash(DIFFERENT[edit]) != canonical_hash(BASE), edit


def test_locals_renamed_consistently_in_nested_functions() -> None:
    one = "def f(x):\n    a = 1\n    def g(y):\n        b = a + y\n        return b\n    return g(x)\n"
    two = "def f(x):\n    k = 1\n    def h(y):\n        m = k + y\n        return m\n    return h(x)\n"
    assert canonical_hash(one) == canonical_hash(two)
    # A local that reads a global is not the same as one that reads the enclosing local.
    three = "def f(x):\n    k = 1\n    def h(y):\n        m = a + y\n        return m\n    return h(x)\n"
    assert canonical_hash(three) != canonical_hash(one)


def test_global_and_free_names_are_kept() -> None:
    one = "import math\n\ndef f(x):\n    y = math.exp(x)\n    return y\n"
    two = "import math\n\ndef f(x):\n    z = math.exp(x)\n    return z\n"
    assert canonical_hash(one) == canonical_hash(two)
    assert canonical_hash(one) != canonical_hash(one.replace("math.exp", "math.log"))


def test_a_local_order_swap_is_a_new_program() -> None:
    one = "def f(x):\n    a = x\n    b = 2\n    return a - b\n"
    two = "def f(x):\n    a = x\n    b = 2\n    return b - a\n"
    assert canonical_hash(one) != canonical_hash(two)


def test_unparsable_source_is_hashed_by_text() -> None:
    broken = "def f(:\n    return 1\n"
    assert canonical_hash(broken) == canonical_hash(broken.replace("\n", "   \n"))
    assert canonical_hash(broken) != canonical_hash("def f(:\n    return 2\n")
