"""Rewrites that make a program smaller while keeping its interface: the steps `discover simplify` tries.

Each rewrite works on the source's syntax tree and returns a new module source (or nothing, when it does not
apply or would leave a program that cannot run). None of them runs the candidate: whether a step keeps the
evidence is decided by refitting the rewritten program through the sandbox (`engine/verification/simplify.py`).

- `fix_parameter`: a parameter becomes a number (its neutral value), and the terms it zeroes disappear. A
  parameter whose profile is flat (fixing it and refitting the rest costs nothing) is not identified: it
  multiplied a term that cancels (the same amount added to both logits before a softmax) or did nothing.
- `collapse_parameter_expressions`: a sub-expression made only of parameters and numbers, whose parameters are
  read nowhere else (`beta * beta`, `a * b`, `2.0 * a`), becomes one parameter whose bounds are the
  expression's range. The model family is unchanged; a squared or duplicated parameter is gone.
- `statement_deletions` and `term_deletions`: a statement, or one operand of a sum, is removed.

After each rewrite the module is tidied: sums with a zero term and products with a factor one are folded,
assignments nothing reads are deleted, and PARAMS declares exactly the parameters still read.
"""

from __future__ import annotations

import ast
import copy
import math
from dataclasses import dataclass

import numpy as np

from engine.mutation import find_function, read_declaration, remove_dead_assignments, sync_declaration
from engine.mutation.declarations import declaration_node, is_params_read, params_statement_index
from engine.mutation.validate import candidate_problems
from islands.candidate_model import CandidateModel

__all__ = ["Rewrite", "fix_parameter", "neutral_value", "collapse_parameter_expressions", "statement_deletions",
           "term_deletions", "replace_docstring", "declared_parameters", "widen_bounds"]


@dataclass(frozen=True, slots=True)
class Rewrite:
    """One tried simplification: what it does (a sentence), a stable key, and the module source it gives."""

    kind: str  # "collapse", "fix_parameter", "delete_statement", "delete_term"
    key: str
    description: str
    source: str
    fallback: str | None = None  # the same step without folding, tried when `source` fails to evaluate
    fixed: tuple[str, float, float, float] | None = None  # "fix_parameter": (name, value, its low, its high)


def declared_parameters(source: str, function_name: str) -> dict[str, tuple[float, float]]:
    """Returns {name: (low, high)} of the function's PARAMS, {} when it cannot be read."""
    return CandidateModel.parse(source, function_name).bounds or {}


def neutral_value(low: float, high: float) -> float:
    """Returns the value that switches a parameter's effect off: 0 when the bounds allow it, else the bound
    nearest 0 (a gain declared on (0.5, 3) is knocked out to 0.5)."""
    if low <= 0.0 <= high:
        return 0.0
    return low if abs(low) < abs(high) else high


def _is_number(node: ast.AST, value: float | None = None) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _is_number(node.operand, None if value is None else -value)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return value is None or float(node.value) == value
    return False


