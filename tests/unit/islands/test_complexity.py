"""Complexity: free parameters declared in PARAMS and syntax tree size."""

from __future__ import annotations

import ast

from islands import complexity

SEED = '''def helper(x):
    return x


def agent(params, x):
    """Docstring first; PARAMS is the first statement after it."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0), "gamma": (-1.0, 1.0)}
    return params["alpha"] * x
'''


def test_counts_params_of_the_first_function_that_declares_them() -> None:
    assert complexity(SEED).num_params == 3
    assert complexity(SEED, function_name="agent").num_params == 3


def test_named_function_without_params_has_zero() -> None:
    assert complexity(SEED, function_name="helper").num_params == 0
    assert complexity(SEED, function_name="missing").num_params == 0


def test_params_not_first_or_not_literal_count_zero() -> None:
    later = 'def agent(params):\n    y = 1\n    PARAMS = {"a": (0, 1)}\n    return y\n'
    built = 'def agent(params):\n    PARAMS = dict(a=(0, 1))\n    return 1\n'
    assert complexity(later).num_params == 0
    assert complexity(built).num_params == 0


def test_annotated_params_count() -> None:
    annotated = 'def agent(params):\n    PARAMS: dict = {"a": (0, 1), "b": (0, 2)}\n    return 1\n'
    assert complexity(annotated).num_params == 2


def test_ast_size_is_the_number_of_nodes() -> None:
    assert complexity(SEED).ast_size == sum(1 for _ in ast.walk(ast.parse(SEED)))
    assert complexity("x = 1\n").ast_size == 5  # Module, Assign, Name, Store, Constant


def test_unparsable_source_has_zero_complexity() -> None:
    assert complexity("def agent(:\n").num_params == 0
    assert complexity("def agent(:\n").ast_size == 0
