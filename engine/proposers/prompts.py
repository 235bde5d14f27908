"""Renders prompts: FunSearch's versioned best-shot form, and the same programs framed for a chat model.

The sampled programs, sorted by ascending score, are shown as `agent_v0`, `agent_v1`, ... Completion models get
`PromptContext.text`, which ends at the header of the next version, whose body they write. Chat models get
`chat_system` (the rules of the function: signature and return contract, PARAMS, imports, JAX rules, scores)
and `chat_user` (the task, the programs without docstrings, the request). This module is the only place that
chooses the version number; the parser reads it back from `PromptContext.next_version`.
"""

from __future__ import annotations

import ast
import functools
import random
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from engine.proposers.base import PromptContext, Shot
from engine.task.results import describe_fitted
from islands.candidate_model import CandidateModel

__all__ = ["PromptTask", "render_prompt", "versioned_name", "diagnostics_text", "task_ideas"]


@dataclass(frozen=True, slots=True)
class PromptTask:
    """What every prompt of a task states, built once per run (see `PromptTask.from_task`).

    Attributes:
        contract: the rules of the evolved function, as a bulleted text (see `contract_text`).
        ideas: short modelling ideas from the task's description; one is drawn into each varied prompt.
        checklist: the rules most often broken, in one sentence, repeated at the end of a chat request
            (small models follow what they read last).
    """

    contract: str = ""
    ideas: tuple[str, ...] = ()
    checklist: str = ""

    @classmethod
    def from_task(cls, task) -> PromptTask:
        """Returns the prompt facts of a loaded `TaskSpec`."""
        file = task.file
        return cls(
            contract=contract_text(task.function_name, task.seed_source, file.inputs, file.allowed_imports,
                                   file.primitives),
            ideas=task_ideas(file.description),
            checklist=checklist_text(task.function_name, task.seed_source, file.inputs),
        )


def task_ideas(description: str) -> tuple[str, ...]:
    """Returns the ideas listed after "Ideas from the literature:" (or "Ideas:") in a task description."""
    flat = " ".join(description.split())
    match = re.search(r"Ideas(?: from the literature)?:\s*(.+?)(?:\.\s|\.$|$)", flat)
    if not match:
        return ()
    ideas, depth, current = [], 0, ""
    for character in match.group(1):  # split at commas outside parentheses
        depth += {"(": 1, ")": -1}.get(character, 0)
        if character == "," and depth == 0:
            ideas.append(current)
            current = ""
        else:
            current += character
    ideas.append(current)
    return tuple(idea.strip().removeprefix("and ").removeprefix("or ").strip() for idea in ideas if idea.strip())


def _docstring_contract(seed_source: str, function_name: str) -> tuple[str, str]:
    """Returns (the seed function's signature line, its docstring's summary and Args/Returns sections)."""
    try:
        _, _, function = _split_module(seed_source, function_name)
    except (SyntaxError, ValueError):
        return f"def {function_name}(...)", ""
    signature = f"def {function_name}({ast.unparse(function.args)})"
    docstring = ast.get_docstring(function) or ""
    kept, in_section = [], False
    for line in docstring.split("\n"):
        if line.strip() in ("Args:", "Returns:", "Arguments:", "Yields:"):
            in_section = True
        elif in_section and line.strip() and not line.startswith((" ", "\t")):
            in_section = False  # a paragraph after the sections (e.g. "Seed model: ...") describes the seed
        if in_section or not kept:
            kept.append(line)
        elif not line.strip():
            kept.append(line)
    return signature, "\n".join(kept).strip()


