"""Literal constants of a candidate become arguments of its compiled computation, so that candidates that differ
only in their constants share one compiled program.

The mutator's most common move, and a frequent LLM edit, changes a number and nothing else. Compiled as written,
each such candidate is a new XLA program and pays the whole compile again. `lift_constants` rewrites the evolved
function so that each float literal in a float position (the positions the mutator perturbs: never an index, a
shape, an axis or an exponent) is read from `params` under a reserved name. The tracing stage exports that
version, with the constants as extra scalar inputs; the trusted scorer passes their values back in
(`sandbox/exported.py`), and the fitter makes them arguments of its compiled program (`engine/fit/gradient.py`),
whose persistent compilation cache then hits for every later candidate of the same form.

The rewrite is the engine's, from the syntax tree; the values come from the same tree, never from the sandbox.
When the rewritten function does not trace (a literal used where Python needs a number), the tracing stage falls
back to the source as written.

Example:
    >>> lifted = lift_constants(source, "agent")   # `q * 0.9` in source
    >>> lifted.source                               # `q * params['__constant_0']`
    >>> lifted.constants                            # (('__constant_0', 0.9),)
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from engine.mutation.sites import FLOAT, analyse, expression_sites

__all__ = ["CONSTANT_PREFIX", "LiftedConstants", "lift_constants"]

#: Lifted constants are read as params[f"{CONSTANT_PREFIX}{i}"]; declared parameters may not start with it.
CONSTANT_PREFIX = "__constant_"


@dataclass(frozen=True, slots=True)
class LiftedConstants:
    """The evolved function with its float literals read from `params`.

    Attributes:
        source: the rewritten module source.
        constants: (reserved name, value) of each lifted literal, in order of appearance.
    """

    source: str
    constants: tuple[tuple[str, float], ...]


def lift_constants(source: str, function_name: str) -> LiftedConstants | None:
    """Returns the candidate with its float literals lifted into `params`, or None when there is none to lift or
    the function's shape makes the rewrite unsafe (no `params` argument, `params` rebound or shadowed)."""
    try:
        module = ast.parse(source)
    except SyntaxError:
        return None
    function = next((node for node in module.body
                     if isinstance(node, ast.FunctionDef) and node.name == function_name), None)
    if function is None or not function.args.args:
        return None
    params_name = function.args.args[0].arg
    if _rebinds(function, params_name):
        return None
    pow_exponents = {id(node.right) for node in ast.walk(function)
                     if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)}
    try:
        sites = expression_sites(function, analyse(function, module))
    except Exception:  # the site heuristics meet code they do not know: compile the candidate as written
        return None
    sites = [site for site in sites
             if site.kind == FLOAT and isinstance(site.node, ast.Constant) and type(site.node.value) is float
             and id(site.node) not in pow_exponents]
    if not sites:
        return None
    constants = []
    for index, site in enumerate(sites):
        name = f"{CONSTANT_PREFIX}{index}"
        constants.append((name, float(site.node.value)))
        site.replace(ast.Subscript(value=ast.Name(id=params_name, ctx=ast.Load()),
                                   slice=ast.Constant(value=name), ctx=ast.Load()))
    return LiftedConstants(ast.unparse(ast.fix_missing_locations(module)), tuple(constants))


def _rebinds(function: ast.FunctionDef, name: str) -> bool:
    """Whether `name` is assigned, deleted or shadowed by a nested function's argument inside `function`."""
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Load):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and node is not function:
            arguments = node.args
            names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
            names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
            if name in names:
                return True
        if isinstance(node, (ast.Global, ast.Nonlocal)) and name in node.names:
            return True
    return False
