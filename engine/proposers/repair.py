"""Mechanical repairs of the JAX mistakes that models make most, applied to an answer before it is evaluated.

A small model writes numpy-style Python: `q[choice] += delta`, `if choice == 0: ...` on a traced value,
`jnp.clip(x, a_min=0)`. Each of these fails when the candidate is traced, although what the code means is
plain. `repair_jax` rewrites those constructs into their JAX form, each only where the rewrite computes what
Python would have computed for concrete values:

- in-place updates of an array: `x[i] = v` becomes `x = x.at[i].set(v)`, and `x[i] += v` (or `x.at[i] += v`) becomes
  `x = x.at[i].add(v)` (also `-=`, `*=`, `/=`), when `x` is not a list, dict or set built in the function;
- an `if` on a traced value whose branches only assign names becomes one `jnp.where` per assigned name, both
  branches computed (a name assigned in one branch keeps its earlier value in the other). As with any
  `jnp.where`, a branch that is not finite where it is not taken (`jnp.log(x)` under `if x > 0`) can still
  give the fit a NaN gradient, which the fitter reports;
- `a if test else b` on a traced value becomes `jnp.where(test, a, b)`; `and`, `or`, `not` and chained
  comparisons inside such a test become `jnp.logical_and`, `jnp.logical_or`, `jnp.logical_not`;
- `min(a, b)` and `max(a, b)` on traced values become `jnp.minimum` and `jnp.maximum`;
- the removed keywords `a_min` and `a_max` of `jnp.clip` become `min` and `max`;
- a function that reads `params["name"]` but declares nothing gets the declaration of the programs it was
  shown, when every name it reads is declared there with bounds;
- `typing` imports that only annotations use are dropped with the annotations (typing is not an allowed import).

A traced `if` may also assign items of a dict under literal keys (`params["beta"] = ...`); each becomes a
`jnp.where` of the item.

A value is traced when it is computed from the function's arguments; shapes, `len()` and loop counters over
plain ranges are not. What cannot be repaired this way (a `return` or a loop inside a traced `if`, `while` on a
traced value, randomness without a key) is left as written, and fails with JAX's own error. The rewrite is
reported by name, so the stored program says it was repaired (`LLMProposer` adds it to the proposer label).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Mapping, Sequence

from engine.mutation.declarations import (
    PARAMS_ARGUMENT,
    Bounds,
    body_start,
    declaration_node,
    find_function,
    params_read_in_body,
    read_declaration,
)
from islands.candidate_model import PARAMS_NAME, CandidateModel

_UNTRACED_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "size"})
_UNTRACED_CALLS = frozenset({"len", "range", "isinstance", "int", "type"})
_BUILTIN_CONTAINERS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_AT_METHODS = {ast.Add: "add", ast.Mult: "multiply", ast.Div: "divide", ast.Pow: "power"}


def repair_jax(source: str, function_name: str, shown: Sequence[str] = ()) -> tuple[str, tuple[str, ...]]:
    """Returns the source with its common JAX mistakes rewritten, and the names of the repairs made.

    Args:
        source: a candidate module defining `function_name`.
        function_name: the evolved function, e.g. "agent".
        shown: the programs the model was shown; their declarations give the bounds of a missing one.

    A source that does not parse, or needs no repair, comes back unchanged with no repair named.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source, ()
    repairs: dict[str, None] = {}
    if _drop_typing(tree):
        repairs["typing annotations dropped"] = None
    modules = _module_aliases(tree)
    for function in [node for node in tree.body if isinstance(node, ast.FunctionDef)]:
        _Repairer(function, repairs, modules).run()
    evolved = find_function(tree, function_name)
    if evolved is not None and _declare_from_shown(evolved, shown, function_name):
        repairs["declaration copied from the prompt"] = None
    if not repairs:
        return source, ()
    if "import jax.numpy as jnp" not in source and not _binds_jnp(tree):
        tree.body.insert(0, ast.Import(names=[ast.alias("jax.numpy", "jnp")]))
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n", tuple(repairs)