def _is_zero(node: ast.AST) -> bool:
    """Whether `node` is 0, or a product with a literal 0 factor."""
    if _is_number(node, 0.0):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _is_zero(node.left) or _is_zero(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _is_zero(node.left)
    return False


class _Fold(ast.NodeTransformer):
    """Folds `x + 0`, `x - 0 * y`, `x * 1`, `x / 1`, `x ** 1` and arithmetic on two numbers."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        left, right = node.left, node.right
        if _is_number(left) and _is_number(right) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
            value = float(_evaluate(node, {}))
            return ast.copy_location(ast.Constant(float(value)), node) if value >= 0 else \
                ast.copy_location(ast.UnaryOp(ast.USub(), ast.Constant(float(-value))), node)
        if isinstance(node.op, ast.Add):
            if _is_zero(right):
                return left
            if _is_zero(left):
                return right
        if isinstance(node.op, ast.Sub):
            if _is_zero(right):
                return left
            if _is_zero(left):
                return ast.copy_location(ast.UnaryOp(ast.USub(), right), node)
        if isinstance(node.op, ast.Mult):
            if _is_number(right, 1.0):
                return left
            if _is_number(left, 1.0):
                return right
        if isinstance(node.op, (ast.Div, ast.Pow)) and _is_number(right, 1.0):
            return left
        return node


    def visit_Call(self, node: ast.Call) -> ast.AST:
        """Folds `x.at[i].add(0)`, `x.at[i].multiply(1)` and `x.at[i].subtract(0)` to `x`."""
        self.generic_visit(node)
        func = node.func
        if (isinstance(func, ast.Attribute) and len(node.args) == 1 and not node.keywords
                and isinstance(func.value, ast.Subscript) and isinstance(func.value.value, ast.Attribute)
                and func.value.value.attr == "at"):
            if (func.attr in ("add", "subtract") and _is_zero(node.args[0])) or \
                    (func.attr in ("multiply", "divide") and _is_number(node.args[0], 1.0)):
                return func.value.value.value
        return node


def _is_self_assignment(statement: ast.stmt) -> bool:
    """Whether a statement is `x = x`, which folding can leave behind."""
    return (isinstance(statement, ast.Assign) and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name) and isinstance(statement.value, ast.Name)
            and statement.targets[0].id == statement.value.id)


def _inline_parameter_names(function: ast.FunctionDef) -> None:
    """Replaces a name bound once to an expression of parameters and numbers (`pe = params["alpha"]`) by that
    expression wherever it is read, so that parameter-only sub-expressions become visible; in place."""
    skip = params_statement_index(function)
    for _ in range(len(function.body)):
        bound: dict[str, int] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound[node.id] = bound.get(node.id, 0) + 1
        target = next((index for index, statement in enumerate(function.body)
                       if index != skip and isinstance(statement, ast.Assign) and len(statement.targets) == 1
                       and isinstance(statement.targets[0], ast.Name) and bound[statement.targets[0].id] == 1
                       and _parameter_only(statement.value)), None)
        if target is None:
            return
        statement = function.body.pop(target)
        name, value = statement.targets[0].id, statement.value

        class Inline(ast.NodeTransformer):
            def visit_Name(self, node: ast.Name) -> ast.AST:
                return copy.deepcopy(value) if node.id == name and isinstance(node.ctx, ast.Load) else node

        for index in range(target, len(function.body)):
            function.body[index] = Inline().visit(function.body[index])


def _parse(source: str, function_name: str) -> tuple[ast.Module, ast.FunctionDef] | None:
    try:
        module = ast.parse(source)
    except SyntaxError:
        return None
    function = find_function(module, function_name)
    if function is None or params_statement_index(function) is None:
        return None
    return module, function


def _finish(module: ast.Module, function: ast.FunctionDef, bounds: dict[str, tuple[float, float]],
            function_name: str, *, fold: bool = True) -> str | None:
    """Tidies a rewritten module; returns its source, or None when it would not be a valid candidate.

    Folding cannot see shapes: `beta * q + 0.0 * reward` folds to `beta * q`, but `0.0 * q + w * reward` folds
    to a scalar where a vector was. A caller whose folded rewrite fails to evaluate can try `fold=False`.
    """
    if fold:
        _inline_parameter_names(function)
    skip = params_statement_index(function)
    for index, statement in enumerate(function.body):
        if index != skip and fold:
            function.body[index] = _Fold().visit(statement)
    function.body[:] = [statement for statement in function.body if not _is_self_assignment(statement)]
    remove_dead_assignments(function)
    sync_declaration(function, bounds)
    if not read_declaration(function):
        return None  # a candidate declares at least one parameter
    ast.fix_missing_locations(module)
    source = ast.unparse(module) + "\n"
    return None if candidate_problems(source, function_name) else source


def fix_parameter(source: str, function_name: str, name: str, value: float, *, fold: bool = True) -> str | None:
    """Returns the source with `params[name]` replaced by `value` and tidied; None when nothing would be left.

    With fold=False the zeroed terms stay in place (`0.0 * q`), which keeps every shape as it was.
    """
    parsed = _parse(source, function_name)
    if parsed is None:
        return None
    module, function = parsed
    bounds = read_declaration(function) or {}
    if name not in bounds:
        return None
    skip = params_statement_index(function)

    class Replace(ast.NodeTransformer):
        def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
            if is_params_read(node) and node.slice.value == name:
                constant = ast.Constant(abs(float(value)))
                return ast.UnaryOp(ast.USub(), constant) if value < 0 else constant
            return self.generic_visit(node)

    for index, statement in enumerate(function.body):
        if index != skip:
            function.body[index] = Replace().visit(statement)
    return _finish(module, function, {k: v for k, v in bounds.items() if k != name}, function_name, fold=fold)


def widen_bounds(source: str, function_name: str, bounds: dict[str, tuple[float, float]]) -> str | None:
    """Returns the source with the declared bounds of the parameters in `bounds` replaced; None when it cannot."""
    parsed = _parse(source, function_name)
    if parsed is None:
        return None
    module, function = parsed
    declared = read_declaration(function) or {}
    if not set(bounds) <= set(declared):
        return None
    function.body[params_statement_index(function)] = declaration_node(
        {name: bounds.get(name, declared_bounds) for name, declared_bounds in declared.items()})
    ast.fix_missing_locations(module)
    widened = ast.unparse(module) + "\n"
    return None if candidate_problems(widened, function_name) else widened


# ------------------------------------------------------------------------------- parameter-only expressions

_UNARY_FUNCTIONS = {"square": np.square, "exp": np.exp, "abs": np.abs, "tanh": np.tanh, "log1p": np.log1p,
                    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "sqrt": np.sqrt, "log": np.log}
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}


def _function_leaf(call: ast.Call) -> str | None:
    """Returns "square" for jnp.square(x), jax.nn.sigmoid(x), math.exp(x)...; None for other calls."""
    if len(call.args) != 1 or call.keywords:
        return None
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return name if name in _UNARY_FUNCTIONS else None


def _parameter_only(node: ast.AST) -> bool:
    """Whether `node` is built only from params["x"] reads, numbers, arithmetic and one-argument functions."""
    if is_params_read(node) or _is_number(node):
        return True
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _parameter_only(node.left) and _parameter_only(node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _parameter_only(node.operand)
    if isinstance(node, ast.Call) and _function_leaf(node):
        return _parameter_only(node.args[0])
    return False


def _evaluate(node: ast.AST, values: dict[str, np.ndarray]) -> np.ndarray:
    """Evaluates a parameter-only expression on arrays of parameter values (no candidate code is run)."""
    if is_params_read(node):
        return values[node.slice.value]
    if isinstance(node, ast.Constant):
        return np.asarray(float(node.value))
    if isinstance(node, ast.UnaryOp):
        inner = _evaluate(node.operand, values)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    return _UNARY_FUNCTIONS[_function_leaf(node)](_evaluate(node.args[0], values))


def _expression_range(node: ast.AST, names: list[str], bounds: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Returns the range of an expression over the parameters' box (a grid; the image of a box is an interval)."""
    points = 41 if len(names) <= 2 else 9
    grids = [np.linspace(*bounds[name], points) for name in names]
    mesh = np.meshgrid(*grids, indexing="ij")
    with np.errstate(all="ignore"):
        values = np.broadcast_to(_evaluate(node, dict(zip(names, mesh))), mesh[0].shape)
    finite = values[np.isfinite(values)]
    if finite.size < values.size:
        return (math.nan, math.nan)
    return float(finite.min()), float(finite.max())


def _round_bound(value: float) -> float:
    return float(f"{value:.6g}")


def collapse_parameter_expressions(source: str, function_name: str) -> list[Rewrite]:
    """Returns one rewrite per maximal parameter-only sub-expression whose parameters are read nowhere else."""
    parsed = _parse(source, function_name)
    if parsed is None:
        return []
    module, function = parsed
    _inline_parameter_names(function)
    source = ast.unparse(module) + "\n"
    bounds = read_declaration(function) or {}
    skip = params_statement_index(function)
    body = [statement for index, statement in enumerate(function.body) if index != skip]
    reads: dict[str, int] = {}
    for statement in body:
        for node in ast.walk(statement):
            if is_params_read(node):
                reads[node.slice.value] = reads.get(node.slice.value, 0) + 1
    found: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if not is_params_read(node) and not _is_number(node) and _parameter_only(node):
            if any(is_params_read(child) for child in ast.walk(node)):
                found.append(node)
                return
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in body:
        visit(statement)
    rewrites = []
    for target in found:
        inside: dict[str, int] = {}
        for node in ast.walk(target):
            if is_params_read(node):
                inside[node.slice.value] = inside.get(node.slice.value, 0) + 1
        if any(reads[name] != count for name, count in inside.items()):
            continue  # a parameter also read elsewhere: replacing this expression would change the model
        names = list(inside)
        low, high = _expression_range(target, names, bounds)
        if not (math.isfinite(low) and math.isfinite(high)):
            continue
        text = ast.unparse(target)
        new_name = names[0]
        copy = ast.parse(source)
        copy_function = find_function(copy, function_name)
        replacement_bounds = {k: v for k, v in bounds.items() if k not in names}
        if high - low <= 1e-12 * max(1.0, abs(low)):
            replacement: ast.expr = ast.Constant(_round_bound(low))
            description = f"replace {text} by the constant {_round_bound(low):g} (it does not vary)"
        else:
            replacement = ast.Subscript(ast.Name("params", ast.Load()), ast.Constant(new_name), ast.Load())
            replacement_bounds[new_name] = (_round_bound(low), _round_bound(high))
            description = (f"replace {text} by one parameter {new_name} on ({_round_bound(low):g}, "
                           f"{_round_bound(high):g})")

        class Replace(ast.NodeTransformer):
            def generic_visit(self, node: ast.AST) -> ast.AST:
                if ast.unparse(node) == text and isinstance(node, ast.expr) and type(node) is type(target):
                    return replacement
                return super().generic_visit(node)

        copy_skip = params_statement_index(copy_function)
        for index, statement in enumerate(copy_function.body):
            if index != copy_skip:
                copy_function.body[index] = Replace().visit(statement)
        # The new parameter keeps the name of the first one; give it the collapsed bounds, not its old ones.
        declaration = copy_function.body[copy_skip].value
        for key, value in zip(declaration.keys, declaration.values):
            if key.value == new_name and new_name in replacement_bounds:
                value.elts = [ast.Constant(replacement_bounds[new_name][0]),
                              ast.Constant(replacement_bounds[new_name][1])]
        result = _finish(copy, copy_function, replacement_bounds, function_name)
        if result is not None:
            rewrites.append(Rewrite("collapse", f"collapse {text}", description, result))
    return rewrites


# ------------------------------------------------------------------------------------------ deletions

def statement_deletions(source: str, function_name: str) -> list[Rewrite]:
    """Returns one rewrite per body statement (not PARAMS, not the return) whose deletion leaves a valid program."""
    parsed = _parse(source, function_name)
    if parsed is None:
        return []
    _, function = parsed
    skip = params_statement_index(function)
    rewrites = []
    for index, statement in enumerate(function.body):
        if index <= skip or isinstance(statement, ast.Return):
            continue
        module, copy = _parse(source, function_name)
        text = ast.unparse(copy.body[index])
        del copy.body[index]
        result = _finish(module, copy, read_declaration(copy) or {}, function_name)
        if result is not None and result != source:
            rewrites.append(Rewrite("delete_statement", f"delete {text}", f"delete the statement `{text}`", result))
    return rewrites


def term_deletions(source: str, function_name: str) -> list[Rewrite]:
    """Returns one rewrite per operand of a sum or difference (`a + b` -> `a`, -> `b`; `a - b` -> `a`)."""
    parsed = _parse(source, function_name)
    if parsed is None:
        return []
    _, function = parsed
    skip = params_statement_index(function)
    sites = []
    for index, statement in enumerate(function.body):
        if index == skip:
            continue
        for position, node in enumerate(ast.walk(statement)):
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
                sites.append((index, position, node))
    rewrites = []
    for index, position, node in sites:
        sides = [("left", node.right)] + ([("right", node.left)] if isinstance(node.op, ast.Add) else [])
        for keep, dropped in sides:
            module, copy = _parse(source, function_name)
            target = list(ast.walk(copy.body[index]))[position]
            kept = target.left if keep == "left" else target.right

            class Replace(ast.NodeTransformer):
                def generic_visit(self, visited: ast.AST) -> ast.AST:
                    return kept if visited is target else super().generic_visit(visited)

            copy.body[index] = Replace().visit(copy.body[index])
            result = _finish(module, copy, read_declaration(copy) or {}, function_name)
            text = ast.unparse(dropped)
            if result is not None and result != source:
                rewrites.append(Rewrite("delete_term", f"delete term {text} in {ast.unparse(node)}",
                                        f"delete the term `{text}` from `{ast.unparse(node)}`", result))
    return rewrites


def replace_docstring(source: str, function_name: str, docstring: str) -> str:
    """Returns the source with the function's docstring replaced (or added), e.g. to drop a stale description."""
    module = ast.parse(source)
    function = find_function(module, function_name)
    if function is None:
        return source
    node = ast.Expr(ast.Constant(docstring))
    first = function.body[0] if function.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        function.body[0] = node
    else:
        function.body.insert(0, node)
    ast.fix_missing_locations(module)
    return ast.unparse(module) + "\n"

