"""The LLM-free mutation proposer: its invariants over many seeds, each operator, and its error paths."""

from __future__ import annotations

import ast
import asyncio
import functools
import random

import pytest
from tests.unit.engine.test_mutator_programs import CHOICE_KERNEL, FORGETTING, PERSEVERATION, PROGRAMS, SEED

from engine.mutation import (
    Workspace,
    candidate_problems,
    crossover_expression,
    crossover_statement,
    delete_statement,
    duplicate_statement,
    find_function,
    insert_term,
    perturb_constant,
    read_declaration,
    remember,
    remove_dead_assignments,
    signature,
    swap_operator,
    sync_declaration,
    unwrap,
    wrap,
)
from engine.mutation.sites import module_names
from engine.proposers.base import PromptContext, Proposal, Shot
from engine.proposers.mutator import MutationProposer

PRIMITIVES = ("jnp.exp", "jnp.tanh", "jax.nn.sigmoid", "jnp.log1p", "jnp.abs", "jnp.square")


def context(sources: tuple[str, ...], seed: int, primitives: tuple[str, ...] = PRIMITIVES) -> PromptContext:
    shots = tuple(Shot(program_id=i, source=source, score=float(i)) for i, source in enumerate(sources))
    return PromptContext(
        island_id=0, function_name="agent", shots=shots, text="", next_version=len(shots), primitives=primitives,
        seed=seed,
    )


@functools.cache
def parent_facts(parent: str) -> tuple[str, str, frozenset[str]]:
    """Returns a parent's (canonical source, signature, module-level names)."""
    module = ast.parse(parent)
    return ast.unparse(module), signature(find_function(module, "agent")), frozenset(module_names(module))


def invariant_problems(source: str, parent: str) -> list[str]:
    """Returns every invariant the mutant `source` of `parent` breaks."""
    parent_canonical, parent_signature, parent_names = parent_facts(parent)
    problems = candidate_problems(source, "agent", parent_signature)
    if problems:
        return problems
    module = ast.parse(source)
    function = find_function(module, "agent")
    first = function.body[1]  # after the docstring
    if not (isinstance(first, ast.Assign) and first.targets[0].id == "PARAMS"):
        problems.append("PARAMS is not the first statement")
    if ast.unparse(module) == parent_canonical:
        problems.append("identical to its parent")
    missing = parent_names - module_names(module)
    if missing:
        problems.append(f"lost module-level names {sorted(missing)}")
    dead = remove_dead_assignments(function)
    if dead:
        problems.append(f"dead assignments {dead}")
    return problems


def workspace(source: str, seed: int = 0, donors: tuple[str, ...] = ()) -> Workspace:
    module = ast.parse(source)
    parsed = [ast.parse(d) for d in donors]
    return Workspace(
        module, find_function(module, "agent"), PRIMITIVES, [(m, find_function(m, "agent")) for m in parsed],
        random.Random(seed),
    )


def function_source(space: Workspace) -> str:
    return ast.unparse(space.function)


# --- invariants, property style -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sources", [(SEED,), PROGRAMS], ids=["seed", "crossover"])
def test_five_hundred_mutants_keep_every_invariant(sources: tuple[str, ...]) -> None:
    proposer = MutationProposer()
    by_id = dict(enumerate(sources))
    failures = []
    for seed in range(500):
        mutation = proposer.mutate(context(sources, seed))
        assert mutation.error == "", mutation.error
        problems = invariant_problems(mutation.source, by_id[mutation.parent_id])
        if problems:
            failures.append((seed, mutation.notes, problems))
    assert failures == []


def test_crossover_proposals_draw_from_other_programs() -> None:
    proposer = MutationProposer(operator_weights={"crossover_statement": 1.0, "crossover_expression": 1.0})
    notes = [n for seed in range(100) for n in proposer.mutate(context(PROGRAMS, seed)).notes]
    assert sum("crossover" in n for n in notes) >= 100


