"""The proposer seam: what a proposer is shown and what it returns."""

from __future__ import annotations

from collections.abc import Sequence

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Shot:
    """One program shown in a prompt.

    Attributes:
        program_id: its id in the database.
        source: its module source; the evolved function is named `function_name` (e.g. `agent`).
        score: its held-out selection score (higher is better).
        diagnostics: a short text about its evaluation (parameters at bounds, per-split scores, errors).
    """

    program_id: int
    source: str
    score: float
    diagnostics: str = ""


@dataclass(frozen=True, slots=True)
class PromptContext:
    """Everything a proposer needs to write the next candidate.

    Attributes:
        island_id: the island the shots come from.
        function_name: the evolved function, e.g. "agent".
        shots: programs sorted by ascending score (best last); version i is `shots[i]`.
        text: the rendered prompt in versioned best-shot form, ending at the header of
            `{function_name}_v{next_version}`.
        next_version: the version number the proposer must write; `engine.proposers.prompts` is the only
            place that chooses it, and the parser reads it from here.
        primitives: expressions the task allows as wrappers, e.g. ("jnp.exp", "jax.nn.sigmoid").
        seed: a seed for proposers that draw random numbers, so that runs are reproducible.
        chat_system: the rules of the function to write (signature and return contract, PARAMS, imports, JAX
            rules, what the scores mean), for a chat model's system message; "" when the prompt has none.
        chat_user: the task, the programs shown (each once, without docstrings) and the request, for a chat
            model's user message; "" when the prompt has none.
    """

    island_id: int
    function_name: str
    shots: tuple[Shot, ...]
    text: str
    next_version: int
    primitives: tuple[str, ...] = ()
    seed: int = 0
    chat_system: str = ""
    chat_user: str = ""


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed candidate: module source defining `function_name`, or an error when none could be made.

    `parent_ids` names the programs the candidate was made from when the proposer knows (the mutator: the shot
    it mutated); None means all of the prompt's shots, which is all an LLM proposer can say.
    """

    source: str
    proposer: str
    tokens: int = 0
    cost_usd: float = 0.0
    error: str = ""
    parent_ids: tuple[int, ...] | None = None


class Proposer(Protocol):
    """Writes the next candidates from a prompt.

    `propose` returns the proposals of one request: one, or several when one request yields several answers (an
    LLM asked for `samples` > 1); each is evaluated as its own candidate. `answers_per_request` says how many at
    most, so that the loop asks for no more than --max-evals has room for; every answer that comes back is
    evaluated. `aclose` releases what the proposer holds (an SDK's connections) before the run's event loop ends.

    A minimal implementation that proposes the best shot unchanged:

        class Echo:
            answers_per_request = 1

            async def propose(self, context: PromptContext) -> list[Proposal]:
                return [Proposal(source=context.shots[-1].source, proposer="echo")]

            async def aclose(self) -> None:
                pass
    """

    answers_per_request: int

    async def propose(self, context: PromptContext) -> Sequence[Proposal]: ...

    async def aclose(self) -> None: ...
