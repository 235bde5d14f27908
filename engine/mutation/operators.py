"""Point mutations of the evolved function: constants, operators, wrappers, new terms, statements.

Each operator takes a `Workspace`, changes its tree in place and returns a short description of what it
did, or None when it found nothing it could change (the caller then tries another operator). Operators
only touch the sites `engine.mutation.sites` labels safe, so indices and integer arguments stay integers.
"""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Callable

from engine.mutation.declarations import PARAMS_ARGUMENT, PARAMS_NAME, is_params_read, params_statement_index
from engine.mutation.sites import (
    BOOL,
    ELEMENTWISE,
    FLOAT,
    FunctionFacts,
    Site,
    at_root,
    dotted_name,
    float_sites,
    undefined_reads,
)
from engine.mutation.shapes import fits, shape_of
from engine.mutation.workspace import Workspace, expression_node, number_node, params_read_node
from islands.candidate_model import walk

Operator = Callable[[Workspace, int | None], str | None]  # (workspace, only this statement or None) -> note

BINARY_SWAPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
COMPARE_SWAPS: dict[type, type] = {
    ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
}
POSITIVE_FUNCTIONS = frozenset({"jnp.exp", "jax.nn.sigmoid", "jax.nn.softplus", "jax.scipy.special.expit"})
FUNCTION_SWAPS = {"jnp.maximum": "jnp.minimum", "jnp.minimum": "jnp.maximum"}
WEIGHT_BOUNDS = ((-5.0, 5.0), (0.0, 1.0))  # for a new term's weight: signed, or a mixing fraction
BIAS_BOUNDS = (-5.0, 5.0)
GAIN_BOUNDS = (0.0, 5.0)
ONE_HOT = "jax.nn.one_hot"


def _in_statement(sites: list[Site], statement: int | None) -> list[Site]:
    return sites if statement is None else [s for s in sites if s.statement == statement]


def _round(value: float) -> float:
    """Returns `value` with 4 significant digits, so mutated sources stay readable."""
    return float(f"{value:.4g}")


def perturb_constant(workspace: Workspace, statement: int | None = None) -> str | None:
    """Changes one float literal: log-normal scaling, additive jitter, a sign flip, or a 0/1 swap."""
    _, sites = workspace.sites()
    candidates = [
        s for s in _in_statement(sites, statement)
        if s.kind == FLOAT and isinstance(s.node, ast.Constant) and isinstance(s.node.value, (int, float))
        and not isinstance(s.node.value, bool)
    ]
    if not candidates:
        return None
    rng = workspace.rng
    site = rng.choice(candidates)
    old = float(site.node.value)  # type: ignore[union-attr]
    draw = rng.random()
    if draw < 0.5:
        new = old * math.exp(rng.gauss(0.0, 0.5)) if old != 0 else rng.gauss(0.0, 0.5)
    elif draw < 0.8:
        new = old + rng.gauss(0.0, 0.1 * max(1.0, abs(old)))
    elif draw < 0.9 and old != 0:
        new = -old
    else:
        new = 1.0 if old == 0 else 0.0
    new = _round(new)
    if new == old or not math.isfinite(new):
        return None
    site.replace(number_node(new))
    return f"constant {old:g} -> {new:g}"


