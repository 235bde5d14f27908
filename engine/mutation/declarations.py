"""The evolved function inside a candidate module, and its PARAMS declaration.

A candidate's evolved function declares its free parameters in its first statement (after an optional
docstring) as a literal dict, `PARAMS = {"alpha": (0.0, 1.0), ...}`, and reads them as `params["alpha"]`.
This module finds that function, reads the declaration, and rewrites it so that it declares exactly the
parameters the body reads, in a stable order.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from engine.mutation.syntax import walk
from islands.complexity import PARAMS_NAME, params_statement_index
PARAMS_ARGUMENT = "params"  # the argument through which the body reads parameter values

Bounds = tuple[float, float]
DEFAULT_BOUNDS: Bounds = (-5.0, 5.0)


def find_function(module: ast.Module, function_name: str) -> ast.FunctionDef | None:
    """Returns the module-level `def function_name`, or None when the module has none."""
    for statement in module.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == function_name:
            return statement
    return None


def body_start(function: ast.FunctionDef) -> int:
    """Returns the index of the first body statement after the docstring (0 when there is none)."""
    first = function.body[0] if function.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return 1
    return 0


def _number(node: ast.expr) -> float | None:
    """Returns the value of a literal number such as `1.5`, `-2` or `+3e-1`, else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _number(node.operand)
        if inner is None:
            return None
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def read_declaration(function: ast.FunctionDef) -> dict[str, Bounds] | None:
    """Returns the declared parameters {name: (low, high)} in declaration order.

    Returns None when the first statement is not a literal `PARAMS` dict of string keys and
    `(low, high)` number pairs with finite low < high.
    """
    index = params_statement_index(function)
    if index is None:
        return None
    value = function.body[index].value
    if not isinstance(value, ast.Dict):
        return None
    declared: dict[str, Bounds] = {}
    for key, bounds in zip(value.keys, value.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            return None
        if not (isinstance(bounds, (ast.Tuple, ast.List)) and len(bounds.elts) == 2):
            return None
        low, high = _number(bounds.elts[0]), _number(bounds.elts[1])
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high) and low < high):
            return None
        declared[key.value] = (low, high)
    return declared


def is_params_read(node: ast.AST) -> bool:
    """Returns whether `node` is `params["name"]` with a literal string key."""
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == PARAMS_ARGUMENT
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    )


def params_read(node: ast.AST) -> list[str]:
    """Returns the names of the parameters read as `params["name"]` under `node`, in first-read order."""
    names: dict[str, None] = {}
    for child in walk(node):
        if is_params_read(child):
            names[child.slice.value] = None  # type: ignore[attr-defined]
    return list(names)


def params_read_in_body(function: ast.FunctionDef) -> list[str]:
    """Returns the parameters the function body reads, skipping the PARAMS statement itself."""
    skip = params_statement_index(function)
    names: dict[str, None] = {}
    for index, statement in enumerate(function.body):
        if index != skip:
            names.update(dict.fromkeys(params_read(statement)))
    return list(names)


def _bounds_node(bounds: Bounds) -> ast.Tuple:
    return ast.Tuple(elts=[ast.Constant(float(bounds[0])), ast.Constant(float(bounds[1]))], ctx=ast.Load())


def declaration_node(declared: Mapping[str, Bounds]) -> ast.Assign:
    """Returns the statement `PARAMS = {"name": (low, high), ...}` for `declared`."""
    value = ast.Dict(
        keys=[ast.Constant(name) for name in declared],
        values=[_bounds_node(bounds) for bounds in declared.values()],
    )
    return ast.Assign(targets=[ast.Name(PARAMS_NAME, ast.Store())], value=value, lineno=0)


def sync_declaration(function: ast.FunctionDef, known_bounds: Mapping[str, Bounds]) -> None:
    """Rewrites the PARAMS statement in place to declare exactly the parameters the body reads.

    Existing declarations keep their bounds and order; parameters that are no longer read are dropped;
    newly read ones are appended with their bounds from `known_bounds`, or `DEFAULT_BOUNDS`.
    A missing PARAMS statement is inserted after the docstring.
    """
    declared = read_declaration(function) or {}
    read = params_read_in_body(function)
    merged: dict[str, Bounds] = {name: bounds for name, bounds in declared.items() if name in read}
    for name in read:
        if name not in merged:
            merged[name] = known_bounds.get(name, DEFAULT_BOUNDS)
    index = params_statement_index(function)
    if index is None:
        function.body.insert(body_start(function), declaration_node(merged))
        return
    # Keep the original node (and its number formatting) when nothing changed.
    if list(merged.items()) != list(declared.items()):
        function.body[index] = declaration_node(merged)



_SECTIONS = ("Args:", "Arguments:", "Returns:", "Yields:", "Raises:")


def contract_docstring(docstring: str) -> str:
    """Returns a docstring without the paragraphs that follow its Args/Returns sections.

    Those paragraphs describe one model ("Seed model: Q-learning with a softmax choice rule."): a program derived
    from it is no longer that model, while the summary, the description and the sections still state its call and
    return contract. A docstring without sections, or with nothing after them, comes back unchanged. Works on
    the docstring as written in the source (indented), and keeps its indentation.
    """
    lines = docstring.split("\n")
    indent = min((len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()), default=0)
    kept, in_section = [lines[0]], False
    for line in lines[1:]:
        text = line[indent:]
        if text.strip() in _SECTIONS:
            in_section = True
        elif in_section and text.strip() and not text.startswith((" ", "\t")):
            break  # the first paragraph after the sections: it and what follows go
        kept.append(line)
    else:
        return docstring
    while len(kept) > 1 and not kept[-1].strip():
        kept.pop()
    closing = lines[-1] if len(lines) > 1 and not lines[-1].strip() else ""
    return "\n".join(kept) + "\n" + closing
