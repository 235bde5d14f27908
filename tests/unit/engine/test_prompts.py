from pathlib import Path

import pytest

from engine.proposers.prompts import render_prompt
from engine.proposers.base import Shot

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[3]

WINNER = '''import jax
import jax.numpy as jnp


def helper(x):
    return jnp.tanh(x)


def agent(params, state, choice, reward):
    """A docstring that later versions do not show."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0), "kappa": (-5.0, 5.0)}
    q = state[:2]
    q = q.at[choice].add(params["alpha"] * (reward - q[choice]))  # a comment
    last = jax.nn.one_hot(choice, 2)
    return params["beta"] * q + params["kappa"] * helper(last), state.at[:2].set(q)
'''


def shots() -> list[Shot]:
    seed = (REPO / "tasks/bandit/seed.py").read_text()
    return [
        Shot(program_id=1, source=seed, score=0.7742, diagnostics="held-out score 0.7742; fitted alpha=0.326, beta=8.2"),
        Shot(program_id=7, source=WINNER, score=0.8123, diagnostics="held-out score 0.8123; at a bound: kappa"),
    ]


def test_two_shots_render_exactly_the_golden_prompt():
    context = render_prompt(
        island_id=3,
        function_name="agent",
        shots=shots(),
        summary="Cognitive model of choices in two-armed bandits.",
        description="Write a better agent.",
        primitives=("jnp.exp",),
        seed=5,
    )
    assert context.next_version == 2
    assert context.text.rstrip().endswith('def agent_v2(params, state, choice, reward):\n    """Improved version of `agent_v1`."""')
    assert context.text == (GOLDEN / "bandit_two_shots.txt").read_text()


def test_version_numbers_come_from_the_number_of_shots():
    context = render_prompt(island_id=0, function_name="agent", shots=shots()[:1], summary="s", description="")
    assert context.next_version == 1
    assert "def agent_v0(" in context.text and "def agent_v1(" in context.text
    assert "def agent_v2(" not in context.text


def test_a_program_without_the_function_is_refused():
    with pytest.raises(ValueError, match="has no function 'agent'"):
        render_prompt(island_id=0, function_name="agent", shots=[Shot(1, "x = 1\n", 0.5)], summary="s", description="")


def test_a_failure_is_summarised_by_the_candidates_line_and_the_exception():
    from engine.search.loop import failure_summary

    error = (
        "Traceback (most recent call last):\n"
        '  File "/repo/sandbox/exported.py", line 176, in export_candidate\n'
        "    primal = lower(jax.jit(jax.vmap(function)))\n"
        '  File "candidate.py", line 13, in agent\n'
        "    choice = jnp.random.binomial(1, p)\n"
        "AttributeError: module 'jax.numpy' has no attribute 'random'\n"
        "--------------------\n"
        "For simplicity, JAX has removed its internal frames from the traceback of the following exception.\n"
    )
    assert failure_summary(error) == (
        '  File "candidate.py", line 13, in agent\n'
        "    choice = jnp.random.binomial(1, p)\n"
        "AttributeError: module 'jax.numpy' has no attribute 'random'"
    )
    assert failure_summary("agent returned logits of shape (3,); expected (2,).") == (
        "agent returned logits of shape (3,); expected (2,)."
    )
