"""LLMProposer with FakeLLM: prompt, rewrite and diff answers, garbage answers, which errors propagate."""

import asyncio
from pathlib import Path

import pytest

from engine.llm import FakeLLM, LLMBudgetExhausted, LLMResponseError, ModelMix
from engine.proposers.parsing import rename_function
from engine.proposers.base import PromptContext, Proposal, Shot
from engine.proposers.llm import LLMProposer

SEED = (Path(__file__).parents[4] / "tasks" / "bandit" / "seed.py").read_text()
HEADER = "def agent_v1(params, state, choice, reward):"
PROMPT = rename_function(SEED, "agent", "agent_v0") + "\n\n" + HEADER + '\n    """Improved version of agent_v0."""\n'
CONTEXT = PromptContext(
    island_id=0,
    function_name="agent",
    shots=(Shot(program_id=7, source=SEED, score=-0.6),),
    text=PROMPT,
    next_version=1,
    primitives=("jnp.exp",),
    seed=3,
)
NEW_FUNCTION = """def agent_v1(params, state, choice, reward):
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0), "decay": (0.0, 1.0)}
    q = state[:2] * params["decay"]
    q = q.at[choice].add(params["alpha"] * (reward - q[choice]))
    return params["beta"] * jnp.exp(q), state.at[:2].set(q)
"""


def propose(answer, edit_format="rewrite", context=CONTEXT) -> tuple[Proposal, FakeLLM]:
    fake = FakeLLM([answer], model="fake-1", cost_usd_per_token=0.001)
    (proposal,) = asyncio.run(LLMProposer(fake, edit_format=edit_format).propose(context))
    return proposal, fake


def test_rewrite_answer_becomes_a_candidate_with_the_seed_imports():
    proposal, fake = propose(f"Better:\n```python\n{NEW_FUNCTION}```")
    assert proposal.error == ""
    assert proposal.source == "import jax.numpy as jnp\n\n\n" + NEW_FUNCTION.replace("agent_v1", "agent")
    assert proposal.proposer == "llm:fake-1"
    assert proposal.tokens > 0 and proposal.cost_usd == pytest.approx(proposal.tokens * 0.001)
    prompt = fake.prompts[0]
    assert prompt.startswith("Write agent_v1, an improved version") and "PARAMS" in prompt and "jnp.exp" in prompt
    assert prompt.endswith(CONTEXT.text)


def test_garbage_answer_is_a_failed_proposal_with_its_cost():
    proposal, _ = propose("I am not sure what you mean.")
    assert proposal.source == "" and "expected a Python function `def agent_v1" in proposal.error
    assert proposal.tokens > 0


@pytest.mark.parametrize("expression", ["-" * 100_000 + "1", " + ".join(["q"] * 100_000), "-" * 2_500 + "1"])
def test_code_nested_too_deeply_for_pythons_parser_is_a_failed_proposal_not_a_crash(expression):
    """Python's parser and tree walkers give up on deep nesting with MemoryError or RecursionError, not
    SyntaxError; an answer built that way must not stop the run."""
    answer = f"```python\n{NEW_FUNCTION}```".replace('q = state[:2] * params["decay"]',
                                                       f'q = state[:2] * params["decay"] + {expression}')
    proposal, _ = propose(answer)
    assert proposal.source == "" and proposal.error == "the answer's code is nested too deeply to read."
    assert proposal.tokens > 0


def test_a_source_nested_too_deeply_has_a_problem_a_hash_and_a_static_rejection():
    from islands import CandidateModel, canonical_hash
    from sandbox import check_source

    def nested(depth: int) -> str:
        return 'def agent(params):\n    PARAMS = {"a": (0.0, 1.0)}\n    return ' + "-" * depth + 'params["a"]\n'

    unparsable = CandidateModel.parse(nested(100_000), "agent")
    assert unparsable.problem == "candidate source does not parse: it is nested too deeply."
    assert unparsable.canonical_hash == canonical_hash(nested(100_000)) and unparsable.canonical_hash.startswith("raw-")
    assert check_source(nested(100_000), ("jax",)).message == "the source is nested too deeply to parse"
    # parses, but is deeper than the tree walkers go: hashed as text, and the static check refuses to run it
    parsed = CandidateModel.parse(nested(1_500), "agent")
    assert parsed.valid and parsed.canonical_hash.startswith("raw-")
    assert check_source(nested(500), ("jax",)).message == "the source is nested too deeply to check"


def test_diff_answer_edits_the_best_shot():
    answer = (
        "<<<<<<< SEARCH\n    logits = params[\"beta\"] * q\n=======\n    logits = params[\"beta\"] * q - 1.0\n"
        ">>>>>>> REPLACE"
    )
    proposal, fake = propose(answer, edit_format="diff")
    assert proposal.error == ""
    assert proposal.source == SEED.replace('logits = params["beta"] * q\n', 'logits = params["beta"] * q - 1.0\n')
    assert "SEARCH/REPLACE" in fake.prompts[0]