def _drop_typing(tree: ast.Module) -> bool:
    """Removes `typing` imports that only annotations use, with every annotation (they change nothing a traced
    function computes, and the task's imports do not include typing). Returns whether it did."""
    imports = [node for node in tree.body if (isinstance(node, ast.ImportFrom) and node.module == "typing")
               or (isinstance(node, ast.Import) and any(alias.name == "typing" for alias in node.names))]
    if not imports or any(isinstance(node, ast.Import) and len(node.names) > 1 for node in imports):
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            for argument in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                             *filter(None, [node.args.vararg, node.args.kwarg])]:
                argument.annotation = None
    _Unannotate().visit(tree)
    bound = {alias.asname or alias.name for node in imports for alias in node.names}
    if "*" in bound:
        bound = set()
    if any(isinstance(node, ast.Name) and node.id in bound for node in ast.walk(tree)) or any(
            isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "typing"
            for node in ast.walk(tree)):
        return False  # typing is used by the code itself: the import stays (and the static check refuses it)
    tree.body = [node for node in tree.body if node not in imports]
    return True


class _Unannotate(ast.NodeTransformer):
    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt | None:
        if node.value is None:
            return None
        return ast.Assign([node.target], node.value, lineno=node.lineno)


def _binds_jnp(tree: ast.Module) -> bool:
    return any(isinstance(node, (ast.Import, ast.ImportFrom)) and any((alias.asname or alias.name) == "jnp"
                                                                      for alias in node.names)
               for node in tree.body)


def _declare_from_shown(function: ast.FunctionDef, shown: Sequence[str], function_name: str) -> bool:
    if read_declaration(function) is not None or _has_declaration_statement(function):
        return False
    read = params_read_in_body(function)
    if not read:
        return False
    known: dict[str, Bounds] = {}
    for program in shown:
        for name, bounds in (CandidateModel.parse(program, function_name).bounds or {}).items():
            known.setdefault(name, bounds)
    if any(name not in known for name in read):
        return False
    function.body.insert(body_start(function), declaration_node({name: known[name] for name in read}))
    return True


def _has_declaration_statement(function: ast.FunctionDef) -> bool:
    """Whether some statement of the body assigns the declaration's name (a malformed one is not repaired)."""
    return any(isinstance(node, ast.Name) and node.id == PARAMS_NAME and isinstance(node.ctx, ast.Store)
               for node in ast.walk(function))


