"""Canonical form of a candidate's source, so that cosmetic edits do not count as a new program.

Two sources have the same canonical hash when they differ only in formatting, comments, docstrings (and other
bare string statements) or the names of local variables inside functions. Function names, argument names,
module-level names, attribute names, string constants (such as the "alpha" of `params["alpha"]`) and numbers
all matter: changing any of them makes a new program.
"""

from __future__ import annotations

import ast
import hashlib

__all__ = ["canonical_hash", "canonical_hash_of_tree", "raw_hash"]

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def canonical_hash(source: str) -> str:
    """Returns a hex digest that is equal for sources that differ only cosmetically (see the module docstring).

    Source that does not parse is hashed after stripping trailing whitespace and blank lines.
    """
    try:
        return canonical_hash_of_tree(ast.parse(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # RecursionError: nested too deeply
        return raw_hash(source)


def raw_hash(source: str) -> str:
    """Returns the hash of source that cannot be parsed (or is nested too deeply to hash as a tree): its text with
    trailing whitespace and blank lines stripped."""
    lines = [line.rstrip() for line in source.splitlines()]
    text = "\n".join(line for line in lines if line)
    return "raw-" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def canonical_hash_of_tree(tree: ast.Module) -> str:
    """Like `canonical_hash`, for a parsed module, which it leaves as it was.

    The canonical form is written into the tree (docstrings dropped, locals renamed), dumped, and undone.
    """
    undo: list[tuple[object, str, object]] = []
    try:
        for node in _scope_nodes(tree.body, undo):
            if isinstance(node, _SCOPES):
                _rename_scope(node, {}, 0, undo)
        text = ast.dump(tree, annotate_fields=False)
    finally:
        for target, field, old in reversed(undo):
            if field == "[:]":
                target[:] = old  # type: ignore[index]
            else:
                setattr(target, field, old)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _set(node: ast.AST, field: str, value: object, undo: list) -> None:
    old = getattr(node, field)
    if old != value:
        undo.append((node, field, old))
        setattr(node, field, value)


def _is_string_statement(statement: ast.AST) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _scope_nodes(body: list[ast.AST], undo: list) -> list[ast.AST]:
    """Returns the nodes of one scope in a fixed order, including (but not entering) nested functions.

    On the way it removes docstrings and other bare string statements, which do nothing when the program runs.
    """
    nodes: list[ast.AST] = []
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        nodes.append(node)
        if isinstance(node, _SCOPES):
            # Decorators and defaults run in the enclosing scope; the body does not.
            outer_parts: list[ast.AST] = [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]
            if not isinstance(node, ast.Lambda):
                outer_parts += node.decorator_list
                _drop_strings(node.body, undo)
            stack.extend(reversed(outer_parts))
            continue
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                if field in ("body", "orelse", "finalbody"):
                    _drop_strings(value, undo)
                stack.extend(item for item in reversed(value) if isinstance(item, ast.AST))
            elif isinstance(value, ast.AST):
                stack.append(value)
    return nodes


def _drop_strings(body: list, undo: list) -> None:
    if body and any(_is_string_statement(statement) for statement in body):
        undo.append((body, "[:]", list(body)))
        body[:] = [statement for statement in body if not _is_string_statement(statement)] or [ast.Pass()]


def _rename_scope(
    function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, outer: dict[str, str], depth: int, undo: list
) -> None:
    """Renames the local variables of one function, in order of first appearance, then its nested functions."""
    arguments = {argument.arg for argument in _all_arguments(function.args)}
    nodes = _scope_nodes([function.body] if isinstance(function, ast.Lambda) else list(function.body), undo)
    bound: set[str] = set()
    declared: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                bound.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared.update(node.names)
        else:
            name = _own_name(node)
            if name:
                bound.add(name)
    local_names = bound - arguments - declared
    mapping = {name: new for name, new in outer.items() if name not in arguments and name not in local_names}
    for node in nodes:
        name = node.id if isinstance(node, ast.Name) else _own_name(node)
        if name in local_names and name not in mapping:
            mapping[name] = f"_local_{depth}_{len(mapping)}"
    for node in nodes:
        if isinstance(node, ast.Name):
            _set(node, "id", mapping.get(node.id, node.id), undo)
        else:
            _apply(node, mapping, undo)
            if isinstance(node, _SCOPES):
                _rename_scope(node, mapping, depth + 1, undo)


def _all_arguments(arguments: ast.arguments) -> list[ast.arg]:
    found = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    found += [argument for argument in (arguments.vararg, arguments.kwarg) if argument is not None]
    return found


def _own_name(node: ast.AST) -> str:
    """The name a definition, except clause or import binds; "" for other nodes."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.ExceptHandler):
        return node.name or ""
    if isinstance(node, ast.alias):
        return (node.asname or node.name).split(".")[0]
    return ""


def _apply(node: ast.AST, mapping: dict[str, str], undo: list) -> None:
    """Renames one node's own name fields through `mapping`."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        _set(node, "name", mapping.get(node.name, node.name), undo)
    elif isinstance(node, ast.ExceptHandler) and node.name:
        _set(node, "name", mapping.get(node.name, node.name), undo)
    elif isinstance(node, ast.alias):
        if node.asname:
            _set(node, "asname", mapping.get(node.asname, node.asname), undo)
        elif node.name in mapping:
            _set(node, "asname", mapping[node.name], undo)
    elif isinstance(node, ast.Nonlocal):
        _set(node, "names", [mapping.get(name, name) for name in node.names], undo)