def contract_text(
    function_name: str,
    seed_source: str,
    inputs: Mapping[str, str],
    allowed_imports: Sequence[str],
    primitives: Sequence[str] = (),
) -> str:
    """Returns the rules every candidate must follow, stated once for the model.

    Args:
        function_name: the evolved function, e.g. "agent".
        seed_source: the seed module; its function's signature and docstring (summary, Args, Returns) give
            the call and return contract.
        inputs: task.yaml's inputs (argument name -> "dtype[shape]"); an argument of dtype uint32[2] is a JAX
            random key, and only then is randomness allowed.
        allowed_imports: the modules a candidate may import.
        primitives: expressions the task suggests as building blocks.
    """
    signature, docstring = _docstring_contract(seed_source, function_name)
    keys = [name for name, kind in inputs.items() if kind.replace(" ", "").startswith("uint32[2]") or name == "key"]
    lines = [
        f"Rules for `{function_name}` (every program must follow them, or it fails before it is scored):",
        f"- Signature: `{signature}`; keep these argument names and their order.",
    ]
    if docstring:
        lines.append("- What it receives and must return (shapes are exact):\n" + _indent_block(docstring, "    "))
    lines += [
        "- Free parameters: the first statement of the body (after a docstring, if any) is a literal dict "
        'PARAMS = {"name": (low, high), ...} that declares every free parameter with finite bounds; the body '
        'reads each as params["name"]. The engine fits their values to data: never set them in the code.',
        f"- Imports: only {', '.join(allowed_imports)} (e.g. `import jax.numpy as jnp`); no other module, no "
        "files, no printing.",
    ]
    if primitives:
        lines.append(f"- Useful building blocks: {', '.join(primitives)}.")
    lines += [
        "- JAX rules: the function is traced by jax.jit, so inputs and params are abstract arrays:",
        "  - arrays are immutable: write `x = x.at[i].set(v)` or `x = x.at[i].add(v)`; never `x[i] = v` or "
        "`x[i] += v`;",
        "  - no Python `if`, `while`, `and`, `or` or `bool()` on values computed from the inputs or params: use "
        "`jnp.where(condition, a, b)`; Python loops only over fixed ranges of plain integers;",
    ]
    if keys:
        lines.append(f"  - randomness comes only from the `{keys[0]}` argument (jax.random.split, jax.random.uniform, "
                     "...); never numpy.random or random;")
    else:
        lines.append("  - no randomness: no jax.random, numpy.random or random (the model must be deterministic);")
    lines += [
        "  - use jnp functions (jnp.exp, jnp.log, jnp.clip, ...), not math or numpy, on arrays.",
        "- Scores: each program shown is preceded by its held-out score (higher is better; computed on data its "
        "fit never saw), its train score and its fitted parameter values; \"at a bound\" names parameters that "
        "the fit pushed to an edge of their range (widen the range or change the model).",
    ]
    return "\n".join(lines)


def checklist_text(function_name: str, seed_source: str, inputs: Mapping[str, str]) -> str:
    """Returns the rules that candidates break most often, as one sentence to end a request with."""
    _, docstring = _docstring_contract(seed_source, function_name)
    returns = docstring.split("Returns:", 1)[1] if "Returns:" in docstring else ""
    entries = list(re.finditer(r"^( +)(\w+):\s*(.*)$", returns, flags=re.MULTILINE))
    outputs = []
    for entry in entries:
        if len(entry.group(1)) != len(entries[0].group(1)):
            continue  # a continuation line of the entry above
        shape = re.match(r"\([^)]*\)", entry.group(3))
        kind = shape.group(0) if shape else ("scalar" if "scalar" in entry.group(3) else "")
        outputs.append(f"{entry.group(2)} {kind}".strip())
    keyed = any(kind.replace(" ", "").startswith("uint32[2]") or name == "key" for name, kind in inputs.items())
    parts = [
        "the first statement is PARAMS = {...}",
        "no Python `if` or `while` on arrays (use jnp.where)",
        "no `x[i] = v` or `x[i] += v` (use x = x.at[i].set(v))",
        "randomness only from the key argument" if keyed else "no jax.random, jnp.random or np.random",
        "jnp functions on arrays, never np or math",
    ]
    if len(outputs) == 1:
        parts.append(f"it returns exactly one value, {outputs[0]}")
    elif outputs:
        parts.append(f"it returns exactly the tuple ({', '.join(outputs)})")
    return "Check before answering: " + "; ".join(parts) + "."