_INDEX_UPDATES = {"jax.ops.index_update": "set", "jax.ops.index_add": "add", "jax.ops.index_mul": "multiply",
                  "jax.ops.index_min": "min", "jax.ops.index_max": "max"}


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    """{local name: module} for the module's imports of numpy, math and jax (`import numpy as np` -> np: numpy)."""
    aliases: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in ("numpy", "math", "jax"):
                    aliases[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module in ("jax", "jax.numpy", "numpy") and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _jnp_twin(dotted: str) -> str | None:
    """The jax.numpy function to call in place of `dotted`, or None.

    numpy and math functions on traced values have a jnp twin of the same name; a `jax.X` or `jax.lax.X` that
    does not exist (`jax.log`, `jax.lax.arange`) is the jnp function the model meant. numpy.random and
    jax.random are never replaced: randomness is not repairable.
    """
    parts = dotted.split(".")
    if len(parts) != 2 and not (len(parts) == 3 and parts[:2] == ["jax", "lax"]):
        return None
    import importlib

    import jax.numpy as jnp

    name = parts[-1]
    if not callable(getattr(jnp, name, None)) or name.startswith("_"):
        return None
    if parts[0] in ("numpy", "math"):
        return name
    if parts[0] == "jax":
        module = importlib.import_module(".".join(parts[:-1]))
        return None if hasattr(module, name) else name
    return None


def _is_jax_call(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    root = node.func
    while isinstance(root, ast.Attribute):
        root = root.value
    return isinstance(root, ast.Name) and root.id in ("jnp", "jax")


def _jnp(name: str, *arguments: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Attribute(ast.Name("jnp", ast.Load()), name, ast.Load()), args=list(arguments),
                    keywords=[])


class _Repairer:
    """Rewrites one function in place; `repairs` collects the names of what was rewritten."""

    def __init__(self, function: ast.FunctionDef, repairs: dict[str, None], modules: Mapping[str, str]) -> None:
        self.function = function
        self.repairs = repairs
        self.modules = modules
        self.counter = itertools.count()
        arguments = function.args
        self.traced = {arg.arg for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]}
        self.containers: set[str] = set()
        self.jax_arrays: set[str] = set()  # names assigned from a jnp/jax call: arrays even when not traced
        self.bound = set(self.traced)  # names bound by the statements rewritten so far (and the arguments)
        self.generated: set[str] = set()  # the names this rewrite made up (conditions, branch values)

    def run(self) -> None:
        self._find_traced()
        self.function.body = self._block(self.function.body)
        _ExpressionRepairs(self).visit(self.function)

    # Which names hold traced values: a fixed point over every assignment in the function.
    def _find_traced(self) -> None:
        for node in ast.walk(self.function):
            if isinstance(node, ast.Assign) and isinstance(node.value, _BUILTIN_CONTAINERS):
                self.containers.update(target.id for target in node.targets if isinstance(target, ast.Name))
            elif isinstance(node, ast.Assign) and _is_jax_call(node.value):
                self.jax_arrays.update(target.id for target in node.targets if isinstance(target, ast.Name))
        changed = True
        while changed:
            changed = False
            for node in ast.walk(self.function):
                targets: list[ast.expr] = []
                value: ast.expr | None = None
                if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    value = node.value
                elif isinstance(node, (ast.For, ast.comprehension)):
                    targets, value = [node.target], node.iter
                if value is None or not self.is_traced(value):
                    continue
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name) and name.id not in self.traced:
                            self.traced.add(name.id)
                            changed = True

    def resolve(self, node: ast.expr) -> str:
        """The dotted name an attribute chain on an imported module stands for ("np.exp" -> "numpy.exp"), or ""."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not (isinstance(node, ast.Name) and node.id in self.modules) or node.id in self.traced:
            return ""
        return ".".join([self.modules[node.id], *reversed(parts)])

    def is_traced(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.traced
        if isinstance(node, ast.Attribute) and node.attr in _UNTRACED_ATTRIBUTES:
            return False
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _UNTRACED_CALLS:
            return node.func.id == "range" and any(self.is_traced(arg) for arg in node.args)
        if isinstance(node, (ast.Lambda, ast.FunctionDef)):
            return False
        return any(self.is_traced(child) for child in ast.iter_child_nodes(node))

    # Statements.
    def _block(self, statements: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for statement in statements:
            rewritten = self._statement(statement)
            out.extend(rewritten)
            self.bound.update(_stored_names(rewritten))
        return out

    def _statement(self, statement: ast.stmt) -> list[ast.stmt]:
        if isinstance(statement, (ast.For, ast.While, ast.With)):
            self.bound.update(_stored_names([statement.target] if isinstance(statement, ast.For) else []))
            statement.body = self._block(statement.body)
            if not isinstance(statement, ast.With):
                statement.orelse = self._block(statement.orelse)
            return [statement]
        if isinstance(statement, ast.If):
            bound_before = set(self.bound)
            statement.body = self._block(statement.body)
            self.bound = set(bound_before)  # what one branch binds is not bound in the other
            statement.orelse = self._block(statement.orelse)
            self.bound = bound_before
            if self.is_traced(statement.test):
                merged = self._where_if(statement)
                if merged is not None:
                    self.repairs["if on a traced value"] = None
                    return merged
            return [statement]
        update = self._at_update(statement)
        if update is not None:
            self.repairs["in-place array update"] = None
            return [update]
        return [statement]

    def _at_update(self, statement: ast.stmt) -> ast.Assign | None:
        """`x[i] = v` -> `x = x.at[i].set(v)`; `x[i] op= v` -> `x = x.at[i].add/multiply/...(v)`."""
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value, method = statement.targets[0], statement.value, "set"
        elif isinstance(statement, ast.AugAssign):
            target, value = statement.target, statement.value
            if isinstance(statement.op, ast.Sub):
                method, value = "add", ast.UnaryOp(ast.USub(), value)
            elif type(statement.op) in _AT_METHODS:
                method = _AT_METHODS[type(statement.op)]
            else:
                return None
        else:
            return None
        if not isinstance(target, ast.Subscript):
            return None
        if (isinstance(target.value, ast.Attribute) and target.value.attr == "at"
                and isinstance(target.value.value, ast.Name)):
            target = ast.Subscript(target.value.value, target.slice, ast.Store())  # `x.at[i] += v`: meant x[i] += v
        if not isinstance(target.value, ast.Name):
            return None
        name = target.value.id
        if name in self.containers or (name not in self.traced and name not in self.jax_arrays):
            return None
        if name == PARAMS_ARGUMENT or (isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str)):
            return None  # a dict
        at = ast.Subscript(ast.Attribute(ast.Name(name, ast.Load()), "at", ast.Load()), target.slice, ast.Load())
        call = ast.Call(ast.Attribute(at, method, ast.Load()), [value], [])
        return ast.Assign(targets=[ast.Name(name, ast.Store())], value=call, lineno=statement.lineno)

    def _where_if(self, statement: ast.If) -> list[ast.stmt] | None:
        """The branches computed one after the other under fresh names, then merged with jnp.where."""
        index = next(self.counter)
        condition = f"_cond_{index}"
        out: list[ast.stmt] = [ast.Assign([ast.Name(condition, ast.Store())], _traced_test(statement.test, self))]
        finals: list[dict[str, str]] = []
        for branch, suffix in ((statement.body, "t"), (statement.orelse, "f")):
            renamed = _rename_branch(branch, f"_{suffix}{index}")
            if renamed is None:
                return None
            branch_statements, final = renamed
            out.extend(branch_statements)
            finals.append(final)
        self.generated.update(alias for final in finals for alias in final.values())
        self.generated.add(condition)
        assigned = [name for name in dict.fromkeys([*finals[0], *finals[1]]) if name not in self.generated]
        later_used = _names_loaded_after(self.function, statement)
        for name in assigned:
            in_true, in_false = (ast.Name(final[name], ast.Load()) if name in final else _variable(name, ast.Load())
                                 for final in finals)
            owner = name.split("[", 1)[0]
            if (name not in finals[0] or name not in finals[1]) and owner not in self.bound:
                if owner in later_used:
                    return None  # Python would raise NameError on one path: leave it as written
                continue
            value = _jnp("where", ast.Name(condition, ast.Load()), in_true, in_false)
            out.append(ast.Assign([_variable(name, ast.Store())], value))
            self.traced.add(owner)
        return out


class _ExpressionRepairs(ast.NodeTransformer):
    """Expression-level repairs: `a if t else b`, `min`/`max` on traced values, `jnp.clip`'s old keywords."""

    def __init__(self, owner: _Repairer) -> None:
        self.owner = owner

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        self.generic_visit(node)
        if not self.owner.is_traced(node.test):
            return node
        self.owner.repairs["if on a traced value"] = None
        return _jnp("where", _traced_test(node.test, self.owner), node.body, node.orelse)

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        dotted = self.owner.resolve(node.func)
        if dotted in _INDEX_UPDATES and len(node.args) == 3 and not node.keywords:
            array, index, value = node.args
            if isinstance(index, ast.Subscript) and self.owner.resolve(index.value) == "jax.ops.index":
                index = index.slice
            self.owner.repairs["jax.ops index update"] = None
            at = ast.Subscript(ast.Attribute(array, "at", ast.Load()), index, ast.Load())
            return ast.Call(ast.Attribute(at, _INDEX_UPDATES[dotted], ast.Load()), [value], [])
        replacement = _jnp_twin(dotted) if dotted else None
        if replacement and (dotted.startswith("jax.") or any(self.owner.is_traced(arg) for arg in node.args)):
            self.owner.repairs["numpy, math or missing jax function -> jnp"] = None
            node.func = ast.Attribute(ast.Name("jnp", ast.Load()), replacement, ast.Load())
            return node
        if (isinstance(node.func, ast.Name) and node.func.id in ("min", "max") and len(node.args) == 2
                and not node.keywords and any(self.owner.is_traced(arg) for arg in node.args)):
            self.owner.repairs["min/max on traced values"] = None
            return _jnp("minimum" if node.func.id == "min" else "maximum", *node.args)
        if (isinstance(node.func, ast.Attribute) and node.func.attr == "clip"
                and any(keyword.arg in ("a_min", "a_max") for keyword in node.keywords)):
            for keyword in node.keywords:
                if keyword.arg in ("a_min", "a_max"):
                    keyword.arg = keyword.arg[2:]
            self.owner.repairs["clip keywords"] = None
        return node


