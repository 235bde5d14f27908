"""Rewrites that `discover simplify` tries, on the syntax tree only (no candidate is run)."""

from __future__ import annotations

from engine.verification.rewrite import (collapse_parameter_expressions, declared_parameters, fix_parameter, neutral_value,
                            replace_docstring, statement_deletions, term_deletions)

TANGLED = '''
def agent(params, state, choice, reward):
    """Seed model: Q-learning with a softmax choice rule."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 5.0), "w_memory": (-2.0, 2.0)}
    q = state[:2]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error)
    logits = params["beta"] * params["beta"] * q + params["w_memory"] * reward
    return logits, state.at[:2].set(q)
'''


def test_a_squared_parameter_becomes_one_parameter_with_the_squared_range():
    (rewrite,) = collapse_parameter_expressions(TANGLED, "agent")
    assert "params['beta'] * q" in rewrite.source and "params['beta'] * params['beta']" not in rewrite.source
    assert declared_parameters(rewrite.source, "agent")["beta"] == (0.0, 25.0)


def test_a_product_of_two_parameters_read_nowhere_else_becomes_one():
    source = TANGLED.replace('params["beta"] * params["beta"] * q', 'params["beta"] * params["gain"] * q').replace(
        '"w_memory": (-2.0, 2.0)', '"w_memory": (-2.0, 2.0), "gain": (-1.0, 2.0)')
    (rewrite,) = collapse_parameter_expressions(source, "agent")
    assert declared_parameters(rewrite.source, "agent")["beta"] == (-5.0, 10.0)
    assert "gain" not in declared_parameters(rewrite.source, "agent")


def test_a_parameter_read_elsewhere_is_not_collapsed():
    source = TANGLED.replace('params["alpha"] * prediction_error', 'params["beta"] * prediction_error')
    source = source.replace('"alpha": (0.0, 1.0), ', "")
    assert collapse_parameter_expressions(source, "agent") == []


def test_fixing_a_parameter_at_zero_removes_its_term_and_its_declaration():
    fixed = fix_parameter(TANGLED, "agent", "w_memory", 0.0)
    assert "w_memory" not in fixed and "reward\n" not in fixed.split("logits =")[1].split("\n")[0]
    assert list(declared_parameters(fixed, "agent")) == ["alpha", "beta"]


def test_fixing_the_learning_rate_removes_the_statements_only_it_fed():
    fixed = fix_parameter(TANGLED, "agent", "alpha", 0.0)
    assert "prediction_error" not in fixed  # q.at[choice].add(0.0) is kept; the dead error term is deleted


def test_the_last_parameter_is_never_removed():
    single = TANGLED.replace('"alpha": (0.0, 1.0), "beta": (0.0, 5.0), "w_memory": (-2.0, 2.0)', '"beta": (0.0, 5.0)')
    single = single.replace('params["alpha"]', "0.5").replace(' + params["w_memory"] * reward', "")
    assert fix_parameter(single, "agent", "beta", 0.0) is None


def test_deletions_leave_only_valid_programs():
    statements = statement_deletions(TANGLED, "agent")
    assert [rewrite.description for rewrite in statements] == [
        "delete the statement `q = q.at[choice].add(params['alpha'] * prediction_error)`"]
    terms = {rewrite.description for rewrite in term_deletions(TANGLED, "agent")}
    assert "delete the term `params['w_memory'] * reward` from " \
           "`params['beta'] * params['beta'] * q + params['w_memory'] * reward`" in terms


def test_neutral_values():
    assert neutral_value(-5.0, 5.0) == 0.0
    assert neutral_value(0.5, 3.0) == 0.5
    assert neutral_value(-3.0, -0.1) == -0.1


def test_replacing_the_docstring():
    source = replace_docstring(TANGLED, "agent", "Simplified from program 3.")
    assert "Seed model" not in source and '"""Simplified from program 3."""' in source


def test_a_name_bound_to_parameters_is_inlined_so_its_square_is_seen():
    source = TANGLED.replace('logits = params["beta"] * params["beta"] * q',
                             'gain = params["beta"]\n    logits = gain * gain * q')
    (rewrite,) = collapse_parameter_expressions(source, "agent")
    assert "gain" not in rewrite.source and declared_parameters(rewrite.source, "agent")["beta"] == (0.0, 25.0)