def test_diff_quoting_the_versioned_name_applies():
    answer = "<<<<<<< SEARCH\ndef agent_v0(params, state, choice, reward):\n=======\ndef agent_v1(params, state, choice, reward):\n>>>>>>> REPLACE"
    proposal, _ = propose(answer, edit_format="diff")
    assert proposal.source == SEED


def test_diff_that_does_not_apply_falls_back_to_a_rewrite():
    answer = f"<<<<<<< SEARCH\nnot in the program\n=======\nx\n>>>>>>> REPLACE\n\nOr simply:\n```python\n{NEW_FUNCTION}```"
    proposal, _ = propose(answer, edit_format="diff")
    assert proposal.error == "" and "decay" in proposal.source


def test_diff_that_does_not_apply_and_no_rewrite_is_a_failed_proposal():
    proposal, _ = propose("<<<<<<< SEARCH\nnot in the program\n=======\nx\n>>>>>>> REPLACE", edit_format="diff")
    assert proposal.source == "" and proposal.error.startswith("the SEARCH/REPLACE edit does not apply")


def test_malformed_response_is_a_failed_proposal():
    proposal, _ = propose(LLMResponseError("no choices"))
    assert proposal == Proposal(source="", proposer="llm", error="unusable response: no choices")


def test_budget_exhaustion_propagates():
    with pytest.raises(LLMBudgetExhausted):
        propose(LLMBudgetExhausted("spent"))


def test_model_is_drawn_from_the_context_seed():
    a, b = FakeLLM(lambda p: NEW_FUNCTION, model="a"), FakeLLM(lambda p: NEW_FUNCTION, model="b")
    proposer = LLMProposer(ModelMix([a, b], [1.0, 1.0]))
    first = [asyncio.run(proposer.propose(CONTEXT))[0].proposer for _ in range(3)]
    assert len(set(first)) == 1  # same seed, same model
    assert "edit_format='rewrite'" in repr(proposer)


def test_a_chat_prompt_sends_the_rules_as_system_text_and_a_completion_prompt_the_versioned_text():
    from dataclasses import replace

    chat = replace(CONTEXT, chat_system="Rules for `agent`: ...", chat_user="The program so far: ... Write `agent_v1`.")
    fake = FakeLLM([f"```python\n{NEW_FUNCTION}```"] * 2)
    (proposal,) = asyncio.run(LLMProposer(fake).propose(chat))
    assert proposal.error == "" and "decay" in proposal.source
    assert (fake.systems[0], fake.prompts[0]) == ("Rules for `agent`: ...", "The program so far: ... Write `agent_v1`.")
    (proposal,) = asyncio.run(LLMProposer(fake, prompt_style="completion").propose(chat))
    assert (fake.systems[1], fake.prompts[1]) == ("", PROMPT)
    assert "decay" in proposal.source


def test_a_completion_model_continues_the_header_with_the_body():
    body = NEW_FUNCTION.split("\n", 1)[1]
    fake = FakeLLM([body])
    (proposal,) = asyncio.run(LLMProposer(fake, prompt_style="completion").propose(CONTEXT))
    assert proposal.error == "" and '"decay": (0.0, 1.0)' in proposal.source


def test_a_completion_prompt_needs_a_completions_endpoint():
    from pydantic import ValidationError

    from engine.llm import LLMConfig, ModelConfig

    with pytest.raises(ValidationError, match="prompt_style 'completion' needs a text completions endpoint"):
        LLMConfig(provider="anthropic", models=[ModelConfig(name="m")], prompt_style="completion")


@pytest.mark.parametrize("depth", [300, 600, 1_500, 100_000])
def test_a_deeply_nested_source_becomes_a_job_or_a_refused_one_never_an_engine_crash(depth):
    """The engine reads every candidate (PARAMS, lifted constants) before the sandbox runs it; a source deeper than
    the tree walkers go (a seed, an evaluated file, an answer the repairs passed) must not end the run there."""
    from engine.search.evaluation import make_job

    source = 'def agent(params):\n    PARAMS = {"a": (0.0, 1.0)}\n    return ' + "-" * depth + 'params["a"] * 2.0\n'
    job = make_job(1, source, "agent")
    assert job.rejection in (None, "", "the candidate's source is nested too deeply to read.") \
        or "does not parse" in job.rejection
    if depth == 600:  # parses, but lifting its constants recurses past Python's limit
        assert job.rejection == "the candidate's source is nested too deeply to read."
