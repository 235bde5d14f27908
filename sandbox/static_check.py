"""The static check of a candidate's source, run before any process is started.

It rejects imports outside the task's allow-list and the names and attributes that reach the interpreter's
internals (`__import__`, `eval`, `open`, `getattr` with a computed name, any `_private` or `__dunder__`
attribute, frame objects, numpy/jax file and network helpers, assignments to imported modules).
This is defence in depth and a guard for score integrity (a candidate must not patch the scoring code
that runs in its own process); the security boundary is the OS-level isolation in `sandbox/isolation.py`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Sequence

from sandbox.results import Outcome

#: Built-in names a candidate may not mention at all.
FORBIDDEN_NAMES = frozenset({
    "__import__", "__builtins__", "__loader__", "__spec__", "__build_class__", "__file__",
    "eval", "exec", "compile", "open", "input", "breakpoint", "help", "exit", "quit",
    "globals", "locals", "vars", "dir", "delattr", "setattr",
    "memoryview", "importlib", "sys", "os", "subprocess", "builtins",
})

#: Attribute names that reach frames, code objects, files, processes or the network.
FORBIDDEN_ATTRIBUTES = frozenset({
    # frames, generators, code and tracebacks
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace",
    "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next",
    "co_code", "func_globals",
    # files, shared libraries, processes, network (numpy, jax)
    "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "tofile", "memmap", "fromregex", "DataSource", "ctypeslib", "ctypes", "f2py", "distutils",
    "testing", "profiler", "distributed", "tools", "system", "popen",
    "format", "format_map",
})

#: Built-ins that take an attribute name as their second argument.
ATTRIBUTE_BUILTINS = frozenset({"getattr", "hasattr"})


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a candidate is rejected before it runs: SYNTAX_ERROR or FORBIDDEN, and a message naming the line."""

    outcome: Outcome
    message: str


def check_source(source: str, allowed_imports: Sequence[str]) -> Rejection | None:
    """Returns why `source` may not run, or None when it passes.

    Args:
        source: the candidate module's full source.
        allowed_imports: top-level module names the candidate may import; ("*",) turns the whole static check
            off (only the syntax is checked), leaving the OS-level isolation as the only guard.
    """
    try:
        tree = ast.parse(source, filename="candidate.py")
    except SyntaxError as error:
        return Rejection(Outcome.SYNTAX_ERROR, f"line {error.lineno}: {error.msg}")
    except ValueError as error:  # e.g. null bytes in the source
        return Rejection(Outcome.SYNTAX_ERROR, str(error))
    except (RecursionError, MemoryError):  # Python's parser gives up on very deep nesting this way
        return Rejection(Outcome.SYNTAX_ERROR, "the source is nested too deeply to parse")
    if "*" in allowed_imports:
        return None
    try:
        problems = _Checker(tuple(allowed_imports), source).check(tree)
    except RecursionError:  # a tree that parsed but is deeper than the checker can walk: not checked, not run
        return Rejection(Outcome.SYNTAX_ERROR, "the source is nested too deeply to check")
    if problems:
        return Rejection(Outcome.FORBIDDEN, "; ".join(problems[:5]))
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self, allowed_imports: tuple[str, ...], source: str) -> None:
        self.allow_all = "*" in allowed_imports
        self.allowed = allowed_imports
        self.lines = source.splitlines()
        self.problems: list[str] = []
        self.module_aliases: set[str] = set()
        self.checked_calls: set[int] = set()  # ids of Name nodes that are the callee of a checked getattr()

    def check(self, tree: ast.AST) -> list[str]:
        for node in ast.walk(tree):  # aliases first, so an assignment above its import is caught too
            if isinstance(node, ast.Import):
                self.module_aliases.update((a.asname or a.name.split(".")[0]) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                self.module_aliases.update((a.asname or a.name) for a in node.names)
        self.visit(tree)
        return self.problems

    def _reject(self, node: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", 0)
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.problems.append(f"line {line}: {what} (`{text[:80]}`)")

    def _check_module_path(self, node: ast.AST, dotted: str) -> None:
        parts = dotted.split(".")
        if not self.allow_all and parts[0] not in self.allowed:
            allowed = ", ".join(self.allowed) or "nothing"
            self._reject(node, f"import of '{parts[0]}' is not allowed; this task allows: {allowed}")
            return
        for part in parts[1:]:
            if part.startswith("_") or part in FORBIDDEN_ATTRIBUTES:
                self._reject(node, f"import of '{dotted}' is not allowed ('{part}' is off-limits)")
                return

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module_path(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self._reject(node, "relative imports are not allowed")
            return
        self._check_module_path(node, node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self._reject(node, f"'from {node.module} import *' is not allowed; import names explicitly")
            elif alias.name.startswith("_") or alias.name in FORBIDDEN_ATTRIBUTES:
                self._reject(node, f"importing '{alias.name}' from '{node.module}' is not allowed")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES or (node.id.startswith("__") and node.id.endswith("__")):
            self._reject(node, f"use of '{node.id}' is not allowed")
        elif node.id in ATTRIBUTE_BUILTINS and id(node) not in self.checked_calls:
            self._reject(node, f"'{node.id}' may only be called directly, with a literal attribute name")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self._reject(node, f"access to the private or dunder attribute '.{node.attr}' is not allowed")
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            self._reject(node, f"access to '.{node.attr}' is not allowed")
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.module_aliases:
                self._reject(node, f"assigning to an attribute of the imported module '{root.id}' is not allowed")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_BUILTINS:
            self.checked_calls.add(id(node.func))
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)
                    and not name.value.startswith("_") and name.value not in FORBIDDEN_ATTRIBUTES):
                self._reject(node, f"{node.func.id}() is allowed only with a literal, public attribute name")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # Format strings such as "{0.__class__}" reach dunders without an Attribute node.
        if isinstance(node.value, str) and "__" in node.value:
            self._reject(node, "string constants containing '__' are not allowed")

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            if name in self.module_aliases:
                self._reject(node, f"rebinding the imported module '{name}' with 'global' is not allowed")
