"""Rewriting the PARAMS declaration of a candidate's evolved function, so that it declares exactly the parameters
the body reads, in a stable order.

Reading the declaration (and finding the function) is `islands.candidate_model`'s; its names are re-exported here
for the mutation package.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from islands.candidate_model import (
    PARAMS_ARGUMENT,
    PARAMS_NAME,
    Bounds,
    body_start,
    find_function,
    is_params_read,
    params_read,
    params_read_in_body,
    params_statement_index,
    read_declaration,
)

__all__ = [
    "DEFAULT_BOUNDS", "PARAMS_ARGUMENT", "PARAMS_NAME", "Bounds", "body_start", "contract_docstring",
    "declaration_node", "find_function", "is_params_read", "params_read", "params_read_in_body",
    "params_statement_index", "read_declaration", "sync_declaration",
]

DEFAULT_BOUNDS: Bounds = (-5.0, 5.0)


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