def _safe_divisor(node: ast.expr) -> bool:
    """Returns whether dividing by `node` is unlikely to divide by zero (a parameter, a positive function)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and node.value != 0
    if is_params_read(node):
        return True
    return isinstance(node, ast.Call) and dotted_name(node.func) in POSITIVE_FUNCTIONS


def swap_operator(workspace: Workspace, statement: int | None = None) -> str | None:
    """Swaps + and -, * and /, a comparison, or jnp.maximum and jnp.minimum; or drops a unary minus or not.

    `k * x` becomes `x / k` or `k / x`, whichever divides by a parameter, a nonzero number or a positive
    function, so that a swap does not divide by a value that starts at zero.
    """
    _, sites = workspace.sites()
    candidates: list[Site] = []
    for site in _in_statement(sites, statement):
        node = site.node
        if site.kind == FLOAT and isinstance(node, ast.BinOp) and type(node.op) in BINARY_SWAPS:
            if not isinstance(node.op, ast.Mult) or _safe_divisor(node.right) or _safe_divisor(node.left):
                candidates.append(site)
        elif site.kind in (FLOAT, BOOL) and isinstance(node, ast.Compare) and type(node.ops[0]) in COMPARE_SWAPS:
            candidates.append(site)
        elif site.kind in (FLOAT, BOOL) and isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            candidates.append(site)
        elif site.kind == FLOAT and isinstance(node, ast.Call) and dotted_name(node.func) in FUNCTION_SWAPS:
            candidates.append(site)
    if not candidates:
        return None
    site = workspace.rng.choice(candidates)
    node = site.node
    if isinstance(node, ast.BinOp):
        old = type(node.op)
        if old is ast.Mult and not _safe_divisor(node.right):
            node.left, node.right = node.right, node.left  # `k * x` -> `x / k`
        node.op = BINARY_SWAPS[old]()
        return f"operator {old.__name__} -> {type(node.op).__name__}"
    if isinstance(node, ast.Compare):
        index = workspace.rng.randrange(len(node.ops))
        old = type(node.ops[index])
        if old not in COMPARE_SWAPS:
            return None
        node.ops[index] = COMPARE_SWAPS[old]()
        return f"comparison {old.__name__} -> {type(node.ops[index]).__name__}"
    if isinstance(node, ast.UnaryOp):
        site.replace(node.operand)
        return f"dropped unary {type(node.op).__name__}"
    assert isinstance(node, ast.Call)
    old_name = dotted_name(node.func)
    node.func = expression_node(FUNCTION_SWAPS[old_name])  # type: ignore[index]
    return f"call {old_name} -> {FUNCTION_SWAPS[old_name]}"  # type: ignore[index]


def negate(workspace: Workspace, statement: int | None = None) -> str | None:
    """Puts a unary minus in front of a float sub-expression."""
    _, sites = workspace.sites()
    candidates = [
        s for s in float_sites(_in_statement(sites, statement))
        if not (isinstance(s.parent, ast.UnaryOp) or isinstance(s.node, ast.UnaryOp))
    ]
    if not candidates:
        return None
    site = workspace.rng.choice(candidates)
    site.replace(ast.UnaryOp(op=ast.USub(), operand=site.node))
    return "negated a sub-expression"


def wrap(workspace: Workspace, statement: int | None = None) -> str | None:
    """Wraps a float sub-expression in a primitive, e.g. `x` -> `jnp.tanh(x)`."""
    primitives = [p for p in workspace.primitives if p]
    if not primitives:
        return None
    _, sites = workspace.sites()
    candidates = float_sites(_in_statement(sites, statement))
    if not candidates:
        return None
    rng = workspace.rng
    site = rng.choice(candidates)
    primitive = rng.choice(primitives)
    if isinstance(site.node, ast.Call) and dotted_name(site.node.func) == primitive:
        return None  # f(f(x)) rarely helps
    if not workspace.ensure_import(primitive):
        return None
    site.replace(ast.Call(func=expression_node(primitive), args=[site.node], keywords=[]))
    return f"wrapped in {primitive}"


def unwrap(workspace: Workspace, statement: int | None = None) -> str | None:
    """Replaces an elementwise call by one of its arguments, e.g. `jnp.tanh(x)` -> `x`."""
    _, sites = workspace.sites()
    known = ELEMENTWISE | set(workspace.primitives)
    candidates = [
        s for s in float_sites(_in_statement(sites, statement))
        if isinstance(s.node, ast.Call) and dotted_name(s.node.func) in known and s.node.args
        and not s.node.keywords and not any(isinstance(a, ast.Starred) for a in s.node.args)
    ]
    if not candidates:
        return None
    site = workspace.rng.choice(candidates)
    call = site.node
    assert isinstance(call, ast.Call)
    site.replace(workspace.rng.choice(call.args))
    return f"unwrapped {dotted_name(call.func)}"


def _term_sources(facts: FunctionFacts, target: Site, sites: list[Site]) -> list[ast.expr]:
    """Returns expressions a new term may multiply: parts of the target, written state slots, scalar arguments.

    Only expressions whose shape broadcasts into the target's shape without changing it qualify.
    """
    inside = {id(n) for n in walk(target.node)}
    sources: list[ast.expr] = [
        s.node for s in float_sites(sites)
        if id(s.node) in inside and s.node is not target.node and not is_params_read(s.node)
    ]
    for name, slots in facts.written_slots.items():  # a slot nothing writes would stay zero
        sources.extend(
            ast.Subscript(value=ast.Name(name, ast.Load()), slice=ast.Constant(k), ctx=ast.Load()) for k in sorted(slots)
        )
    sources.extend(ast.Name(name, ast.Load()) for name in facts.scalar_arguments)
    into = shape_of(target.node, facts.name_shapes)
    sources = [source for source in sources if fits(shape_of(source, facts.name_shapes), into)]
    # An index as a one-hot vector, e.g. `jax.nn.one_hot(choice, 2)` added to (2,) logits (perseveration).
    if into is not None and len(into) == 1:
        for name, sizes in sorted(facts.index_sizes.items()):
            if into[0] in sizes:
                arguments = [ast.Name(name, ast.Load()), ast.Constant(into[0])]
                sources.append(ast.Call(expression_node(ONE_HOT), arguments, []))
    return sources


def _stem(node: ast.expr) -> str:
    """Returns a readable weight name for a term, e.g. "w_reward", "w_state3" or "w_choice"."""
    if isinstance(node, ast.Call) and dotted_name(node.func) == ONE_HOT and isinstance(node.args[0], ast.Name):
        return f"w_{node.args[0].id}"
    if isinstance(node, ast.Name):
        return f"w_{node.id}"
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Constant):
        return f"w_{node.value.id}{node.slice.value}"
    return "w"


def insert_term(workspace: Workspace, statement: int | None = None) -> str | None:
    """Adds a parameter-weighted term, `e` -> `e + params["w_x"] * x`; or a bias or a gain on `e`.

    The parameter is new (declared with bounds like (-5, 5) or (0, 1)) or, a third of the time, an
    existing one.
    """
    facts, sites = workspace.sites()
    candidates = float_sites(_in_statement(sites, statement))
    if not candidates:
        return None
    rng = workspace.rng
    target = rng.choice(candidates)
    declared = workspace.declared()
    draw = rng.random()
    if draw < 0.7:
        sources = _term_sources(facts, target, sites)
        if not sources:
            return None
        source = copy.deepcopy(rng.choice(sources))
        if isinstance(source, ast.Call) and not workspace.ensure_import(ONE_HOT):
            return None
        kind, stem, bounds = "term", _stem(source), rng.choice(WEIGHT_BOUNDS)
    elif draw < 0.85:
        source, kind, stem, bounds = None, "bias", "bias", BIAS_BOUNDS
    else:
        source, kind, stem, bounds = None, "gain", "gain", GAIN_BOUNDS
    if declared and rng.random() < 1 / 3:
        name = rng.choice(sorted(declared))
    else:
        name = workspace.new_parameter_name(stem)
        workspace.known_bounds[name] = bounds
    weight = params_read_node(name)
    if kind == "term":
        addend = ast.BinOp(left=weight, op=ast.Mult(), right=source)
        site_value: ast.expr = ast.BinOp(left=target.node, op=ast.Add(), right=addend)
    elif kind == "bias":
        site_value = ast.BinOp(left=target.node, op=ast.Add(), right=weight)
    else:
        site_value = ast.BinOp(left=weight, op=ast.Mult(), right=target.node)
    target.replace(site_value)
    return f"{kind} with params[{name!r}]"


def _memory_values(facts: FunctionFacts, function: ast.FunctionDef, before: int) -> list[ast.expr]:
    """Returns values worth carrying to the next call: float names bound before statement `before` (scalars
    and vectors of known length) and one-hot vectors of index arguments."""
    bound = {a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs}
    for statement in function.body[:before]:
        if isinstance(statement, ast.Assign):
            bound.update(t.id for t in statement.targets if isinstance(t, ast.Name))
    values: list[ast.expr] = []
    for name in sorted(bound):
        shape = facts.name_shapes.get(name)
        skip = name in facts.int_names or name in facts.array_slots or name in (PARAMS_ARGUMENT, PARAMS_NAME)
        if not skip and shape is not None and len(shape) <= 1:
            values.append(ast.Name(name, ast.Load()))
    for name, sizes in sorted(facts.index_sizes.items()):
        if name in bound:
            values.extend(
                ast.Call(expression_node(ONE_HOT), [ast.Name(name, ast.Load()), ast.Constant(size)], [])
                for size in sorted(sizes)
            )
    return values


def remember(workspace: Workspace, statement: int | None = None) -> str | None:
    """Carries a value to the next call in a free slot of the returned state, and reads it back as a new term.

    E.g. `return logits, state.at[:2].set(q)` becomes `return logits, state.at[:2].set(q).at[2].set(reward)`
    and `logits = beta * q` becomes `logits = beta * q + params["w_memory"] * state[2]`: an effect of the
    previous trial's reward. Vectors (a one-hot of the last choice, say) take several consecutive slots.
    """
    if statement is not None:
        return None
    facts, sites = workspace.sites()
    function = workspace.function
    returns = [i for i, s in enumerate(function.body) if isinstance(s, ast.Return) and isinstance(s.value, ast.Tuple)]
    if not returns:
        return None
    return_index = returns[-1]
    elements = function.body[return_index].value.elts  # type: ignore[union-attr]
    carried = [
        (i, at_root(e)) for i, e in enumerate(elements)
        if at_root(e) in facts.array_slots and facts.name_shapes.get(at_root(e)) is not None  # type: ignore[arg-type]
    ]
    if not carried:
        return None
    rng = workspace.rng
    position, name = rng.choice(carried)
    assert name is not None
    size = facts.name_shapes[name][0]  # type: ignore[index]
    free = [k for k in range(size) if k not in facts.used_slots.get(name, set())]
    values = _memory_values(facts, function, return_index)
    if not free or not values:
        return None
    value = copy.deepcopy(rng.choice(values))
    shape = shape_of(value, facts.name_shapes)
    width = 1 if shape == () else shape[0]  # type: ignore[index]
    starts = [k for k in free if all(k + j in free for j in range(width))]
    if not starts:
        return None
    start = rng.choice(starts)
    index = ast.Constant(start) if shape == () else ast.Slice(ast.Constant(start), ast.Constant(start + width))
    memory = ast.Subscript(value=ast.Name(name, ast.Load()), slice=copy.deepcopy(index), ctx=ast.Load())
    memory_shape = () if shape == () else (width,)
    targets = [
        s for s in float_sites(sites)
        if s.statement < return_index and fits(memory_shape, shape_of(s.node, facts.name_shapes))
        and not isinstance(s.parent, ast.Call)  # not inside `x.at[i].add(...)`: keep updates about this trial
    ]
    if not targets or (isinstance(value, ast.Call) and not workspace.ensure_import(ONE_HOT)):
        return None
    target = rng.choice(targets)
    weight = workspace.new_parameter_name("w_memory")
    workspace.known_bounds[weight] = BIAS_BOUNDS
    term = ast.BinOp(left=params_read_node(weight), op=ast.Mult(), right=memory)
    target.replace(ast.BinOp(left=target.node, op=ast.Add(), right=term))
    at = ast.Subscript(value=ast.Attribute(elements[position], "at", ast.Load()), slice=index, ctx=ast.Load())
    elements[position] = ast.Call(func=ast.Attribute(at, "set", ast.Load()), args=[value], keywords=[])
    return f"remembered `{ast.unparse(value)}` in {ast.unparse(memory)} as params[{weight!r}]"


def _removable_statements(workspace: Workspace) -> list[int]:
    function = workspace.function
    params_index = params_statement_index(function)
    start = 0 if params_index is None else params_index + 1
    return [
        i for i in range(start, len(function.body))
        if not any(isinstance(n, ast.Return) for n in walk(function.body[i]))
    ]


def delete_statement(workspace: Workspace, statement: int | None = None) -> str | None:
    """Deletes a body statement (never PARAMS or a return) whose removal leaves every name defined."""
    function = workspace.function
    facts = workspace.facts()
    indices = _removable_statements(workspace)
    workspace.rng.shuffle(indices)
    for index in indices:
        removed = function.body.pop(index)
        if not undefined_reads(function, facts.module_names):
            return f"deleted `{ast.unparse(removed)[:60]}`"
        function.body.insert(index, removed)
    return None


def duplicate_statement(workspace: Workspace, statement: int | None = None) -> str | None:
    """Copies an assignment right after itself and mutates the copy (a second update, a refinement)."""
    function = workspace.function
    facts = workspace.facts()
    indices = [
        i for i in _removable_statements(workspace)
        if isinstance(function.body[i], (ast.Assign, ast.AugAssign))
        and not any(
            isinstance(n, ast.Name) and n.id in facts.int_names
            for t in getattr(function.body[i], "targets", [getattr(function.body[i], "target", None)])
            for n in walk(t)
        )
    ]
    if not indices:
        return None
    index = workspace.rng.choice(indices)
    before = ast.dump(function.body[index])
    function.body.insert(index + 1, copy.deepcopy(function.body[index]))
    workspace.touch()
    for _ in range(4):
        operator = workspace.rng.choice([perturb_constant, swap_operator, wrap, insert_term, negate])
        note = operator(workspace, index + 1)
        if note is not None:
            workspace.touch()
            if ast.dump(function.body[index + 1]) != before:
                return f"duplicated statement {index} and {note}"
    del function.body[index + 1]
    workspace.touch()
    return None


__all__ = [
    "Operator",
    "delete_statement",
    "duplicate_statement",
    "insert_term",
    "negate",
    "perturb_constant",
    "remember",
    "swap_operator",
    "unwrap",
    "wrap",
]
