"""Crossover: moving statements and sub-expressions from another shot's function into the parent.

Borrowed code keeps working because (1) the parameters it reads are declared with the donor's bounds when
PARAMS is synced, (2) module-level names it needs (helper functions, imports, constants) are copied from
the donor module, and (3) a transplant that reads a local name the parent does not define at that point
is undone.
"""

from __future__ import annotations

import ast
import copy

from engine.mutation.declarations import params_read, params_statement_index, read_declaration
from engine.mutation.sites import BUILTIN_NAMES, expression_sites, float_sites, module_names, undefined_reads
from engine.mutation.shapes import shape_of
from engine.mutation.workspace import Workspace, import_position
from islands.candidate_model import walk


def _binds(statement: ast.stmt, name: str) -> bool:
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return any((alias.asname or alias.name).split(".")[0] == name for alias in statement.names)
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return statement.name == name
    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
        return any(isinstance(n, ast.Name) and n.id == name for n in walk(statement))
    return False


def _borrow_module_names(workspace: Workspace, donor: ast.Module, names: list[str]) -> bool:
    """Copies the donor's module-level statements that bind `names` (and what those need); False if any is missing."""
    module = workspace.module
    pending = list(names)
    for _ in range(8):  # a helper may need an import, which the next round copies
        if not pending:
            return True
        have = module_names(module)
        for name in pending:
            if name in have:
                continue
            statement = next((s for s in donor.body if _binds(s, name)), None)
            if statement is None:
                return False
            borrowed = copy.deepcopy(statement)
            if isinstance(borrowed, (ast.Import, ast.ImportFrom)):
                module.body.insert(import_position(module), borrowed)
            else:
                module.body.insert(module.body.index(workspace.function), borrowed)
            have |= module_names(ast.Module(body=[borrowed], type_ignores=[]))
            workspace.touch()
        pending = sorted(_missing_module_names(module))
    return not pending


def _missing_module_names(module: ast.Module) -> set[str]:
    """Returns names that module-level helper functions read but nothing binds."""
    bound = module_names(module) | BUILTIN_NAMES
    missing: set[str] = set()
    for statement in module.body:
        if isinstance(statement, ast.FunctionDef):
            local = {a.arg for a in statement.args.args + statement.args.posonlyargs + statement.args.kwonlyargs}
            local |= {n.id for n in walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            loads = {n.id for n in walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            missing |= loads - local - bound
    return missing


def _settle(workspace: Workspace, donor: ast.Module, donor_function: ast.FunctionDef, moved: list[ast.AST]) -> bool:
    """Fixes up names after a transplant; returns False when the parent cannot define what `moved` reads."""
    function = workspace.function
    missing = undefined_reads(function, module_names(workspace.module))
    if missing:
        donor_level = module_names(donor)
        if not all(name in donor_level for name in missing):
            return False
        if not _borrow_module_names(workspace, donor, missing):
            return False
        if undefined_reads(function, module_names(workspace.module)):
            return False
    donor_bounds = read_declaration(donor_function) or {}
    for node in moved:
        for name in params_read(node):
            if name in donor_bounds:
                workspace.known_bounds.setdefault(name, donor_bounds[name])
    return True


def crossover_statement(workspace: Workspace, statement: int | None = None) -> str | None:
    """Takes a statement or a two-statement block from another shot's function.

    It replaces the parent's statement that assigns the same name (or the parent's return, for a
    borrowed return), or is inserted before the parent's return.
    """
    if not workspace.donors or statement is not None:
        return None
    rng = workspace.rng
    donor, donor_function = rng.choice(workspace.donors)
    donor_params = params_statement_index(donor_function)
    donor_start = 0 if donor_params is None else donor_params + 1
    if donor_start >= len(donor_function.body):
        return None
    first = rng.randrange(donor_start, len(donor_function.body))
    length = 2 if rng.random() < 0.3 and first + 1 < len(donor_function.body) else 1
    block = [copy.deepcopy(s) for s in donor_function.body[first:first + length]]

    function = workspace.function
    saved_body, saved_module = list(function.body), list(workspace.module.body)
    params_index = params_statement_index(function)
    start = 0 if params_index is None else params_index + 1
    returns = [i for i in range(start, len(function.body)) if isinstance(function.body[i], ast.Return)]
    end = returns[-1] if returns else len(function.body)
    if any(isinstance(n, ast.Return) for s in block for n in walk(s)):
        if not isinstance(block[-1], ast.Return) or not returns:
            return None
        function.body[end:end + 1] = block
        how = "replaced the return with"
    else:
        names = [t.id for t in getattr(block[0], "targets", []) if isinstance(t, ast.Name)]
        same = [
            i for i in range(start, end)
            if any(isinstance(t, ast.Name) and t.id in names for t in getattr(function.body[i], "targets", []))
        ]
        if same and rng.random() < 0.6:
            index = rng.choice(same)
            function.body[index:index + 1] = block
            how = f"replaced statement {index} with"
        else:
            index = rng.randint(start, end)
            function.body[index:index] = block
            how = f"inserted at {index}"
    if not _settle(workspace, donor, donor_function, block):
        function.body[:], workspace.module.body[:] = saved_body, saved_module
        workspace.touch()
        return None
    return f"crossover: {how} donor statements {first}..{first + length - 1}"


def crossover_expression(workspace: Workspace, statement: int | None = None) -> str | None:
    """Replaces a float sub-expression of the parent by one from another shot's function."""
    if not workspace.donors:
        return None
    rng = workspace.rng
    donor, donor_function = rng.choice(workspace.donors)
    donor_facts = workspace.facts_of_donor(donor, donor_function)
    donor_sites = float_sites(expression_sites(donor_function, donor_facts))
    facts, sites = workspace.sites()
    targets = [s for s in float_sites(sites) if statement is None or s.statement == statement]
    if not donor_sites or not targets:
        return None
    target = rng.choice(targets)
    shape = shape_of(target.node, facts.name_shapes)
    if shape is None:
        return None
    donor_sites = [s for s in donor_sites if shape_of(s.node, donor_facts.name_shapes) == shape]
    if not donor_sites:
        return None
    borrowed = copy.deepcopy(rng.choice(donor_sites).node)
    if ast.dump(borrowed) == ast.dump(target.node):
        return None
    old, saved_module = target.node, list(workspace.module.body)
    target.replace(borrowed)
    if not _settle(workspace, donor, donor_function, [borrowed]):
        target.replace(old)
        workspace.module.body[:] = saved_module
        workspace.touch()
        return None
    return f"crossover: sub-expression `{ast.unparse(borrowed)[:40]}`"
