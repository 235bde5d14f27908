"""Completion parsing: a table of messy LLM answers paired with the candidate source we expect."""

import pytest

from engine.proposers.parsing import (
    CompletionParseError,
    add_missing_definitions,
    apply_search_replace,
    extract_candidate,
    prompt_header,
    rename_function,
)

HEADER = "def agent_v2(params, state, choice, reward):"
BODY = """    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
    q = state[:2]
    q = q.at[choice].add(params["alpha"] * (reward - q[choice]))
    return params["beta"] * q, state.at[:2].set(q)"""
V2 = f"{HEADER}\n{BODY}"
EXPECTED = f"def agent(params, state, choice, reward):\n{BODY}\n"
HELPER = "import jax.numpy as jnp\n\n\n@jax.jit\ndef _scaled(q, beta):\n    # a comment that must survive\n    return beta * jnp.asarray(q)\n"
BODY_AT_COLUMN_0 = "\n".join(line[4:] for line in BODY.splitlines())

CASES = [
    # (id, answer, expected source)
    ("python fence, prose around", f"Here is a better model.\n\n```python\n{V2}\n```\n\nIt learns faster.", EXPECTED),
    ("py fence", f"```py\n{V2}\n```", EXPECTED),
    ("bare fence", f"Sure:\n```\n{V2}\n```\nDone.", EXPECTED),
    ("tilde fence", f"~~~python\n{V2}\n~~~", EXPECTED),
    ("no fence, prose before and after", f"Here is the improved agent:\n\n{V2}\n\nThis adds a learning rate.", EXPECTED),
    ("windows line endings", f"```python\r\n{V2}\r\n```\r\n".replace("\n", "\r\n").replace("\r\r", "\r"), EXPECTED),
    ("wrong version number", f"```python\n{V2.replace('agent_v2', 'agent_v3')}\n```", EXPECTED),
    ("unversioned name", f"```python\n{V2.replace('agent_v2', 'agent')}\n```", EXPECTED),
    ("other name, right arguments", f"```python\n{V2.replace('agent_v2', 'q_learner')}\n```", EXPECTED),
    ("helpers, imports and decorators kept", f"```python\n{HELPER}\n\n{V2}\n```", f"{HELPER}\n\n{EXPECTED}"),
    ("body only, continuing the header", f"{BODY}\n", EXPECTED),
    ("body only, with prose first", f"The body is:\n\n{BODY}\n\nThat is all.", EXPECTED),
    ("body only, fenced at column 0", f"```python\n{BODY_AT_COLUMN_0}\n```", EXPECTED),
    (
        "truncated inside a trailing helper",
        f"```python\n{V2}\n\n\ndef helper(x):\n    y = (x +",
        EXPECTED,
    ),
    (
        "truncated inside trailing prose after the fence",
        f"```python\n{V2}\n```\n\nThe model now keeps a trace of past rew",
        EXPECTED,
    ),
    (
        "recursive reference renamed",
        "```python\ndef agent_v3(params, state, choice, reward):\n"
        '    PARAMS = {"alpha": (0.0, 1.0)}\n    if choice < 0:\n        return agent_v3(params, state, 0, reward)\n'
        "    return state[:2], state\n```",
        'def agent(params, state, choice, reward):\n    PARAMS = {"alpha": (0.0, 1.0)}\n    if choice < 0:\n'
        "        return agent(params, state, 0, reward)\n    return state[:2], state\n",
    ),
    (
        "repeated old version dropped",
        f"```python\n{V2.replace('agent_v2', 'agent_v1')}\n\n\n{V2}\n```",
        EXPECTED,
    ),
    (
        "old version kept when called",
        f"```python\n{V2.replace('agent_v2', 'agent_v1')}\n\n\n{HEADER}\n    return agent_v1(params, state, choice, reward)\n```",
        f"{V2.replace('agent_v2', 'agent_v1')}\n\n\ndef agent(params, state, choice, reward):\n"
        "    return agent_v1(params, state, choice, reward)\n",
    ),
    (
        "demo code at module level dropped",
        f"```python\n{V2}\n\n\nprint(agent_v2({{}}, None, 0, 1.0))\nif __name__ == '__main__':\n    agent_v2({{}}, None, 0, 1.0)\n```",
        EXPECTED,
    ),
    (
        "last python block wins over an earlier one",
        f"The old one:\n```python\n{V2.replace('agent_v2', 'agent_v1').replace('20.0', '10.0')}\n```\n"
        f"The new one:\n```python\n{V2}\n```",
        EXPECTED,
    ),
    ("json fence ignored for a python fence", f'```json\n{{"a": 1}}\n```\n```python\n{V2}\n```', EXPECTED),
    (
        "a 'def agent' kept from the prompt is replaced",
        f"```python\n{V2.replace('agent_v2', 'agent').replace('20.0', '5.0')}\n\n\n{V2}\n```",
        EXPECTED,
    ),
]

ERROR_CASES = [
    ("empty", "   \n", "empty"),
    ("prose only", "I would add a forgetting term to the Q values.", "expected a Python function `def agent_v2"),
    ("truncated inside the function", f"```python\n{HEADER}\n    PARAMS = {{}}\n    q = state[:2]\n    for i in range(2):\n        q = q.at[i].add(", "cut off"),
    ("unclosed fence that stops mid-function", f"```python\n{HEADER}\n    PARAMS = {{}}\n    q = state[:2]", "cut off"),
    ("wrong arguments", "```python\ndef model(x, y):\n    return x + y\n```", r"functions model\(x, y\)"),
    ("json only", '```json\n{"alpha": 0.3}\n```', "expected a Python function"),
]