def _traced_test(test: ast.expr, owner: _Repairer) -> ast.expr:
    """A test as an array expression: Python's `and`/`or`/`not` and chained comparisons as jnp calls."""
    if isinstance(test, ast.BoolOp):
        combine = "logical_and" if isinstance(test.op, ast.And) else "logical_or"
        values = [_traced_test(value, owner) for value in test.values]
        result = values[0]
        for value in values[1:]:
            result = _jnp(combine, result, value)
        return result
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _jnp("logical_not", _traced_test(test.operand, owner))
    if isinstance(test, ast.Compare) and len(test.ops) > 1:
        operands = [test.left, *test.comparators]
        pairs = [ast.Compare(left, [op], [right]) for left, op, right in zip(operands, test.ops, operands[1:])]
        result: ast.expr = pairs[0]
        for pair in pairs[1:]:
            result = _jnp("logical_and", result, pair)
        return result
    return test


def _rename_branch(statements: list[ast.stmt], suffix: str) -> tuple[list[ast.stmt], dict[str, str]] | None:
    """The branch with every assigned variable renamed, and each variable's final alias.

    A variable is a name (`q` -> `q_t0_0`) or an item of a dict under a literal key (`params["beta"]`, kept as the
    key text `params['beta']`, -> `params_beta_t0_1`). Returns None when the branch does something other than
    assign them (a return, a loop, a call statement) or assigns both a dict and its items.
    """
    current: dict[str, str] = {}
    out: list[ast.stmt] = []
    steps = itertools.count()
    for statement in statements:
        if isinstance(statement, ast.Pass) or (isinstance(statement, ast.Expr)
                                               and isinstance(statement.value, ast.Constant)):
            continue
        if isinstance(statement, ast.AugAssign) and (isinstance(statement.target, ast.Name)
                                                     or _item_key(statement.target)):
            load = ast.Name(statement.target.id, ast.Load()) if isinstance(statement.target, ast.Name) else \
                ast.Subscript(statement.target.value, statement.target.slice, ast.Load())
            statement = ast.Assign([statement.target], ast.BinOp(load, statement.op, statement.value))
        if not isinstance(statement, ast.Assign):
            return None
        targets = statement.targets
        if len(targets) == 1 and _item_key(targets[0]):
            key = _item_key(targets[0])
            value = _LoadRenamer(current).visit(statement.value)
            alias = f"{targets[0].value.id}_{targets[0].slice.value}{suffix}_{next(steps)}"
            if not alias.isidentifier():
                return None
            current[key] = alias
            out.append(ast.Assign([ast.Name(alias, ast.Store())], value))
            continue
        names = [node for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)]
        if not all(isinstance(target, (ast.Name, ast.Tuple)) for target in targets) or any(
                isinstance(node, ast.Starred) for target in targets for node in ast.walk(target)):
            return None
        value = _LoadRenamer(current).visit(statement.value)
        for name in names:
            alias = f"{name.id}{suffix}_{next(steps)}"
            current[name.id] = alias
            name.id = alias
        out.append(ast.Assign(targets, value))
    dicts = {key.split("[", 1)[0] for key in current if "[" in key}
    if dicts & set(current):
        return None
    return out, current