def test_proposals_are_deterministic_given_the_seed() -> None:
    first = [MutationProposer(seed=3).mutate(context(PROGRAMS, seed)).source for seed in range(20)]
    again = [MutationProposer(seed=3).mutate(context(PROGRAMS, seed)).source for seed in range(20)]
    other = [MutationProposer(seed=4).mutate(context(PROGRAMS, seed)).source for seed in range(20)]
    assert first == again
    assert first != other
    assert len(set(first)) >= 15


def test_propose_returns_a_proposal_from_the_mutator() -> None:
    (proposal,) = asyncio.run(MutationProposer().propose(context((SEED,), seed=1)))
    assert isinstance(proposal, Proposal)
    assert proposal.proposer == "mutator"
    assert proposal.error == ""
    assert proposal.source != SEED and "def agent(params, state, choice, reward):" in proposal.source
    assert proposal.parent_ids == (0,)  # the one shot it mutated, not every shot of the prompt


def test_a_mutant_keeps_the_docstrings_contract_and_drops_the_seeds_description() -> None:
    from pathlib import Path

    seed = (Path(__file__).resolve().parents[3] / "tasks" / "bandit" / "seed.py").read_text()
    assert "Seed model: Q-learning" in seed
    for draw in range(20):
        mutant = MutationProposer().mutate(context((seed,), seed=draw)).source
        docstring = ast.get_docstring(find_function(ast.parse(mutant), "agent"))
        assert "Seed model" not in docstring
        assert docstring.startswith("One trial of a learner") and "Args:" in docstring and "new_state:" in docstring


def test_the_best_shot_is_the_usual_parent() -> None:
    proposer = MutationProposer(best_parent_probability=0.7)
    parents = [proposer.mutate(context(PROGRAMS, seed)).parent_id for seed in range(200)]
    assert 0.6 < parents.count(len(PROGRAMS) - 1) / 200 < 0.85
    assert len(set(parents)) == len(PROGRAMS)


# --- operators ----------------------------------------------------------------------------------------------


def test_perturb_constant_changes_one_float_literal_and_never_an_index() -> None:
    for seed in range(50):
        space = workspace(CHOICE_KERNEL, seed)
        note = perturb_constant(space)
        assert note is not None and note.startswith("constant 0.5 -> ")
        text = function_source(space)
        assert "state[:2]" in text and "state[2:4]" in text and "one_hot(choice, 2)" in text
        assert "kernel - 0.5 * jnp.mean(q)" not in text


def test_perturb_constant_finds_nothing_in_the_seed() -> None:
    assert perturb_constant(workspace(SEED)) is None  # its only numbers are slice bounds


def test_swap_operator_swaps_arithmetic_and_comparisons() -> None:
    seen = set()
    for seed in range(60):
        space = workspace(FORGETTING, seed)
        seen.add(swap_operator(space))
    assert "operator Sub -> Add" in seen
    assert "comparison Gt -> Lt" in seen
    assert "operator Mult -> Div" in seen  # only into a division by a parameter


def test_wrap_uses_a_task_primitive_and_unwrap_removes_one() -> None:
    space = workspace(SEED, 2)
    note = wrap(space)
    assert note is not None and note.split()[-1] in PRIMITIVES
    assert any(f"{p}(" in function_source(space) for p in PRIMITIVES)
    space = workspace(FORGETTING, 0)
    assert unwrap(space) == "unwrapped jnp.tanh"
    assert "params['beta'] * q" in function_source(space)


def test_wrap_adds_the_import_a_primitive_needs() -> None:
    source = SEED.replace("import jax\n", "")
    space = workspace(source, 0)
    space.primitives = ("jax.nn.sigmoid",)
    assert wrap(space) == "wrapped in jax.nn.sigmoid"
    assert "import jax" in ast.unparse(space.module).splitlines()