def _indent_block(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.split("\n"))


def versioned_name(function_name: str, version: int) -> str:
    return f"{function_name}_v{version}"


def _split_module(source: str, function_name: str) -> tuple[list[str], list[str], ast.FunctionDef]:
    """Returns (import lines, other top-level definitions, the evolved function) of a module."""
    model = CandidateModel.parse(source, function_name)
    if model.module is None:
        raise ValueError(model.problem)
    imports, others, function = [], [], None
    for node in model.module.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(ast.unparse(node))
        elif isinstance(node, ast.FunctionDef) and node.name == function_name:
            function = node
        elif isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            continue  # module docstring
        else:
            others.append(ast.unparse(node))
    if function is None:
        raise ValueError(f"program has no function '{function_name}'.")
    return imports, others, function


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.old:
            node.id = self.new
        return node


def _versioned_function(function: ast.FunctionDef, function_name: str, version: int) -> ast.FunctionDef:
    """Renames the function (and references to itself) to its versioned name; later versions get FunSearch's docstring."""
    node = _Rename(function_name, versioned_name(function_name, version)).visit(ast.parse(ast.unparse(function)).body[0])
    node.name = versioned_name(function_name, version)
    if version > 0:
        docstring = ast.Expr(ast.Constant(f"Improved version of `{versioned_name(function_name, version - 1)}`."))
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            body = body[1:]
        node.body = [docstring, *body]
    return node


def diagnostics_text(
    score: float,
    fitted_params: Mapping[str, object],  # {group: {name: value}} (engine.task.results)
    at_bounds: Sequence[str] = (),
    extra_scores: Mapping[str, float] | None = None,
) -> str:
    """Returns a one-line comment body describing a program's evaluation for the proposer."""
    parts = [f"held-out score {score:.4f}"]
    if extra_scores and "train_score" in extra_scores:
        parts.append(f"train score {extra_scores['train_score']:.4f}")
    shown = describe_fitted(fitted_params)
    if shown:
        parts.append(f"fitted {shown}")
    if at_bounds:
        parts.append(f"at a bound: {', '.join(at_bounds)}")
    return "; ".join(parts)


@functools.lru_cache(maxsize=4096)
def _rendered_shot(source: str, function_name: str, version: int) -> tuple[tuple[str, ...], tuple[str, ...], str, str]:
    """Returns (imports, other definitions, the function as version `version`, the header of version + 1).

    Cached: the database samples the best programs of each island over and over, and rendering one costs
    two parses and two unparses.
    """
    imports, others, function = _split_module(source, function_name)
    function_text = ast.unparse(_versioned_function(function, function_name, version))
    header = ast.FunctionDef(
        name=versioned_name(function_name, version + 1),
        args=function.args,
        body=[ast.Expr(ast.Constant(f"Improved version of `{versioned_name(function_name, version)}`."))],
        decorator_list=[],
        returns=function.returns,
        type_params=[],
    )
    return tuple(imports), tuple(others), function_text, ast.unparse(ast.fix_missing_locations(header))


def _unique_shots(shots: Sequence[Shot]) -> list[Shot]:
    """Returns the shots with each program once (by id and by source), keeping the later (better) copy."""
    kept: list[Shot] = []
    for shot in reversed(shots):
        if not any(shot.program_id == other.program_id or shot.source.strip() == other.source.strip() for other in kept):
            kept.append(shot)
    return kept[::-1]


@functools.lru_cache(maxsize=4096)
def _chat_shot(source: str, function_name: str, version: int) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """Returns (imports, other definitions, the function as version `version` without its docstring)."""
    imports, others, function = _split_module(source, function_name)
    node = _Rename(function_name, versioned_name(function_name, version)).visit(ast.parse(ast.unparse(function)).body[0])
    node.name = versioned_name(function_name, version)
    if node.body and isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant):
        node.body = node.body[1:] or [ast.Pass()]
    return tuple(imports), tuple(others), ast.unparse(node)


