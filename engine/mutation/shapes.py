"""A cheap guess at the shape of each expression, so that mutants do not mix (2,) and (8,) arrays.

Shapes are `()` for a scalar, `(n,)` for a vector of length n, and None when unknown. Operators that
transplant or add expressions only combine shapes that broadcast: a scalar with anything, or equal shapes.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence

from engine.mutation.calls import ELEMENTWISE, INT_CALLS, REDUCTIONS, dotted_name, is_at_update
from engine.mutation.declarations import is_params_read
from islands.candidate_model import walk

Shape = tuple[int, ...] | None
SCALAR: Shape = ()
CONSTRUCTORS = frozenset({"jnp.zeros", "jnp.ones", "jnp.empty"})


def combine(*shapes: Shape) -> Shape:
    """Returns the broadcast shape of scalars and equal shapes; None when unknown or mismatched."""
    result: Shape = SCALAR
    for shape in shapes:
        if shape is None:
            return None
        if result == SCALAR:
            result = shape
        elif shape != SCALAR and shape != result:
            return None
    return result


def fits(shape: Shape, into: Shape) -> bool:
    """Returns whether a value of `shape` can be added to one of `into` without changing its shape."""
    return shape == SCALAR or (shape is not None and shape == into)


def _constant_int(node: ast.expr | None) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _constant_int(node.operand)
        return None if inner is None else -inner
    return None


def _subscript_shape(node: ast.Subscript, names: Mapping[str, Shape]) -> Shape:
    base = shape_of(node.value, names)
    index = node.slice
    if isinstance(index, ast.Slice):
        lower, upper = _constant_int(index.lower), _constant_int(index.upper)
        step = _constant_int(index.step) if index.step is not None else 1
        if step is None or (index.lower is not None and lower is None) or (index.upper is not None and upper is None):
            return None
        if base is not None and len(base) == 1:
            return (len(range(base[0])[slice(lower, upper, step)]),)
        if (lower or 0) >= 0 and upper is not None and upper >= 0 and step == 1:
            return (max(0, upper - (lower or 0)),)
        return None
    if isinstance(index, ast.Tuple):
        return None
    if base is not None and len(base) == 1:
        return SCALAR
    return None


def shape_of(node: ast.expr, names: Mapping[str, Shape]) -> Shape:
    """Returns the likely shape of an expression, given the shapes of the names it reads."""
    if isinstance(node, ast.Constant):
        return SCALAR if isinstance(node.value, (int, float)) else None
    if is_params_read(node):
        return SCALAR
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Subscript):
        return _subscript_shape(node, names)
    if isinstance(node, ast.BinOp):
        return combine(shape_of(node.left, names), shape_of(node.right, names))
    if isinstance(node, ast.UnaryOp):
        return shape_of(node.operand, names)
    if isinstance(node, ast.Compare):
        return combine(shape_of(node.left, names), *(shape_of(c, names) for c in node.comparators))
    if isinstance(node, ast.IfExp):
        return combine(shape_of(node.body, names), shape_of(node.orelse, names))
    if isinstance(node, ast.Call):
        return _call_shape(node, names)
    return None


def _call_shape(node: ast.Call, names: Mapping[str, Shape]) -> Shape:
    if is_at_update(node):
        return shape_of(node.func.value.value.value, names)  # type: ignore[attr-defined]  # the x in x.at[i]
    name = dotted_name(node.func)
    positional = [a for a in node.args if not isinstance(a, ast.Starred)]
    if len(positional) != len(node.args):
        return None
    if name in ELEMENTWISE or name == "jnp.where":
        return combine(*(shape_of(a, names) for a in positional)) if positional else None
    if name in REDUCTIONS and len(positional) == 1 and not node.keywords:
        return SCALAR
    if name == "jax.nn.one_hot" and len(positional) == 2:
        size = _constant_int(positional[1])
        return (size,) if size is not None and shape_of(positional[0], names) == SCALAR else None
    if isinstance(node.func, ast.Name) and name not in INT_CALLS:
        # A helper function: most are elementwise in their arguments (a guess, checked after mutation).
        return combine(*(shape_of(a, names) for a in positional)) if positional else None
    if name in CONSTRUCTORS and len(positional) == 1:
        size = _constant_int(positional[0])
        return (size,) if size is not None else None
    return None


def _assign(statement: ast.stmt, shapes: dict[str, Shape]) -> None:
    if isinstance(statement, ast.Assign):
        shape = shape_of(statement.value, shapes)
        for target in statement.targets:
            if isinstance(target, ast.Name):
                shapes[target.id] = shape
            else:
                for node in walk(target):
                    if isinstance(node, ast.Name):
                        shapes[node.id] = None
    elif isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
        name = statement.target.id
        shapes[name] = combine(shapes.get(name), shape_of(statement.value, shapes))
    elif isinstance(statement, (ast.For, ast.While, ast.If, ast.With)):
        if isinstance(statement, ast.For):
            for node in walk(statement.target):
                if isinstance(node, ast.Name):
                    shapes[node.id] = None
        for inner in statement.body + getattr(statement, "orelse", []):
            _assign(inner, shapes)


def infer_name_shapes(
    function: ast.FunctionDef,
    scalar_arguments: Sequence[str],
    array_sizes: Mapping[str, Shape],
    int_names: set[str],
) -> dict[str, Shape]:
    """Returns the likely shape of every argument and local name, following the body in order.

    A name assigned twice keeps the shape of its last assignment.
    """
    shapes: dict[str, Shape] = {name: SCALAR for name in scalar_arguments}
    shapes.update(array_sizes)
    shapes.update({name: SCALAR for name in int_names})
    for statement in function.body:
        _assign(statement, shapes)
    return shapes


def result_shapes(function: ast.FunctionDef, name_shapes: Mapping[str, Shape]) -> dict[str, Shape]:
    """Returns the shapes of the names plus those of the returned values, keyed "return[i]"."""
    shapes = dict(name_shapes)
    for node in walk(function):
        if isinstance(node, ast.Return) and node.value is not None:
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for i, value in enumerate(values):
                shapes[f"return[{i}]"] = combine(shapes.get(f"return[{i}]", SCALAR), shape_of(value, name_shapes))
    return shapes


def shape_changes(before: Mapping[str, Shape], after: Mapping[str, Shape]) -> list[str]:
    """Returns the names (and returned values) whose known shape differs between two versions."""
    return [
        f"{name}: {before[name]} -> {after[name]}"
        for name in before
        if before[name] is not None and after.get(name) is not None and after[name] != before[name]
    ]
