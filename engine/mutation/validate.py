"""The invariants every mutant keeps, checked on its source text."""

from __future__ import annotations

import ast

from engine.mutation.declarations import (
    PARAMS_NAME,
    find_function,
    params_read_in_body,
    params_statement_index,
    read_declaration,
)
from engine.mutation.sites import module_names, undefined_reads


def signature(function: ast.FunctionDef) -> str:
    """Returns a comparable rendering of a function's arguments, e.g. "params, state, choice, reward"."""
    return ast.unparse(function.args)


def candidate_problems(source: str, function_name: str, expected_signature: str | None = None) -> list[str]:
    """Returns what is wrong with a candidate module (empty when nothing is).

    Checks that the source parses; defines `function_name` (with `expected_signature`, when given);
    whose first statement after the docstring is a literal `PARAMS` dict with finite low < high bounds;
    that declares exactly the parameters the body reads as `params["name"]`; and that reads no name it
    does not define.
    """
    try:
        module = ast.parse(source)
    except SyntaxError as error:
        return [f"does not parse: {error.msg} (line {error.lineno})"]
    function = find_function(module, function_name)
    if function is None:
        return [f"defines no module-level function {function_name!r}"]
    problems: list[str] = []
    if expected_signature is not None and signature(function) != expected_signature:
        problems.append(f"signature is ({signature(function)}); expected ({expected_signature})")
    if params_statement_index(function) is None:
        problems.append(f"first statement of {function_name} is not `{PARAMS_NAME} = {{...}}`")
        return problems
    declared = read_declaration(function)
    if declared is None:
        problems.append(f"{PARAMS_NAME} is not a literal dict of finite (low, high) bounds with low < high")
        return problems
    read = params_read_in_body(function)
    undeclared = [name for name in read if name not in declared]
    unread = [name for name in declared if name not in read]
    if undeclared:
        problems.append(f"reads undeclared parameters {undeclared}")
    if unread:
        problems.append(f"declares parameters it never reads {unread}")
    missing = undefined_reads(function, module_names(module))
    if missing:
        problems.append(f"reads names it never defines {sorted(set(missing))}")
    return problems
