"""The mutable state one proposal works on: a parsed parent module, its evolved function, and helpers."""

from __future__ import annotations

import ast
import math
import random
from dataclasses import dataclass, field

from engine.mutation.declarations import PARAMS_ARGUMENT, Bounds, read_declaration
from engine.mutation.sites import FunctionFacts, Site, analyse, expression_sites
from islands.candidate_model import walk

# Imports added to a module when a primitive needs a name it does not bind yet.
KNOWN_IMPORTS = {
    "jnp": "import jax.numpy as jnp",
    "jax": "import jax",
    "np": "import numpy as np",
    "math": "import math",
    "optax": "import optax",
}


@dataclass(slots=True)
class Workspace:
    """A parent module being mutated in place, with what the operators need to know about it.

    Attributes:
        module: the parsed parent module (mutated in place).
        function: the evolved function inside `module`.
        primitives: wrapper functions allowed by the task, e.g. ("jnp.exp", "jax.nn.sigmoid").
        donors: other programs' parsed modules and their evolved functions, for crossover.
        known_bounds: bounds for parameters that operators add or borrow, used when syncing PARAMS.
        int_names: names seen holding integers so far in this proposal.
        donor_facts: the donors' name facts by id() of their module (donors are never mutated).
        rng: the proposal's random stream.

    Operators that change the tree call `touch()`, or leave that to their caller when they report a change.
    """

    module: ast.Module
    function: ast.FunctionDef
    primitives: tuple[str, ...]
    donors: list[tuple[ast.Module, ast.FunctionDef]]
    rng: random.Random
    known_bounds: dict[str, Bounds] = field(default_factory=dict)
    int_names: set[str] = field(default_factory=set)
    donor_facts: dict[int, FunctionFacts] = field(default_factory=dict)
    _facts: FunctionFacts | None = field(default=None, repr=False)

    def facts(self) -> FunctionFacts:
        """Returns the name facts of the current tree, recomputed after each `touch()`.

        A name once seen holding an integer keeps counting as one, even after the statements that showed
        it (e.g. `q[choice]`) are mutated away.
        """
        if self._facts is None:
            self._facts = analyse(self.function, self.module, self.int_names)
            self.int_names |= self._facts.int_names
        return self._facts

    def touch(self) -> None:
        """Says that the tree changed, so that the next `facts()` looks at it again."""
        self._facts = None

    def sites(self) -> tuple[FunctionFacts, list[Site]]:
        """Returns fresh facts and every expression site of the evolved function."""
        facts = self.facts()
        return facts, expression_sites(self.function, facts)

    def facts_of_donor(self, module: ast.Module, function: ast.FunctionDef) -> FunctionFacts:
        """Returns a donor's name facts, computed once per donor module."""
        facts = self.donor_facts.get(id(module))
        if facts is None:
            facts = self.donor_facts[id(module)] = analyse(function, module)
        return facts

    def declared(self) -> dict[str, Bounds]:
        """Returns the parent's current PARAMS declaration (empty when unreadable)."""
        return read_declaration(self.function) or {}

    def new_parameter_name(self, stem: str) -> str:
        """Returns `stem`, or `stem_2`, `stem_3`, ... whichever is not yet declared, read or known."""
        taken = set(self.declared()) | set(self.known_bounds)
        taken |= {
            n.slice.value  # type: ignore[attr-defined]
            for n in walk(self.function)
            if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == PARAMS_ARGUMENT
            and isinstance(n.slice, ast.Constant)
        }
        name, k = stem, 2
        while name in taken:
            name, k = f"{stem}_{k}", k + 1
        return name

    def ensure_import(self, expression: str) -> bool:
        """Makes the root name of `expression` (e.g. `jnp` of "jnp.exp") importable; False if it cannot."""
        root = expression.split(".")[0]
        for statement in self.module.body:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                if any((alias.asname or alias.name).split(".")[0] == root for alias in statement.names):
                    return True
            elif isinstance(statement, (ast.FunctionDef, ast.ClassDef)) and statement.name == root:
                return True
        if root not in KNOWN_IMPORTS:
            return False
        self.module.body.insert(import_position(self.module), ast.parse(KNOWN_IMPORTS[root]).body[0])
        self.touch()
        return True


def import_position(module: ast.Module) -> int:
    """Returns where a new import goes: after the module docstring and the existing imports."""
    position = 0
    for index, statement in enumerate(module.body):
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            position = index + 1
        elif index == 0 and isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            position = 1
    return position


def params_read_node(name: str) -> ast.Subscript:
    """Returns the expression `params["name"]`."""
    return ast.Subscript(value=ast.Name(PARAMS_ARGUMENT, ast.Load()), slice=ast.Constant(name), ctx=ast.Load())


def number_node(value: float) -> ast.expr:
    """Returns a literal for `value`, with a unary minus for negatives so precedence stays right."""
    if not math.isfinite(value):
        raise ValueError(f"number_node needs a finite value; got {value}")
    if value < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(-value))
    return ast.Constant(value)


def expression_node(source: str) -> ast.expr:
    """Returns the parsed expression, e.g. `jnp.exp` for "jnp.exp"."""
    return ast.parse(source, mode="eval").body
