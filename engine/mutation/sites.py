"""Where the evolved function can be mutated without breaking its JAX code.

The mutator has no type checker, so it labels each expression of the function body with the kind of value
its position most likely holds, using a few heuristics that keep mutants runnable:

- "float": arithmetic operands, assigned and returned values, arguments of elementwise functions and of
  `x.at[i].add(...)`-style updates. Only these are perturbed, wrapped or extended with new terms.
- "int": indices and slices (`q[choice]`, `state[:2]`, `state.at[k]`), names used as indices, loop counters
  and values computed only from those. Never touched, so an index never becomes a float.
- "bool": conditions (`x > 0`, `jnp.where`'s first argument). Only comparison operators are swapped here.
- "opaque": arguments of other calls (`jnp.zeros(2)`, `jax.nn.one_hot(choice, 2)`), keyword arguments,
  attributes, lambdas, comprehensions. Never touched.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from engine.mutation.calls import ELEMENTWISE, INT_ATTRIBUTES, INT_CALLS, dotted_name, is_at_update
from engine.mutation.declarations import PARAMS_ARGUMENT, body_start, is_params_read, params_statement_index
from engine.mutation.shapes import Shape, infer_name_shapes, shape_of
from islands.candidate_model import walk

FLOAT, INT, BOOL, OPAQUE = "float", "int", "bool", "opaque"

@dataclass(slots=True)
class Site:
    """One expression position: `getattr(parent, field_name)` (or its `[index]` element) holds `node`.

    Attributes:
        node: the expression.
        parent, field_name, index: where it hangs in the tree, so it can be replaced.
        kind: FLOAT, INT, BOOL or OPAQUE (see the module docstring).
        statement: index of the top-level body statement it belongs to.
    """

    node: ast.expr
    parent: ast.AST
    field_name: str
    index: int | None
    kind: str
    statement: int

    def replace(self, new: ast.expr) -> None:
        """Puts `new` where `node` was."""
        if self.index is None:
            setattr(self.parent, self.field_name, new)
        else:
            getattr(self.parent, self.field_name)[self.index] = new
        self.node = new


@dataclass(slots=True)
class FunctionFacts:
    """What the heuristics know about the evolved function's names.

    Attributes:
        int_names: names that hold integers (indices, loop counters).
        array_slots: for each array argument (e.g. `state`), the element indices known to exist.
        scalar_arguments: float arguments never indexed (e.g. `reward`).
        module_names: names bound at module level (imports, helpers, constants).
        name_shapes: the likely shape of each argument and local name (see `engine.mutation.shapes`).
        index_sizes: for each int name, the lengths of the vectors it indexes (`choice` -> {2}).
        used_slots: for each array argument, the element indices the body reads or writes.
        written_slots: for each array argument, the element indices the body writes (`state.at[:2].set(q)`),
            i.e. the ones that carry information from one call to the next.
    """

    int_names: set[str] = field(default_factory=set)
    array_slots: dict[str, list[int]] = field(default_factory=dict)
    scalar_arguments: list[str] = field(default_factory=list)
    module_names: set[str] = field(default_factory=set)
    name_shapes: dict[str, Shape] = field(default_factory=dict)
    index_sizes: dict[str, set[int]] = field(default_factory=dict)
    used_slots: dict[str, set[int]] = field(default_factory=dict)
    written_slots: dict[str, set[int]] = field(default_factory=dict)


def module_names(module: ast.Module) -> set[str]:
    """Returns the names bound at module level: imports, functions, classes and assigned names."""
    names: set[str] = set()
    for statement in module.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        else:
            for node in walk(statement):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


def is_int_like(node: ast.expr, int_names: set[str]) -> bool:
    """Returns whether an expression most likely holds an integer (an index, a count)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, ast.Name):
        return node.id in int_names
    if isinstance(node, ast.BinOp):
        return not isinstance(node.op, ast.Div) and is_int_like(node.left, int_names) and is_int_like(
            node.right, int_names
        )
    if isinstance(node, ast.UnaryOp):
        return is_int_like(node.operand, int_names)
    if isinstance(node, ast.Attribute):
        return node.attr in INT_ATTRIBUTES
    if isinstance(node, ast.Subscript):
        return isinstance(node.value, ast.Attribute) and node.value.attr in INT_ATTRIBUTES
    if isinstance(node, ast.Call):
        return dotted_name(node.func) in INT_CALLS
    return False