def test_insert_term_declares_a_new_parameter_with_bounds() -> None:
    for seed in range(40):
        space = workspace(SEED, seed)
        note = insert_term(space)
        assert note is not None
        sync_declaration(space.function, space.known_bounds)
        declared = read_declaration(space.function)
        assert declared is not None
        assert set(declared) >= {"alpha", "beta"} or "alpha" not in function_source(space)
        for low, high in declared.values():
            assert low < high
        new = set(declared) - {"alpha", "beta"}
        for name in new:
            assert declared[name] in {(-5.0, 5.0), (0.0, 1.0), (0.0, 5.0)}
            assert f"params['{name}']" in function_source(space)


def test_insert_term_reads_only_state_slots_that_something_writes() -> None:
    for seed in range(60):
        space = workspace(SEED, seed)
        insert_term(space)
        read = {n.slice.value for n in ast.walk(space.function) if isinstance(n, ast.Subscript)
                and isinstance(n.value, ast.Name) and n.value.id == "state" and isinstance(n.slice, ast.Constant)}
        assert read <= {0, 1}  # the seed writes only state[:2]


def test_remember_writes_a_free_state_slot_and_reads_it_back() -> None:
    notes = set()
    for seed in range(40):
        space = workspace(SEED, seed)
        note = remember(space)
        assert note is not None and note.startswith("remembered")
        text = function_source(space)
        returned = text.splitlines()[-1]
        assert "state.at[:2].set(q).at[" in returned
        assert "params['w_memory'] * state[" in text
        notes.add(note.split("`")[1])
    assert "jax.nn.one_hot(choice, 2)" in notes  # the last choice, for a perseveration-like term
    assert "reward" in notes


def test_delete_statement_keeps_params_return_and_defined_names() -> None:
    for seed in range(30):
        space = workspace(SEED, seed)
        note = delete_statement(space)
        # Only the value update can go: every other statement defines a name read later.
        assert note == "deleted `q = q.at[choice].add(params['alpha'] * prediction_error)`"
        sync_declaration(space.function, space.known_bounds)
        text = function_source(space)
        assert "PARAMS" in text and "return" in text
        assert read_declaration(space.function) == {"beta": (0.0, 20.0)}  # alpha is no longer read


def test_duplicate_statement_adds_a_modified_copy() -> None:
    space = workspace(SEED, 5)
    before = len(space.function.body)
    note = duplicate_statement(space)
    assert note is not None and note.startswith("duplicated statement")
    assert len(space.function.body) == before + 1


def test_statement_crossover_declares_borrowed_parameters_with_the_donor_bounds() -> None:
    borrowed = 0
    for seed in range(60):
        space = workspace(SEED, seed, donors=(PERSEVERATION,))
        if crossover_statement(space) is None:
            continue
        sync_declaration(space.function, space.known_bounds)
        declared = read_declaration(space.function)
        if "kappa" in declared:
            borrowed += 1
            assert declared["kappa"] == (-5.0, 5.0)
    assert borrowed > 0


def test_crossover_copies_the_helper_function_a_borrowed_statement_calls() -> None:
    copied = 0
    for seed in range(80):
        space = workspace(SEED, seed, donors=(FORGETTING,))
        if crossover_statement(space) is None and crossover_expression(space) is None:
            continue
        text = ast.unparse(space.module)
        if "decay(" in function_source(space):
            copied += 1
            assert "def decay(value, rate):" in text
            assert text.index("def decay") < text.index("def agent")
    assert copied > 0


# --- errors -------------------------------------------------------------------------------------------------


def test_no_shots_is_an_error_proposal() -> None:
    (proposal,) = asyncio.run(MutationProposer().propose(context((), seed=0)))
    assert proposal.source == ""
    assert proposal.error == "no program to mutate: the prompt has no shots."


def test_a_parent_without_a_params_literal_is_skipped_with_a_reason() -> None:
    broken = SEED.replace('PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}', "PARAMS = make_params()")
    mutation = MutationProposer().mutate(context((broken,), seed=0))
    assert mutation.source == ""
    assert "does not start with a literal PARAMS" in mutation.error
    ok = MutationProposer().mutate(context((SEED, broken), seed=0))
    assert ok.error == "" and ok.parent_id == 0


