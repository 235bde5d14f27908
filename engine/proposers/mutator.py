"""The LLM-free proposer: genetic-programming mutation and crossover of the prompt's programs.

Each proposal picks a parent among the shots (mostly the best, which comes last), applies one to three
operators from `engine.mutation` to its evolved function, removes the assignments nothing reads any more
(`engine.mutation.remove_dead_assignments`), re-declares PARAMS to match what the body reads, and checks the
result with `engine.mutation.candidate_problems`. It never executes code.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.mutation import (
    Operator,
    Workspace,
    candidate_problems,
    crossover_expression,
    crossover_statement,
    delete_statement,
    duplicate_statement,
    find_function,
    insert_term,
    negate,
    perturb_constant,
    remember,
    remove_dead_assignments,
    signature,
    swap_operator,
    sync_declaration,
    unwrap,
    wrap,
)
from engine.mutation.declarations import contract_docstring
from engine.mutation.shapes import Shape, result_shapes, shape_changes
from engine.mutation.sites import FunctionFacts, analyse
from engine.proposers.base import PromptContext, Proposal
from islands.candidate_model import CandidateModel

PROPOSER_NAME = "mutator"

OPERATORS: dict[str, Operator] = {
    "perturb_constant": perturb_constant,
    "swap_operator": swap_operator,
    "negate": negate,
    "wrap": wrap,
    "unwrap": unwrap,
    "insert_term": insert_term,
    "remember": remember,
    "delete_statement": delete_statement,
    "duplicate_statement": duplicate_statement,
    "crossover_statement": crossover_statement,
    "crossover_expression": crossover_expression,
}
DEFAULT_OPERATOR_WEIGHTS: dict[str, float] = {
    "perturb_constant": 0.15,
    "swap_operator": 0.10,
    "negate": 0.03,
    "wrap": 0.12,
    "unwrap": 0.06,
    "insert_term": 0.18,
    "remember": 0.04,
    "delete_statement": 0.06,
    "duplicate_statement": 0.06,
    "crossover_statement": 0.10,
    "crossover_expression": 0.10,
}
# How many operators one proposal composes, and how often.
OPERATOR_COUNTS = (1, 2, 3)
OPERATOR_COUNT_WEIGHTS = (0.5, 0.3, 0.2)
DEFAULT_PRIMITIVES = ("jnp.exp", "jnp.tanh", "jax.nn.sigmoid", "jnp.log1p")
PARSED_CACHE_SIZE = 2048


@dataclass(frozen=True, slots=True)
class Mutation:
    """One mutant with its provenance.

    Attributes:
        source: the mutant module's source ("" when none could be made).
        parent_id: program id of the shot it came from (-1 when none).
        notes: what each operator did, in order, e.g. ("wrapped in jnp.tanh", "constant 0.5 -> 0.61").
        error: why no mutant could be made ("" on success).
    """

    source: str
    parent_id: int = -1
    notes: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A valid parent program, parsed once and cached by source; never mutated (operators work on a fresh parse)."""

    source: str
    canonical: str  # ast.unparse of the parsed source, to tell whether a mutant differs
    module: ast.Module
    function: ast.FunctionDef
    shapes: dict[str, Shape]  # of its names and returned values, which a mutant must keep


@dataclass(frozen=True, slots=True)
class _Parent:
    program_id: int
    parsed: _Parsed


