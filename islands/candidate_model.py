"""A candidate's source, read once: its evolved function, its `PARAMS` declaration, its signature, its canonical
hash and its complexity.

A candidate module defines the evolved function (e.g. `agent`), whose first statement after an optional docstring
declares its free parameters as a literal dict, and whose body reads them through its `params` argument:

    def agent(params, state, choice, reward):
        \"\"\"...\"\"\"
        PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
        ...params["alpha"]...

This module is the one place that knows that convention. The fitter (`engine.fit.read_params`), the mutator, the
answer parser, the prompts, simplification and the program database all ask it. It imports nothing of the project
but `islands.canonical`, so the scoring worker, the engine and the database can all use it.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from islands.canonical import canonical_hash, canonical_hash_of_tree, raw_hash

__all__ = [
    "PARAMS_ARGUMENT", "PARAMS_NAME", "Bounds", "CandidateModel", "Complexity", "ast_size", "body_start",
    "bounds_problem", "check_bounds", "complexity", "declaration_problem", "find_function", "is_params_read", "params_read",
    "params_read_in_body", "params_statement_index", "read_declaration", "signature", "walk",
]

PARAMS_NAME = "PARAMS"  # the declared dict's name inside the evolved function
PARAMS_ARGUMENT = "params"  # the argument through which the body reads parameter values
EXAMPLE = 'PARAMS = {"alpha": (0.0, 1.0)}'

Bounds = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Complexity:
    """Attributes:
    num_params: keys of the literal `PARAMS = {...}` dict opening the evolved function (0 if there is none).
    ast_size: number of nodes in the module's syntax tree (0 if the source does not parse).
    """

    num_params: int
    ast_size: int


@dataclass(frozen=True, eq=False)  # no slots: the derived facts below are computed once, on first use
class CandidateModel:
    """One candidate module, parsed once. Build it with `CandidateModel.parse`; it never raises.

    Attributes:
        source: the module's source.
        function_name: the evolved function's name.
        module: the parsed module, or None when the source does not parse. Read it; do not modify it (an
            operator that rewrites a program parses its own copy).
        function: the module-level `def function_name`, or None.
        bounds: the declared parameters {name: (low, high)} in declaration order, or None when the declaration
            is missing or not a literal dict of finite (low, high) number pairs with low < high.
        problem: "" when the module parses, defines the function and declares valid `PARAMS`; else one sentence
            saying what is wrong, e.g. "agent's PARAMS is not a literal; ...".
    """

    source: str
    function_name: str
    module: ast.Module | None
    function: ast.FunctionDef | None
    bounds: dict[str, Bounds] | None
    problem: str

    @classmethod
    def parse(cls, source: str, function_name: str) -> CandidateModel:
        """Parses `source` and reads its evolved function `function_name` and that function's `PARAMS`.

        An empty `function_name` means the first module-level function that opens with `PARAMS = ...`.
        """
        try:
            module = ast.parse(source)
        except SyntaxError as error:
            return cls(source, function_name, None, None, None,
                       f"candidate source does not parse: {error.msg} (line {error.lineno}).")
        except ValueError as error:  # e.g. null bytes
            return cls(source, function_name, None, None, None, f"candidate source does not parse: {error}.")
        except (RecursionError, MemoryError):  # Python's parser gives up on very deep nesting this way
            return cls(source, function_name, None, None, None,
                       "candidate source does not parse: it is nested too deeply.")
        if not function_name:  # the first module-level function that opens with a declaration
            function_name = next((node.name for node in module.body if isinstance(node, ast.FunctionDef)
                                  and params_statement_index(node) is not None), "")
        function = find_function(module, function_name)
        if function is None:
            found = ", ".join(node.name for node in module.body if isinstance(node, ast.FunctionDef)) or "no functions"
            return cls(source, function_name, module, None, None,
                       f"source has no top-level function {function_name!r}; found {found}.")
        bounds, problem = _read_declaration(function)
        return cls(source, function_name, module, function, bounds, problem)

    @property
    def valid(self) -> bool:
        """Whether the module parses, defines the function and declares valid `PARAMS`."""
        return not self.problem

    @cached_property
    def signature(self) -> str:
        """The function's arguments as written, e.g. "params, state, choice, reward" ("" without a function)."""
        return "" if self.function is None else signature(self.function)

    @cached_property
    def params_read(self) -> tuple[str, ...]:
        """The parameters the body reads as `params["name"]`, in first-read order (the declaration skipped)."""
        return () if self.function is None else tuple(params_read_in_body(self.function))

    @cached_property
    def undeclared_reads(self) -> tuple[str, ...]:
        """Parameters the body reads but `PARAMS` does not declare (empty when the declaration is invalid, or when
        the function reads its parameters through an argument with another name)."""
        if self.bounds is None or self.function is None:
            return ()
        arguments = [argument.arg for argument in self.function.args.args + self.function.args.kwonlyargs]
        if arguments and PARAMS_ARGUMENT not in arguments:
            return ()
        return tuple(name for name in self.params_read if name not in self.bounds)

    @cached_property
    def complexity(self) -> Complexity:
        """Declared parameters and syntax-tree size (zeros when the source does not parse)."""
        if self.module is None:
            return Complexity(num_params=0, ast_size=0)
        declaration = None if self.function is None else _declaration_value(self.function)
        num_params = len(declaration.keys) if isinstance(declaration, ast.Dict) else 0
        return Complexity(num_params=num_params, ast_size=ast_size(self.module))

    @cached_property
    def canonical_hash(self) -> str:
        """Equal for sources that differ only in formatting, comments, docstrings or local names
        (`islands.canonical`)."""
        if self.module is None:
            return canonical_hash(self.source)
        try:
            return canonical_hash_of_tree(self.module)
        except RecursionError:  # a tree that parsed but is too deep to walk
            return raw_hash(self.source)