@pytest.mark.parametrize(("answer", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_extract_candidate(answer, expected):
    assert extract_candidate(answer, "agent", 2, HEADER) == expected


@pytest.mark.parametrize(("answer", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_extract_candidate_errors(answer, message):
    with pytest.raises(CompletionParseError, match=message):
        extract_candidate(answer, "agent", 2, HEADER)


def test_body_only_drops_the_headers_version_marker_docstring():
    header = f'{HEADER}\n    """Improved version of agent_v1."""'
    expected = f'def agent(params, state, choice, reward):\n{BODY}\n'
    assert extract_candidate(BODY, "agent", 2, header) == expected


def test_prompt_header_is_the_trailing_versioned_header():
    prompt = f"def agent_v0(a):\n    return a\n\n\n{HEADER}\n    \"\"\"Improved.\"\"\"\n"
    assert prompt_header(prompt, "agent", 2) == f'{HEADER}\n    """Improved."""'
    assert prompt_header(prompt, "agent", 3) == ""


def test_rename_function_leaves_strings_and_comments():
    source = 'def agent_v2(x):\n    # agent_v2 is recursive\n    return agent_v2(x - 1) if x else "agent_v2"\n'
    assert rename_function(source, "agent_v2", "agent") == (
        'def agent(x):\n    # agent_v2 is recursive\n    return agent(x - 1) if x else "agent_v2"\n'
    )


SHOT = 'import jax.numpy as jnp\n\n\ndef agent(params, x):\n    PARAMS = {"k": (0.0, 1.0)}\n    return params["k"] * x\n'


def test_search_replace_exact_and_reindented():
    answer = (
        "<<<<<<< SEARCH\n    return params[\"k\"] * x\n=======\n    return params[\"k\"] * jnp.tanh(x)\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nPARAMS = {\"k\": (0.0, 1.0)}\n=======\nPARAMS = {\"k\": (0.0, 2.0)}\n>>>>>>> REPLACE"
    )
    assert apply_search_replace(SHOT, answer) == SHOT.replace("(0.0, 1.0)", "(0.0, 2.0)").replace(
        '* x\n', '* jnp.tanh(x)\n'
    )


def test_search_replace_errors():
    with pytest.raises(CompletionParseError, match="no SEARCH/REPLACE blocks"):
        apply_search_replace(SHOT, "just rewrite it")
    with pytest.raises(CompletionParseError, match="SEARCH text is not in the program"):
        apply_search_replace(SHOT, "<<<<<<< SEARCH\nreturn 0\n=======\nreturn 1\n>>>>>>> REPLACE")


def test_add_missing_definitions_brings_imports_and_helpers():
    reference = "import math\nimport jax.numpy as jnp\n\nSCALE = 2.0\n\n\ndef helper(x):\n    return jnp.exp(x) * SCALE\n\n\ndef agent(params, x):\n    return x\n"
    candidate = "def agent(params, x):\n    return helper(x) + math.pi\n"
    completed = add_missing_definitions(candidate, reference, "agent")
    assert completed == (
        "import math\nimport jax.numpy as jnp\n\n\nSCALE = 2.0\n\n\ndef helper(x):\n    return jnp.exp(x) * SCALE\n\n\n"
        + candidate
    )
    assert add_missing_definitions(EXPECTED, reference, "agent") == EXPECTED


def test_body_with_its_own_docstring_replaces_the_header_docstring():
    header = f'{HEADER}\n    """Improved version of agent_v1."""'
    answer = f'    """Adds a decay."""\n{BODY}\n'
    assert extract_candidate(answer, "agent", 2, header) == EXPECTED.replace(
        "reward):\n", 'reward):\n    """Adds a decay."""\n', 1
    )


def test_truncated_flag_distrusts_code_that_runs_to_the_end():
    cut = f"{HEADER}\n    PARAMS = {{}}\n    q = state[:2]\n"  # parses, but the model stopped at max_tokens
    assert extract_candidate(cut, "agent", 2, HEADER).startswith("def agent(")
    with pytest.raises(CompletionParseError, match="cut off"):
        extract_candidate(cut, "agent", 2, HEADER, truncated=True)
    closed = f"```python\n{V2}\n```\nThis model now"  # cut in the prose, after the closed fence
    assert extract_candidate(closed, "agent", 2, HEADER, truncated=True) == EXPECTED


def test_every_truncation_gives_source_or_a_parse_error():
    for _, answer, _ in CASES[::3]:
        for end in range(0, len(answer), 7):
            try:
                compile(extract_candidate(answer[:end], "agent", 2, HEADER), "<candidate>", "exec")
            except CompletionParseError:
                pass


def test_helpers_from_another_block_are_brought_in():
    answer = (
        "First a helper:\n```python\nimport math\n\n\ndef squash(x):\n    return math.tanh(x)\n```\n"
        f"Then the model:\n```python\n{HEADER}\n    return squash(reward), state\n```"
    )
    assert extract_candidate(answer, "agent", 2, HEADER) == (
        "import math\n\n\ndef squash(x):\n    return math.tanh(x)\n\n\n"
        "def agent(params, state, choice, reward):\n    return squash(reward), state\n"
    )