def slot_indices(index: ast.expr) -> set[int]:
    """Returns the element indices a constant index or slice selects: `3` -> {3}, `2:4` -> {2, 3}."""
    if isinstance(index, ast.Constant) and isinstance(index.value, int) and not isinstance(index.value, bool):
        return {index.value} if index.value >= 0 else set()
    if isinstance(index, ast.Slice) and index.step is None:
        low = index.lower.value if isinstance(index.lower, ast.Constant) else (0 if index.lower is None else None)
        high = index.upper.value if isinstance(index.upper, ast.Constant) else None
        if isinstance(low, int) and isinstance(high, int) and 0 <= low < high:
            return set(range(low, high))
    return set()


def at_root(node: ast.expr) -> str | None:
    """Returns `state` for `state`, `state.at[:2].set(q)` or `state.at[:2].set(q).at[2].set(r)`; else None."""
    while isinstance(node, ast.Call) and is_at_update(node):
        node = node.func.value.value.value  # type: ignore[attr-defined]  # the x in x.at[i].set(v)
    return node.id if isinstance(node, ast.Name) else None


def analyse(function: ast.FunctionDef, module: ast.Module, known_int_names: Iterable[str] = ()) -> FunctionFacts:
    """Returns the name facts the site heuristics need for `function`.

    Args:
        function: the evolved function.
        module: the module that holds it.
        known_int_names: names already known to hold integers (e.g. from the parent before mutation).
    """
    facts = FunctionFacts(module_names=module_names(module))
    nodes = list(walk(function))
    docstring = ast.get_docstring(function) or ""
    int_names: set[str] = set(known_int_names)
    # "choice: int scalar" in the docstring's Args section.
    int_names.update(re.findall(r"^\s*(\w+)\s*:\s*int\b", docstring, flags=re.MULTILINE))
    for node in nodes:  # names used inside an index, e.g. `choice` in `q[choice]`
        if isinstance(node, ast.Subscript) and not is_params_read(node):
            index = node.slice
            if isinstance(index, ast.Name):
                int_names.add(index.id)
            elif not isinstance(index, ast.Constant):
                int_names.update(n.id for n in walk(index) if isinstance(n, ast.Name))
    arguments = [a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs]
    for argument in function.args.posonlyargs + function.args.args + function.args.kwonlyargs:
        if isinstance(argument.annotation, ast.Name) and argument.annotation.id == "int":
            int_names.add(argument.arg)
    assignments = [n for n in nodes if isinstance(n, (ast.Assign, ast.For))]
    for _ in range(2):  # names computed from int names, e.g. `other = 1 - choice`
        for node in assignments:
            if isinstance(node, ast.For):
                if isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Call):
                    if dotted_name(node.iter.func) == "range":
                        int_names.add(node.target.id)
            elif is_int_like(node.value, int_names):
                int_names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    facts.int_names = int_names

    indexed: dict[str, set[int]] = {}  # argument -> element indices read (or written) with constant indices
    written: dict[str, set[int]] = {}  # argument -> element indices set by `arg.at[k].set(...)` chains
    for node in nodes:
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id != PARAMS_ARGUMENT:
            indexed.setdefault(node.value.id, set()).update(slot_indices(node.slice))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "at":
            root = at_root(node.value.value)
            if root is not None:
                slots = slot_indices(node.slice)
                indexed.setdefault(root, set()).update(slots)
                written.setdefault(root, set()).update(slots)
    array_sizes: dict[str, Shape] = {}
    for name in arguments:
        if name == PARAMS_ARGUMENT or name in int_names:
            continue
        if name not in indexed:
            facts.scalar_arguments.append(name)
            continue
        # "state: (8,) float array" in the docstring declares the length of a 1-d array argument.
        match = re.search(rf"\b{re.escape(name)}\b\s*:\s*\((\d+),\)", docstring)
        array_sizes[name] = (int(match.group(1)),) if match else None
        facts.array_slots[name] = sorted(set(indexed[name]) | (set(range(array_sizes[name][0])) if match else set()))
        facts.used_slots[name] = set(indexed[name])
        facts.written_slots[name] = written.get(name, set())
    facts.name_shapes = infer_name_shapes(function, facts.scalar_arguments, array_sizes, int_names)
    for node in nodes:  # `q[choice]` with q of shape (2,): choice indexes vectors of length 2
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name) and node.slice.id in int_names:
            base = node.value.value if isinstance(node.value, ast.Attribute) and node.value.attr == "at" else node.value
            shape = shape_of(base, facts.name_shapes)
            if shape is not None and len(shape) == 1:
                facts.index_sizes.setdefault(node.slice.id, set()).add(shape[0])
    return facts