class MutationProposer:
    """Proposes candidates by mutating and crossing over the prompt's programs, without an LLM.

    Deterministic given its `seed` and `context.seed`.

    Args:
        seed: mixed into every proposal's random stream.
        operator_weights: relative frequency of each operator (names as in `OPERATORS`); missing ones are 0.
        best_parent_probability: chance that the parent is the best shot; otherwise another shot is.
        max_attempts: proposals retried when a mutant is unchanged or invalid before giving up.
        default_primitives: wrappers used when the task declares none in `context.primitives`.
    """

    name = PROPOSER_NAME

    def __init__(
        self,
        seed: int = 0,
        *,
        operator_weights: Mapping[str, float] | None = None,
        best_parent_probability: float = 0.7,
        max_attempts: int = 8,
        default_primitives: Sequence[str] = DEFAULT_PRIMITIVES,
    ) -> None:
        weights = dict(DEFAULT_OPERATOR_WEIGHTS if operator_weights is None else operator_weights)
        unknown = sorted(set(weights) - set(OPERATORS))
        if unknown:
            raise ValueError(
                f"operator_weights names unknown operators {unknown}; expected some of {sorted(OPERATORS)}."
            )
        if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"operator_weights must be non-negative with a positive sum; got {weights}.")
        if not 0.0 <= best_parent_probability <= 1.0:
            raise ValueError(f"best_parent_probability must be in [0, 1]; got {best_parent_probability}.")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1; got {max_attempts}.")
        self.seed = seed
        self._operator_names = [name for name, weight in weights.items() if weight > 0]
        self._operator_weights = [weights[name] for name in self._operator_names]
        self.best_parent_probability = best_parent_probability
        self.max_attempts = max_attempts
        self.default_primitives = tuple(default_primitives)
        # Parsed parents keyed by (function name, source); a string says why a source cannot be a parent.
        self._parsed: dict[tuple[str, str], _Parsed | str] = {}
        self._donor_facts: dict[int, FunctionFacts] = {}  # keyed by id() of a cached module

    answers_per_request = 1

    async def propose(self, context: PromptContext) -> list[Proposal]:
        """Returns a mutant of one of `context.shots`, or a Proposal with `error` set when none could be made."""
        mutation = self.mutate(context)
        parent_ids = (mutation.parent_id,) if mutation.parent_id >= 0 else None
        return [Proposal(source=mutation.source, proposer=PROPOSER_NAME, error=mutation.error, parent_ids=parent_ids)]

    async def aclose(self) -> None:
        """Nothing to release: the mutator holds no connection."""

    def mutate(self, context: PromptContext) -> Mutation:
        """Returns a mutant with its parent and the operators applied (synchronous; a proposal takes ~1 ms)."""
        rng = random.Random(f"{PROPOSER_NAME}:{self.seed}:{context.seed}")
        parents, skipped = self._parents(context)
        if not parents:
            reason = "; ".join(skipped) if skipped else "the prompt has no shots"
            return Mutation(source="", error=f"no program to mutate: {reason}.")
        primitives = tuple(context.primitives) or self.default_primitives
        last_problem = "every operator left the program unchanged"
        for _ in range(self.max_attempts):
            parent = parents[-1]
            if len(parents) > 1 and rng.random() >= self.best_parent_probability:
                parent = rng.choice(parents[:-1])
            module = ast.parse(parent.parsed.source)
            function = find_function(module, context.function_name)
            assert function is not None  # checked in _parents
            donors = [
                (other.parsed.module, other.parsed.function)
                for other in parents
                if other.parsed.canonical != parent.parsed.canonical
            ]
            workspace = Workspace(module, function, primitives, donors, rng, donor_facts=self._donor_facts)
            # An argument that any shot uses as an index (e.g. `choice`) is an integer in every shot.
            arguments = {a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs}
            for donor_module, donor_function in donors:
                workspace.int_names |= workspace.facts_of_donor(donor_module, donor_function).int_names & arguments
            notes = self._apply_operators(workspace, rng)
            if not notes:
                continue
            dead = remove_dead_assignments(function)
            if dead:
                workspace.touch()
                notes.append(f"removed {len(dead)} dead assignment{'s' if len(dead) > 1 else ''}")
            changed = shape_changes(parent.parsed.shapes, result_shapes(function, workspace.facts().name_shapes))
            if changed:
                last_problem = f"shapes changed ({'; '.join(changed)}) after {', '.join(notes)}"
                continue
            sync_declaration(function, workspace.known_bounds)
            source = ast.unparse(module) + "\n"
            if source == parent.parsed.canonical:
                continue
            problems = candidate_problems(source, context.function_name, signature(function))
            if problems:
                last_problem = f"{'; '.join(problems)} after {', '.join(notes)}"
                continue
            if _drop_model_description(function):  # "Seed model: ..." no longer describes the mutant
                source = ast.unparse(module) + "\n"
            return Mutation(source=source, parent_id=parent.program_id, notes=tuple(notes))
        return Mutation(
            source="",
            parent_id=parents[-1].program_id,
            error=f"no valid mutant after {self.max_attempts} attempts; last problem: {last_problem}.",
        )

    def _apply_operators(self, workspace: Workspace, rng: random.Random) -> list[str]:
        count = rng.choices(OPERATOR_COUNTS, OPERATOR_COUNT_WEIGHTS)[0]
        notes: list[str] = []
        for _ in range(4 * count):
            if len(notes) == count:
                break
            name = rng.choices(self._operator_names, self._operator_weights)[0]
            note = OPERATORS[name](workspace, None)
            if note is not None:
                workspace.touch()
                notes.append(note)
        return notes

    def _parents(self, context: PromptContext) -> tuple[list[_Parent], list[str]]:
        """Returns the shots that can be mutated (best last) and why the others cannot."""
        parents: list[_Parent] = []
        skipped: list[str] = []
        for shot in context.shots:
            key = (context.function_name, shot.source)
            if key not in self._parsed:
                if len(self._parsed) >= PARSED_CACHE_SIZE:
                    self._parsed.clear()
                    self._donor_facts.clear()
                self._parsed[key] = _parse_parent(shot.source, context.function_name)
            parsed = self._parsed[key]
            if isinstance(parsed, str):
                skipped.append(f"program {shot.program_id} {parsed}")
            else:
                parents.append(_Parent(shot.program_id, parsed))
        return parents, skipped


def _parse_parent(source: str, function_name: str) -> _Parsed | str:
    """Returns the parsed parent, or why it cannot be one."""
    model = CandidateModel.parse(source, function_name)
    if model.module is None or model.function is None:
        return model.problem.rstrip(".")
    if model.bounds is None:
        return (
            f"has a function {function_name!r} that does not start with a literal "
            'PARAMS = {"name": (low, high)} dict'
        )
    module, function = model.module, model.function
    shapes = result_shapes(function, analyse(function, module).name_shapes)
    return _Parsed(source, ast.unparse(module) + "\n", module, function, shapes)


__all__ = ["DEFAULT_OPERATOR_WEIGHTS", "DEFAULT_PRIMITIVES", "OPERATORS", "MutationProposer", "Mutation"]


def _drop_model_description(function: ast.FunctionDef) -> bool:
    """Cuts the paragraphs after the docstring's Args/Returns sections (`contract_docstring`); returns whether
    it changed anything."""
    first = function.body[0] if function.body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)):
        return False
    trimmed = contract_docstring(first.value.value)
    if trimmed == first.value.value:
        return False
    first.value.value = trimmed
    return True
