"""The parser and the prompts against what real small models wrote.

`../shared/llm-answers/*.jsonl` (beside the repository) holds real exchanges with Qwen2.5-Coder-0.5B and 1.5B
served by llama.cpp: the exact messages the engine sent (the earlier prompt, in FunSearch's versioned form
inside a chat message) and the model's unedited answer.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from engine.llm.errors import CompletionParseError
from engine.proposers.parsing import add_missing_definitions, extract_candidate, prompt_header
from engine.proposers.prompts import PromptTask, render_prompt
from engine.proposers.base import Shot
from engine.task.spec import load_task

REPO = Path(__file__).resolve().parents[3]
ANSWERS = REPO.parent / "shared" / "llm-answers"

pytestmark = pytest.mark.skipif(
    not ANSWERS.is_dir(), reason=f"the real LLM answers are expected at {ANSWERS} (shared/llm-answers beside the "
                                 "repository); it is absent"
)


def exchanges() -> list[tuple[str, int, dict]]:
    if not ANSWERS.is_dir():
        return []
    found = []
    for path in sorted(ANSWERS.glob("*.jsonl")):
        for index, line in enumerate(path.read_text().splitlines()):
            found.append((path.stem, index, json.loads(line)))
    return found


def asked_version(exchange: dict) -> int | None:
    match = re.search(r"^Write agent_v(\d+)", exchange["messages"][-1]["content"], flags=re.MULTILINE)
    return int(match.group(1)) if match else None


def shown_programs(prompt: str, version: int) -> list[str]:
    """The programs of an earlier prompt (its versioned text after the instruction), as `agent` modules."""
    tree = ast.parse(prompt.split("\n\n", 1)[1])
    imports = [ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    programs = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and re.fullmatch(r"agent_v(\d+)", node.name):
            if int(node.name.split("_v")[1]) < version:
                node.name = "agent"
                programs.append("\n".join(imports) + "\n\n\n" + ast.unparse(node) + "\n")
    return programs


def body_without_docstring(function: ast.FunctionDef) -> str:
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return "\n".join(ast.unparse(statement) for statement in body)


def evolved_function(source: str) -> ast.FunctionDef:
    return next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "agent")


REAL = [(name, index, exchange) for name, index, exchange in exchanges() if asked_version(exchange) is not None]


@pytest.mark.parametrize(("name", "index", "exchange"), REAL, ids=[f"{name}-{index}" for name, index, _ in REAL])
def test_a_real_answer_gives_a_new_function_or_says_it_only_repeated_the_prompt(name, index, exchange):
    prompt = exchange["messages"][-1]["content"]
    version = asked_version(exchange)
    shown = shown_programs(prompt, version)
    header = prompt_header(prompt, "agent", version)
    try:
        source = extract_candidate(exchange["answer"], "agent", version, header,
                                   exchange["finish_reason"] == "length", shown=shown)
    except CompletionParseError as error:
        # Then every function of the answer with the evolved function's arguments is a stub or a copy.
        assert re.search(r"repeats a program of the prompt|only an empty", str(error)), str(error)
        shown_bodies = {body_without_docstring(evolved_function(program)) for program in shown}
        blocks = re.findall(r"```(?:python)?\n(.*?)(?:```|$)", exchange["answer"], flags=re.DOTALL)
        for block in blocks:
            module = ast.parse(block)
            params_above = [ast.unparse(node) for node in module.body
                            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PARAMS"]
            for node in ast.walk(module):
                if isinstance(node, ast.FunctionDef) and [a.arg for a in node.args.args][:2] == ["params", "state"]:
                    body = body_without_docstring(node)
                    with_params = "\n".join(params_above + [body])  # PARAMS written above the function
                    assert body in shown_bodies or with_params in shown_bodies or body in ("", "pass", "..."), (
                        ast.unparse(node))
        return
    function = evolved_function(source)
    assert [argument.arg for argument in function.args.args] == ["params", "state", "choice", "reward"]
    # Not one of the prompt's programs, and nothing copied from the prompt that is no longer true of it.
    assert body_without_docstring(function) not in {body_without_docstring(evolved_function(p)) for p in shown}
    assert not re.search(r"^\s*#.*held-out score", source, flags=re.MULTILINE)
    docstring = ast.get_docstring(function) or ""
    assert not re.fullmatch(r"Improved version of `agent_v\d+`\.", docstring.strip())
    assert "Seed model: Q-learning with a softmax choice rule.\n" not in docstring + "\n"


def test_answers_that_only_repeat_the_prompt_are_told_apart_from_new_functions():
    """What the parser makes of all real answers: in 21 of 36 answers the 0.5B model only re-typed programs of
    the prompt (often with the empty header after them); the 1.5B model re-typed the seed in most answers but
    then wrote a function of its own, in all but two (one of them the seed with its PARAMS written above it)."""
    outcomes: dict[str, list[int]] = {}
    for name, _, exchange in REAL:
        version = asked_version(exchange)
        prompt = exchange["messages"][-1]["content"]
        try:
            extract_candidate(exchange["answer"], "agent", version, prompt_header(prompt, "agent", version),
                              exchange["finish_reason"] == "length", shown=shown_programs(prompt, version))
            outcomes.setdefault(name, [0, 0])[0] += 1
        except CompletionParseError:
            outcomes.setdefault(name, [0, 0])[1] += 1
    assert outcomes == {"qwen2.5-coder-0.5b-instruct": [15, 21], "qwen2.5-coder-1.5b-instruct": [36, 2]}


def test_an_answer_to_another_question_is_no_candidate():
    [fibonacci] = [exchange for _, _, exchange in exchanges() if "Fibonacci" in exchange["messages"][-1]["content"]]
    with pytest.raises(CompletionParseError, match="expected a Python function `def agent_v1"):
        extract_candidate(fibonacci["answer"], "agent", 1, "def agent_v1(params, state, choice, reward):")


def bandit_prompt(shots: list[Shot], seed: int = 0, vary: bool = False, last_failure: str = ""):
    task = load_task(REPO / "tasks/bandit/task.yaml")
    return render_prompt(island_id=0, function_name="agent", shots=shots, summary=task.file.summary,
                         description=task.file.description, primitives=task.file.primitives, seed=seed,
                         task=PromptTask.from_task(task), vary=vary, last_failure=last_failure)


def test_a_real_prompt_that_showed_the_seed_twice_now_shows_it_once():
    # A real prompt of the earlier form whose two programs are the same seed (drawn twice from its cluster).
    twice = [exchange for _, _, exchange in REAL if asked_version(exchange) == 2
             and len(set(shown_programs(exchange["messages"][-1]["content"], 2))) == 1]
    assert twice, "the shared answers hold a prompt that showed one program twice"
    seed = (REPO / "tasks/bandit/seed.py").read_text()
    context = bandit_prompt([Shot(1, seed, 0.7742, "held-out score 0.7742"), Shot(1, seed, 0.7742, "held-out score 0.7742")])
    assert context.next_version == 1
    assert context.chat_user.count("def agent_v0(") == 1 and context.text.count("def agent_v0(") == 1


def test_the_chat_prompt_states_the_rules_the_real_answers_broke():
    seed = (REPO / "tasks/bandit/seed.py").read_text()
    context = bandit_prompt([Shot(1, seed, 0.7742, "held-out score 0.7742; train score 0.8137")])
    rules = context.chat_system
    # Answers wrote `q[choice] += ...`, a Python `if` on traced values, `jnp.random`, `from typing import *`,
    # a single array as the return value, and no PARAMS.
    for stated in ("x = x.at[i].set(v)", "never `x[i] = v` or `x[i] += v`", "jnp.where(condition, a, b)",
                   "no randomness: no jax.random", "Imports: only math, numpy, jax",
                   "new_state: (8,) float array", "logits: (2,) float array", "PARAMS = {\"name\": (low, high), ...}",
                   "held-out score (higher is better"):
        assert stated in rules, stated
    assert "Seed model" not in rules  # the contract, not the seed's mechanism
    # The chat request has no empty header to copy, and no docstring to re-type.
    assert "Improved version" not in context.chat_user and '"""One trial' not in context.chat_user
    assert "Do not repeat the programs above" in context.chat_user
    # Completion models keep FunSearch's versioned form, with the rules in its opening docstring.
    assert context.text.rstrip().endswith('def agent_v1(params, state, choice, reward):\n    """Improved version of `agent_v0`."""')
    assert "jnp.where(condition, a, b)" in context.text.split("\nimport jax\n")[0]