def _call_argument_kinds(call: ast.Call, kind: str, module_level: set[str]) -> list[str]:
    """Returns the kind of each positional argument of `call`, given the kind of the call's value."""
    name = dotted_name(call.func)
    count = len(call.args)
    if kind not in (FLOAT, BOOL):
        return [OPAQUE] * count
    if name == "jnp.where":
        return [BOOL, FLOAT, FLOAT][:count] + [OPAQUE] * max(0, count - 3)
    if name in ELEMENTWISE:
        return [FLOAT] * count
    if name is not None and "." not in name and name in module_level:
        return [FLOAT] * count  # a helper function defined in the module
    if is_at_update(call):
        return [FLOAT] * count
    return [OPAQUE] * count


def _walk_expression(
    node: ast.expr, parent: ast.AST, field_name: str, index: int | None, kind: str, statement: int,
    facts: FunctionFacts,
) -> Iterator[Site]:
    if kind == FLOAT and not isinstance(node, ast.Constant) and is_int_like(node, facts.int_names):
        kind = INT
    yield Site(node, parent, field_name, index, kind, statement)
    if kind in (INT, OPAQUE):
        return
    if isinstance(node, ast.BinOp):
        yield from _walk_expression(node.left, node, "left", None, kind, statement, facts)
        yield from _walk_expression(node.right, node, "right", None, kind, statement, facts)
    elif isinstance(node, ast.UnaryOp):
        inner = BOOL if isinstance(node.op, ast.Not) else kind
        yield from _walk_expression(node.operand, node, "operand", None, inner, statement, facts)
    elif isinstance(node, ast.Compare):
        yield from _walk_expression(node.left, node, "left", None, FLOAT, statement, facts)
        for i, comparator in enumerate(node.comparators):
            yield from _walk_expression(comparator, node, "comparators", i, FLOAT, statement, facts)
    elif isinstance(node, ast.BoolOp):
        for i, value in enumerate(node.values):
            yield from _walk_expression(value, node, "values", i, BOOL, statement, facts)
    elif isinstance(node, ast.IfExp):
        yield from _walk_expression(node.test, node, "test", None, BOOL, statement, facts)
        yield from _walk_expression(node.body, node, "body", None, kind, statement, facts)
        yield from _walk_expression(node.orelse, node, "orelse", None, kind, statement, facts)
    elif isinstance(node, ast.Call):
        kinds = _call_argument_kinds(node, kind, facts.module_names)
        for i, (argument, argument_kind) in enumerate(zip(node.args, kinds, strict=True)):
            if argument_kind != OPAQUE and not isinstance(argument, ast.Starred):
                yield from _walk_expression(argument, node, "args", i, argument_kind, statement, facts)
    elif isinstance(node, ast.Tuple) and kind == FLOAT:
        for i, element in enumerate(node.elts):
            if not isinstance(element, ast.Starred):
                yield from _walk_expression(element, node, "elts", i, FLOAT, statement, facts)