def test_a_program_nothing_can_change_gives_an_error_after_retries() -> None:
    bare = 'def agent(params, state, choice, reward):\n    PARAMS = {"a": (0.0, 1.0)}\n    return state * params["a"]\n'
    proposer = MutationProposer(operator_weights={"perturb_constant": 1.0}, max_attempts=3)
    mutation = proposer.mutate(context((bare,), seed=0))
    assert mutation.source == ""
    assert mutation.error.startswith("no valid mutant after 3 attempts")


def test_unknown_operator_names_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown operators \['swap'\]"):
        MutationProposer(operator_weights={"swap": 1.0})


def test_candidate_problems_names_each_broken_invariant() -> None:
    assert candidate_problems("def agent(:", "agent")[0].startswith("does not parse")
    assert candidate_problems(SEED, "model") == ["defines no module-level function 'model'"]
    undeclared = SEED.replace("params[\"beta\"] * q", "params[\"gamma\"] * q")
    assert candidate_problems(undeclared, "agent") == [
        "reads undeclared parameters ['gamma']",
        "declares parameters it never reads ['beta']",
    ]
    bad_bounds = SEED.replace('"beta": (0.0, 20.0)', '"beta": (20.0, 0.0)')
    assert candidate_problems(bad_bounds, "agent") == ["PARAMS['beta'] = (20.0, 0.0): low must be < high"]


# --- dead assignments -----------------------------------------------------------------------------------------

OVERWRITTEN = '''import jax.numpy as jnp


def agent(params, state, choice, reward):
    """An overwritten response, as duplicate_statement leaves it."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0), "bias": (-5.0, 5.0)}
    q = state[:2]
    unused = q * 2.0
    orphan = unused + params["bias"]
    response = jnp.exp(params["bias"] * q)
    response = params["beta"] * q
    q = q.at[choice].add(params["alpha"] * (reward - q[choice]))
    scale = lambda x: x * params["beta"] + later
    later = 1.0
    a, b = q[0], q[1]
    return response + scale(a), state.at[:2].set(q)
'''


def test_dead_assignments_are_removed_and_chains_with_them():
    module = ast.parse(OVERWRITTEN)
    function = find_function(module, "agent")
    removed = remove_dead_assignments(function)
    assert removed == ["unused = q * 2.0", "orphan = unused + params['bias']",
                       "response = jnp.exp(params['bias'] * q)"]
    text = ast.unparse(function)
    # q is read after its reassignment; `later` is read by a lambda that runs after it; a, b bind together
    assert "q = state[:2]" in text and "later = 1.0" in text and "a, b = (q[0], q[1])" in text
    assert "PARAMS" in text and text.count("response =") == 1
    sync_declaration(function, {})
    assert list(read_declaration(function)) == ["alpha", "beta"]  # bias was read only by dead lines
    assert remove_dead_assignments(function) == []  # nothing left to remove


def test_subscript_targets_and_global_functions_are_left_alone():
    source = OVERWRITTEN.replace('    """An overwritten', '    global later\n    """An overwritten')
    function = find_function(ast.parse(source), "agent")
    assert remove_dead_assignments(function) == []
    kept = find_function(ast.parse('''def agent(params, state, choice, reward):
    PARAMS = {"alpha": (0.0, 1.0)}
    state = state.at[0].set(1.0)
    state[1] = params["alpha"]
    return state[:2], state
'''), "agent")
    assert remove_dead_assignments(kept) == []


def test_mutants_of_a_program_with_dead_code_come_out_without_it():
    # a valid candidate this time: the lambda's late-bound name goes
    source = OVERWRITTEN.replace(" + later", "").replace("    later = 1.0\n", "")
    proposer = MutationProposer()
    for seed in range(20):
        mutation = proposer.mutate(context((source,), seed))
        assert mutation.error == "", mutation.error
        assert "removed 3 dead assignments" in mutation.notes or "unused" not in mutation.source
        assert remove_dead_assignments(find_function(ast.parse(mutation.source), "agent")) == []