def test_prompts_from_an_island_that_holds_only_the_seed_differ():
    # In the real runs 25 of 32 prompts were byte-identical: every island started from the seed alone.
    earlier = [exchange["messages"][-1]["content"] for name, _, exchange in REAL if name.endswith("0.5b-instruct")]
    assert len(set(earlier)) < len(earlier) / 2
    seed = (REPO / "tasks/bandit/seed.py").read_text()
    prompts = {bandit_prompt([Shot(1, seed, 0.7742, "held-out score 0.7742")], seed=n, vary=True).chat_user
               for n in range(32)}
    assert len(prompts) == 4  # one per idea of the task's description
    assert all("One idea to try:" in prompt for prompt in prompts)


def test_the_last_failure_of_the_best_program_is_shown():
    seed = (REPO / "tasks/bandit/seed.py").read_text()
    context = bandit_prompt([Shot(1, seed, 0.7742, "")], last_failure="CRASHED: TracerBoolConversionError")
    assert "The last attempt to improve on agent_v0 failed" in context.chat_user
    assert "CRASHED: TracerBoolConversionError" in context.chat_user


def test_a_params_dict_written_above_the_function_is_moved_into_it():
    moved = 0
    for _, _, exchange in REAL:
        if not re.search(r"^PARAMS\s*=", exchange["answer"], flags=re.MULTILINE):
            continue
        version = asked_version(exchange)
        prompt = exchange["messages"][-1]["content"]
        try:
            source = extract_candidate(exchange["answer"], "agent", version, prompt_header(prompt, "agent", version),
                                       exchange["finish_reason"] == "length", shown=shown_programs(prompt, version))
        except CompletionParseError as error:
            assert "once its PARAMS is put first in its body" in str(error)  # the seed, PARAMS above it
            continue
        function = evolved_function(source)
        body = [s for s in function.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        assert isinstance(body[0], ast.Assign) and body[0].targets[0].id == "PARAMS", source
        assert not any(isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PARAMS"
                       for node in ast.parse(source).body)
        moved += 1
    assert moved == 2


def traces(source: str) -> str:
    """"" when the candidate's `agent` traces with the bandit task's shapes, else the exception's type."""
    import jax
    import jax.numpy as jnp

    from engine.fit.params import read_params

    namespace: dict = {}
    try:
        exec(compile(source, "<answer>", "exec"), namespace)
        params = {name: jnp.float32(0.5) for name in read_params(source, "agent").names}
        jax.eval_shape(namespace["agent"], params, jnp.zeros(8), jnp.int32(0), jnp.float32(1.0))
    except Exception as error:  # noqa: BLE001 - the answer's own failure is what is counted
        return type(error).__name__
    return ""


def test_the_repairs_make_real_answers_trace_that_failed_on_jax_rules():
    """The 1.5B model's answers, read as candidates: 20 of 36 fail to trace. The repairs rewrite the Python `if`s
    on traced values, the in-place updates, numpy on traced values, jnp.clip's old keywords and the jax.ops
    updates, and copy a missing PARAMS from the prompt; then 11 fail: `jnp.random` and other randomness the task
    does not allow, names used where Python would not have bound them (left as written), misused jax calls."""
    from engine.proposers.repair import repair_jax

    failed_before, failed_after = {}, {}
    for name, index, exchange in REAL:
        if not name.endswith("1.5b-instruct"):
            continue
        version = asked_version(exchange)
        prompt = exchange["messages"][-1]["content"]
        shown = shown_programs(prompt, version)
        try:
            source = extract_candidate(exchange["answer"], "agent", version, prompt_header(prompt, "agent", version),
                                       exchange["finish_reason"] == "length", shown=shown)
        except CompletionParseError:
            continue
        source = add_missing_definitions(source, shown[-1], "agent")
        before = traces(source)
        after = traces(repair_jax(source, "agent", shown)[0])
        if before:
            failed_before[index] = before
        if after:
            failed_after[index] = after
    assert (len(failed_before), len(failed_after)) == (20, 11), (failed_before, failed_after)
    assert set(failed_after) <= set(failed_before)
