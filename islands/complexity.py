"""Complexity of a candidate: how many free parameters it declares and how large its syntax tree is."""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = ["PARAMS_NAME", "Complexity", "ast_size", "complexity", "complexity_of_tree", "count_params",
           "params_statement_index"]

PARAMS_NAME = "PARAMS"  # the declared dict's name inside the evolved function


@dataclass(frozen=True, slots=True)
class Complexity:
    """Attributes:
    num_params: keys of the literal `PARAMS = {...}` dict opening the evolved function (0 if there is none).
    ast_size: number of nodes in the module's syntax tree (0 if the source does not parse).
    """

    num_params: int
    ast_size: int


def complexity(source: str, function_name: str = "") -> Complexity:
    """Returns the complexity of a candidate module.

    Args:
        source: the module source.
        function_name: the evolved function; "" means the first top-level function that opens with `PARAMS = {...}`.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return Complexity(num_params=0, ast_size=0)
    return complexity_of_tree(tree, function_name)


def complexity_of_tree(tree: ast.Module, function_name: str = "") -> Complexity:
    """Like `complexity`, for a parsed module (left unchanged)."""
    return Complexity(num_params=count_params(tree, function_name), ast_size=ast_size(tree))


def ast_size(tree: ast.AST) -> int:
    """Returns the number of nodes in `tree`, itself included (the nodes `ast.walk` yields)."""
    count, stack = 0, [tree]
    while stack:
        node = stack.pop()
        count += 1
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(item for item in value if isinstance(item, ast.AST))
    return count


def count_params(tree: ast.Module, function_name: str = "") -> int:
    """Returns the number of keys of the PARAMS dict literal that is the first statement of the evolved function.

    A docstring before it is skipped. Returns 0 when the function, the statement or the literal dict is absent.
    """
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if function_name and node.name != function_name:
            continue
        found = _params_dict(node)
        if found is not None or function_name:
            return 0 if found is None else len(found.keys)
    return 0


def params_statement_index(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int | None:
    """Returns the body index of the statement that declares the evolved function's parameters, or None.

    That statement is the first one after an optional docstring, `PARAMS = ...` or `PARAMS: ... = ...`. This is the
    one place that finds it: the fitter (`engine.fit.read_params`), the mutator and the complexity count all ask here.
    """
    body = function.body
    start = 1 if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str) else 0
    if start >= len(body):
        return None
    statement = body[start]
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        target = statement.target
    else:
        return None
    return start if isinstance(target, ast.Name) and target.id == PARAMS_NAME else None


def _params_dict(function: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Dict | None:
    index = params_statement_index(function)
    value = None if index is None else function.body[index].value
    return value if isinstance(value, ast.Dict) else None