def complexity(source: str, function_name: str = "") -> Complexity:
    """Returns the complexity of a candidate module.

    Args:
        source: the module source.
        function_name: the evolved function; "" means the first top-level function that opens with `PARAMS = ...`.
    """
    return CandidateModel.parse(source, function_name).complexity


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


def params_statement_index(function: ast.FunctionDef) -> int | None:
    """Returns the body index of the statement that declares the function's parameters, or None.

    That statement is the first one after an optional docstring, `PARAMS = ...` or `PARAMS: ... = ...`.
    """
    start = body_start(function)
    if start >= len(function.body):
        return None
    statement = function.body[start]
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        target = statement.target
    else:
        return None
    return start if isinstance(target, ast.Name) and target.id == PARAMS_NAME else None


def _declaration_value(function: ast.FunctionDef) -> ast.expr | None:
    index = params_statement_index(function)
    return None if index is None else function.body[index].value


def declaration_problem(function: ast.FunctionDef) -> str:
    """Returns "" when the function opens with a valid `PARAMS` declaration, else one sentence saying what is
    wrong with it."""
    return _read_declaration(function)[1]


def read_declaration(function: ast.FunctionDef) -> dict[str, Bounds] | None:
    """Returns the declared parameters {name: (low, high)} in declaration order, as floats.

    Returns None when the first statement is not a literal `PARAMS` dict of string keys and (low, high) number
    pairs with finite low < high (`declaration_problem` says why).
    """
    return _read_declaration(function)[0]


def _read_declaration(function: ast.FunctionDef) -> tuple[dict[str, Bounds] | None, str]:
    """The one reading of the declaration: (bounds, "") or (None, what is wrong)."""
    name = function.name
    value = _declaration_value(function)
    if value is None:
        return None, f"{name} declares no {PARAMS_NAME} dict as its first statement; start it with e.g. {EXAMPLE}."
    try:
        declared = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None, f"{name}'s {PARAMS_NAME} is not a literal; write numbers directly, e.g. {EXAMPLE}."
    if not isinstance(declared, dict) or not declared:
        return None, (f"{name}'s {PARAMS_NAME} is {type(declared).__name__} {declared!r}; "
                      'expected a non-empty dict like {"alpha": (0.0, 1.0)}.')
    problem = check_bounds(declared)
    if problem:
        return None, problem
    return {key: (float(pair[0]), float(pair[1])) for key, pair in declared.items()}, ""


def bounds_problem(name: object, pair: object) -> str:
    """Returns "" when `name: pair` is a valid declaration entry, else one sentence saying what is wrong."""
    if not isinstance(name, str):
        return f"{PARAMS_NAME} key {name!r} is not a string; name each parameter with a string, e.g. 'alpha'."
    if not name.isidentifier():
        return f"{PARAMS_NAME} key {name!r} is not a valid identifier; use a name like 'learning_rate'."
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        return f"{PARAMS_NAME}[{name!r}] = {pair!r}: expected a (low, high) pair of numbers."
    low, high = pair
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            return f"{PARAMS_NAME}[{name!r}] = {tuple(pair)!r}: bounds must be numbers, found {bound!r}."
        if not math.isfinite(bound):
            return f"{PARAMS_NAME}[{name!r}] = {tuple(pair)!r}: bounds must be finite numbers."
    if not low < high:
        return f"{PARAMS_NAME}[{name!r}] = {tuple(pair)!r}: low must be < high."
    return ""


def check_bounds(bounds: Mapping[str, object]) -> str:
    """Returns "" when every entry of a `{"name": (low, high)}` mapping is valid, else the first problem."""
    return next((problem for name, pair in bounds.items() if (problem := bounds_problem(name, pair))), "")


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


def signature(function: ast.FunctionDef) -> str:
    """Returns a comparable rendering of a function's arguments, e.g. "params, state, choice, reward"."""
    return ast.unparse(function.args)


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


# Leaf nodes no reader of candidates looks at: Load/Store contexts and operator tokens.
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