def _chat_user(function_name, shots, task_text, next_version, signature, idea, last_failure, checklist) -> str:
    imports: list[str] = []
    blocks: list[str] = []
    for version, shot in enumerate(shots):
        shot_imports, others, function_text = _chat_shot(shot.source, function_name, version)
        imports.extend(line for line in shot_imports if line not in imports)
        blocks.extend(block for block in others if block not in blocks)
        comment = f"# {versioned_name(function_name, version)}: {shot.diagnostics}\n" if shot.diagnostics else ""
        blocks.append(comment + function_text)
    wanted = versioned_name(function_name, next_version)
    best = versioned_name(function_name, next_version - 1)
    shown = "The program so far" if len(shots) == 1 else "The programs so far, from worse to better"
    parts = [task_text, f"{shown}:", "```python\n" + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(blocks) + "\n```"]
    if last_failure:
        parts.append(f"The last attempt to improve on {best} failed, so avoid its mistake:\n{last_failure}")
    if idea:
        parts.append(f"One idea to try: {idea}.")
    parts.append(
        f"Write `{wanted}`, a new model that should score higher than {best}: change the mechanism, not only "
        f"names or bounds. Reply with one ```python block holding the imports, any helper functions and the "
        f"complete `def {wanted}({signature}):`, following the rules. Do not repeat the programs above."
    )
    if checklist:
        parts.append(checklist)
    return "\n\n".join(parts)


def render_prompt(
    *,
    island_id: int,
    function_name: str,
    shots: Sequence[Shot],
    summary: str,
    description: str,
    primitives: Sequence[str] = (),
    seed: int = 0,
    task: PromptTask | None = None,
    vary: bool = False,
    last_failure: str = "",
) -> PromptContext:
    """Renders the shots (ascending score) into a versioned prompt ending at the next version's header, and
    into a chat prompt.

    Args:
        shots: the programs drawn for the prompt, ascending score; a program drawn twice is shown once.
        task: the contract and ideas stated in every prompt; None states none.
        vary: draw (with `seed`) how many of the best shots to show and one idea to try, so that prompts from
            an island that holds only a few programs still differ.
        last_failure: what went wrong with the last candidate made from the best shot ("" for nothing).
    """
    if not shots:
        raise ValueError("a prompt needs at least one program.")
    task = task or PromptTask()
    shots = _unique_shots(shots)
    rng = random.Random(seed)
    idea = ""
    if vary:
        shots = shots[-rng.randint(1, len(shots)):]
        idea = rng.choice(task.ideas) if task.ideas else ""
    imports: list[str] = []
    blocks: list[str] = []
    header_text = ""
    for version, shot in enumerate(shots):
        shot_imports, others, function_text, header_text = _rendered_shot(shot.source, function_name, version)
        imports.extend(line for line in shot_imports if line not in imports)
        blocks.extend(block for block in others if block not in blocks)
        comment = f"# {shot.diagnostics}\n" if shot.diagnostics else ""
        blocks.append(comment + function_text)
    next_version = len(shots)
    task_text = summary.strip() + ("\n\n" + description.strip() if description.strip() else "")
    docstring = task_text + ("\n\n" + task.contract if task.contract else "")
    text = '"""' + docstring.replace('"""', "'''") + '"""\n' + "\n".join(imports) + "\n\n\n"
    text += "\n\n\n".join(blocks) + "\n\n\n" + header_text + "\n"
    signature = ast.unparse(_split_module(shots[-1].source, function_name)[2].args)
    return PromptContext(
        island_id=island_id,
        function_name=function_name,
        shots=tuple(shots),
        text=text,
        next_version=next_version,
        primitives=tuple(primitives),
        seed=seed,
        chat_system=task.contract,
        chat_user=_chat_user(function_name, shots, task_text, next_version, signature, idea, last_failure,
                             task.checklist),
    )
