"""A faster `ast.walk` for the small trees the mutator looks at many times per proposal."""

from __future__ import annotations

import ast

# Leaf nodes no mutator heuristic looks at: Load/Store contexts and operator tokens.
_SKIPPED = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def walk(root: ast.AST) -> list[ast.AST]:
    """Returns `root` and every node under it in source order (depth first), without contexts and operators.

    The same nodes as `ast.walk` minus `ast.Load`, `ast.Add` and the like, about three times faster.
    """
    nodes: list[ast.AST] = []
    stack = [root]
    AST, skipped = ast.AST, _SKIPPED
    while stack:
        node = stack.pop()
        nodes.append(node)
        children: list[ast.AST] = []
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                children.extend(item for item in value if isinstance(item, AST) and not isinstance(item, skipped))
            elif isinstance(value, AST) and not isinstance(value, skipped):
                children.append(value)
        stack.extend(reversed(children))
    return nodes