def _statement_sites(statement: ast.stmt, top: int, facts: FunctionFacts) -> Iterator[Site]:
    if isinstance(statement, ast.Assign):
        targets = [n.id for t in statement.targets for n in walk(t) if isinstance(n, ast.Name)]
        kind = INT if any(name in facts.int_names for name in targets) else FLOAT
        yield from _walk_expression(statement.value, statement, "value", None, kind, top, facts)
    elif isinstance(statement, ast.AugAssign):
        kind = INT if isinstance(statement.target, ast.Name) and statement.target.id in facts.int_names else FLOAT
        yield from _walk_expression(statement.value, statement, "value", None, kind, top, facts)
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        yield from _walk_expression(statement.value, statement, "value", None, FLOAT, top, facts)
    elif isinstance(statement, ast.Return) and statement.value is not None:
        yield from _walk_expression(statement.value, statement, "value", None, FLOAT, top, facts)
    elif isinstance(statement, (ast.If, ast.While)):
        yield from _walk_expression(statement.test, statement, "test", None, BOOL, top, facts)
    if isinstance(statement, (ast.If, ast.While, ast.For, ast.With)):
        for block in ("body", "orelse"):
            for inner in getattr(statement, block, []):
                yield from _statement_sites(inner, top, facts)


def expression_sites(function: ast.FunctionDef, facts: FunctionFacts) -> list[Site]:
    """Returns every expression position of the function body, skipping the docstring and PARAMS."""
    skip = params_statement_index(function)
    sites: list[Site] = []
    for top in range(body_start(function), len(function.body)):
        if top != skip:
            sites.extend(_statement_sites(function.body[top], top, facts))
    return sites


BUILTIN_NAMES = frozenset(dir(builtins))
COMPOUND_STATEMENTS = (ast.If, ast.For, ast.While, ast.With, ast.Try)


def statement_names(statement: ast.stmt) -> tuple[set[str], set[str]]:
    """Returns (the names a statement binds, the free names it reads), in one walk.

    Names bound inside comprehensions, lambdas and nested functions count as neither.
    """
    stored: set[str] = set()
    loaded: set[str] = set()
    local: set[str] = set()
    for node in walk(statement):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else stored).add(node.id)
        elif isinstance(node, ast.comprehension):
            local.update(n.id for n in walk(node.target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            local.update(a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
            if arguments.vararg:
                local.add(arguments.vararg.arg)
            if arguments.kwarg:
                local.add(arguments.kwarg.arg)
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        stored.add(statement.name)
    return stored - local, loaded - local


def undefined_reads(function: ast.FunctionDef, module_level: set[str]) -> list[str]:
    """Returns names the body reads before (or without) binding them, in body order."""
    defined = set(module_level) | BUILTIN_NAMES
    arguments = function.args
    defined.update(a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
    if arguments.vararg:
        defined.add(arguments.vararg.arg)
    if arguments.kwarg:
        defined.add(arguments.kwarg.arg)
    missing: list[str] = []
    for statement in function.body:
        stored, loaded = statement_names(statement)
        # A compound statement may bind a name in one line and read it in the next.
        inner = stored if isinstance(statement, COMPOUND_STATEMENTS) else set()
        missing.extend(sorted(loaded - defined - inner))
        defined |= stored
    return missing


def float_sites(sites: Sequence[Site]) -> list[Site]:
    """Returns the sites holding non-constant float values."""
    return [s for s in sites if s.kind == FLOAT and not isinstance(s.node, (ast.Constant, ast.Tuple))]
