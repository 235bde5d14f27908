"""The candidate model: one parse of a candidate into its function, PARAMS bounds, signature, hash and complexity."""

from __future__ import annotations

import ast

import pytest

from islands import CandidateModel, canonical_hash, complexity

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


def test_one_parse_gives_function_bounds_signature_reads_hash_and_complexity() -> None:
    model = CandidateModel.parse(SEED, "agent")
    assert model.valid and model.problem == ""
    assert model.function is not None and model.function.name == "agent"
    assert model.bounds == {"alpha": (0.0, 1.0), "beta": (0.0, 20.0), "gamma": (-1.0, 1.0)}
    assert all(isinstance(bound, float) for pair in model.bounds.values() for bound in pair)
    assert model.signature == "params, x"
    assert model.params_read == ("alpha",)
    assert model.undeclared_reads == ()
    assert (model.complexity.num_params, model.complexity.ast_size) == (3, complexity(SEED).ast_size)
    assert model.canonical_hash == canonical_hash(SEED)


def test_hashing_leaves_the_parsed_module_as_it_was() -> None:
    """The hash renames locals and drops docstrings in the tree to dump it, then undoes that: the fitter, the
    mutator and the prompts read the same module after the database hashed it."""
    model = CandidateModel.parse(SEED, "agent")
    before = ast.dump(model.module, include_attributes=True)
    renamed = SEED.replace("return params", "y = params").replace("* x\n", "* x\n    return y\n")
    assert CandidateModel.parse(renamed, "agent").canonical_hash != model.canonical_hash
    assert ast.dump(model.module, include_attributes=True) == before
    assert ast.get_docstring(model.function) is not None


@pytest.mark.parametrize("declaration, problem", [
    ("y = 1", "agent declares no PARAMS dict as its first statement"),
    ('PARAMS = {"a": (0, limit)}', "agent's PARAMS is not a literal"),
    ("PARAMS = {}", "expected a non-empty dict"),
    ('PARAMS = {"a": (1, 0)}', "PARAMS['a'] = (1, 0): low must be < high"),
    ('PARAMS = {"a": (0, 1e999)}', "bounds must be finite numbers"),
    ('PARAMS = {"a": (0, True)}', "bounds must be numbers, found True"),
    ('PARAMS = {"a b": (0, 1)}', "is not a valid identifier"),
])
def test_an_invalid_declaration_has_no_bounds_and_one_sentence_saying_why(declaration: str, problem: str) -> None:
    model = CandidateModel.parse(f"def agent(params):\n    {declaration}\n    return 1\n", "agent")
    assert model.bounds is None and not model.valid
    assert problem in model.problem


def test_what_does_not_parse_or_lacks_the_function_says_so() -> None:
    assert CandidateModel.parse("def agent(:\n", "agent").problem.startswith("candidate source does not parse")
    missing = CandidateModel.parse(SEED, "model")
    assert missing.function is None and missing.problem == "source has no top-level function 'model'; found helper, agent."


def test_reads_through_another_argument_name_are_not_checked() -> None:
    source = 'def agent(theta, x):\n    PARAMS = {"a": (0.0, 1.0)}\n    return params["b"] * x\n'
    assert CandidateModel.parse(source, "agent").undeclared_reads == ()
    checked = source.replace("theta", "params")
    assert CandidateModel.parse(checked, "agent").undeclared_reads == ("b",)
