"""Genetic-programming mutation of candidate modules: the operators behind the LLM-free proposer."""

from engine.mutation.crossover import crossover_expression, crossover_statement
from engine.mutation.declarations import (
    DEFAULT_BOUNDS,
    PARAMS_ARGUMENT,
    PARAMS_NAME,
    Bounds,
    find_function,
    params_read_in_body,
    read_declaration,
    sync_declaration,
)
from engine.mutation.operators import (
    Operator,
    delete_statement,
    duplicate_statement,
    insert_term,
    negate,
    perturb_constant,
    remember,
    swap_operator,
    unwrap,
    wrap,
)
from engine.mutation.liveness import remove_dead_assignments
from engine.mutation.validate import candidate_problems, signature
from engine.mutation.workspace import Workspace

__all__ = [
    "DEFAULT_BOUNDS",
    "PARAMS_ARGUMENT",
    "PARAMS_NAME",
    "Bounds",
    "Operator",
    "Workspace",
    "candidate_problems",
    "crossover_expression",
    "crossover_statement",
    "delete_statement",
    "duplicate_statement",
    "find_function",
    "insert_term",
    "negate",
    "params_read_in_body",
    "perturb_constant",
    "read_declaration",
    "remember",
    "remove_dead_assignments",
    "signature",
    "swap_operator",
    "sync_declaration",
    "unwrap",
    "wrap",
]