def _item_key(node: ast.AST) -> str:
    """"d['key']" for a subscript `d["key"]` of a name by a literal string, else ""."""
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)):
        return f"{node.value.id}[{node.slice.value!r}]"
    return ""


def _variable(key: str, ctx: ast.expr_context) -> ast.expr:
    """The expression of a variable key: a name, or a dict item "d['key']"."""
    if "[" not in key:
        return ast.Name(key, ctx)
    name, item = key.split("[", 1)
    return ast.Subscript(ast.Name(name, ast.Load()), ast.Constant(ast.literal_eval(item[:-1])), ctx)


class _LoadRenamer(ast.NodeTransformer):
    def __init__(self, aliases: Mapping[str, str]) -> None:
        self.aliases = dict(aliases)

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if isinstance(node.ctx, ast.Load) and node.id in self.aliases:
            return ast.Name(self.aliases[node.id], ast.Load())
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        key = _item_key(node)
        if key and isinstance(node.ctx, ast.Load) and key in self.aliases:
            return ast.Name(self.aliases[key], ast.Load())
        return self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> ast.Lambda:
        return node  # its arguments shadow; the rare lambda inside a branch keeps its names


def _stored_names(nodes: Sequence[ast.AST]) -> set[str]:
    return {child.id for node in nodes for child in ast.walk(node)
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store)}


def _names_loaded_after(function: ast.FunctionDef, statement: ast.stmt) -> set[str]:
    end = getattr(statement, "end_lineno", statement.lineno) or statement.lineno
    return {node.id for node in ast.walk(function) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
            and getattr(node, "lineno", 0) > end}
