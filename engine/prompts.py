"""Renders prompts in FunSearch's versioned best-shot form.

The sampled programs, sorted by ascending score, are shown as `agent_v0`, `agent_v1`, ... and the prompt ends
at the header of the next version, whose body the proposer writes. This module is the only place that chooses
the version number; the parser reads it back from `PromptContext.next_version`.
"""

from __future__ import annotations

import ast
import functools
from typing import Mapping, Sequence

from engine.proposers.base import PromptContext, Shot

__all__ = ["render_prompt", "versioned_name", "diagnostics_text"]


def versioned_name(function_name: str, version: int) -> str:
    return f"{function_name}_v{version}"


def _split_module(source: str, function_name: str) -> tuple[list[str], list[str], ast.FunctionDef]:
    """Returns (import lines, other top-level definitions, the evolved function) of a module."""
    tree = ast.parse(source)
    imports, others, function = [], [], None
    for node in tree.body:
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
    fitted_params: Mapping[str, object],
    at_bounds: Sequence[str] = (),
    extra_scores: Mapping[str, float] | None = None,
) -> str:
    """Returns a one-line comment body describing a program's evaluation for the proposer."""
    parts = [f"held-out score {score:.4f}"]
    if extra_scores and "train_score" in extra_scores:
        parts.append(f"train score {extra_scores['train_score']:.4f}")
    if fitted_params:
        shown = ", ".join(
            f"{name}={value:.3g}" if isinstance(value, (int, float)) else f"{name}=..." for name, value in fitted_params.items()
        )
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


def render_prompt(
    *,
    island_id: int,
    function_name: str,
    shots: Sequence[Shot],
    summary: str,
    description: str,
    primitives: Sequence[str] = (),
    seed: int = 0,
) -> PromptContext:
    """Renders the shots (ascending score) into a versioned prompt ending at the next version's header."""
    if not shots:
        raise ValueError("a prompt needs at least one program.")
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
    text = '"""' + task_text.replace('"""', "'''") + '"""\n' + "\n".join(imports) + "\n\n\n"
    text += "\n\n\n".join(blocks) + "\n\n\n" + header_text + "\n"
    return PromptContext(
        island_id=island_id,
        function_name=function_name,
        shots=tuple(shots),
        text=text,
        next_version=next_version,
        primitives=tuple(primitives),
        seed=seed,
    )
