"""Dead assignments: statements of the evolved function whose value nothing ever reads.

Mutation leaves them behind: `duplicate_statement` copies `response = f(x)` and changes the copy, so the first
`response` is overwritten before any read; a deleted or crossed-over statement can orphan the names it read.
Such a line still costs nothing to run, but a scientist reads it as part of the model, its parameters stay
declared in PARAMS and get "fitted" along a flat direction, and the program's complexity (free parameters, AST
size) counts them. `remove_dead_assignments` deletes them, after which `sync_declaration` drops the parameters
only they read.

A top-level `name = value` (or `a, b = value`) is dead when none of its names is read before it is assigned
again or the function returns. The analysis is conservative: only plain assignments to names are removed;
compound statements (if, for, with) count as reading every name they mention and killing none; a name read in
a nested function or lambda, which may run later, is never removed; a function with `global` or `nonlocal`
is left alone; and the PARAMS statement and the docstring always stay.
"""

from __future__ import annotations

import ast

from engine.mutation.declarations import params_statement_index
from engine.mutation.sites import statement_names
from islands.candidate_model import walk

__all__ = ["remove_dead_assignments"]


def _target_names(statement: ast.Assign) -> set[str] | None:
    """Returns the names an assignment binds, or None when a target is not a plain name (x[0] = ..., a.b = ...)."""
    names: set[str] = set()
    for target in statement.targets:
        elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        for element in elements:
            if not isinstance(element, ast.Name):
                return None
            names.add(element.id)
    return names


def _read_later(function: ast.FunctionDef) -> set[str]:
    """Returns the names read inside nested functions and lambdas: they may run after any later assignment."""
    names: set[str] = set()
    for node in walk(function):
        if node is not function and isinstance(node, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.update(n.id for n in walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))
    return names


def remove_dead_assignments(function: ast.FunctionDef) -> list[str]:
    """Deletes the function's dead top-level assignments in place; returns them as source, in body order."""
    if any(isinstance(node, (ast.Global, ast.Nonlocal)) for node in walk(function)):
        return []
    keep_always = _read_later(function)
    params_index = params_statement_index(function)
    live: set[str] = set()
    removed: list[int] = []
    for index in range(len(function.body) - 1, -1, -1):
        statement = function.body[index]
        _, loaded = statement_names(statement)
        if isinstance(statement, ast.Assign) and index != params_index:
            targets = _target_names(statement)
            if targets is not None and not (targets & live) and not (targets & keep_always):
                removed.append(index)
                continue
            if targets is not None:
                live -= targets
        live |= loaded
    sources = []
    for index in sorted(removed):
        sources.append(ast.unparse(function.body[index]))
    for index in removed:  # descending: earlier indices stay valid
        del function.body[index]
    return sources
