"""Where programs, island events and run metadata are kept: the `ProgramStore` seam and its in-memory twin."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Protocol, Sequence

from islands.errors import IslandsError
from islands.events import IslandEvent
from islands.program import Program

__all__ = ["ProgramStore", "MemoryStore", "ProgramSummary", "summary_of"]


@dataclass(frozen=True, slots=True)
class ProgramSummary:
    """The columns of a stored program needed to rebuild the islands and the run's statistics (no source text)."""

    id: int
    island_id: int
    outcome: str
    score: float | None
    scores_per_test: Mapping[str, float]
    behaviour: tuple[float, ...] | None
    source_length: int
    num_params: int
    ast_size: int
    created_at: float
    tokens: int
    cost_usd: float
    canonical_hash: str


def summary_of(program: Program) -> ProgramSummary:
    """Returns the summary of a stored program."""
    return ProgramSummary(
        id=program.id,
        island_id=program.island_id,
        outcome=program.outcome,
        score=program.score,
        scores_per_test=program.scores_per_test,
        behaviour=program.behaviour,
        source_length=len(program.source),
        num_params=program.num_params,
        ast_size=program.ast_size,
        created_at=program.created_at,
        tokens=program.tokens,
        cost_usd=program.cost_usd,
        canonical_hash=program.canonical_hash,
    )


class ProgramStore(Protocol):
    """Durable home of programs (ids assigned by the caller, ascending), island events and run metadata.

    `add` writes one program and the events it caused in one transaction. A minimal implementation is
    `MemoryStore` below; `SqliteStore` keeps the same data in a SQLite file.
    """

    def read_meta(self) -> dict[str, str]: ...

    def write_meta(self, values: Mapping[str, str]) -> None: ...

    def add(self, program: Program | None, events: Sequence[IslandEvent] = ()) -> None: ...

    def get(self, program_id: int) -> Program | None: ...

    def load(self) -> tuple[list[ProgramSummary], list[IslandEvent]]: ...

    def programs(self) -> Iterator[Program]: ...

    def add_verification(self, program_id: int, record: str) -> None: ...

    def verifications(self) -> dict[int, str]: ...

    def close(self) -> None: ...


class MemoryStore:
    """A `ProgramStore` in a process's memory: for tests and runs that need no file."""

    def __init__(self) -> None:
        self._meta: dict[str, str] = {}
        self._programs: dict[int, Program] = {}
        self._events: list[IslandEvent] = []
        self._verifications: dict[int, str] = {}

    def read_meta(self) -> dict[str, str]:
        return dict(self._meta)

    def write_meta(self, values: Mapping[str, str]) -> None:
        self._meta.update(values)

    def add(self, program: Program | None, events: Sequence[IslandEvent] = ()) -> None:
        if program is not None:
            if program.id in self._programs:
                raise IslandsError(f"program id {program.id} is already stored; ids must be new")
            self._programs[program.id] = program
        for event in events:
            self._events.append(_with_id(event, len(self._events) + 1))

    def get(self, program_id: int) -> Program | None:
        return self._programs.get(program_id)

    def load(self) -> tuple[list[ProgramSummary], list[IslandEvent]]:
        return [summary_of(self._programs[i]) for i in sorted(self._programs)], list(self._events)

    def programs(self) -> Iterator[Program]:
        for program_id in sorted(self._programs):
            yield self._programs[program_id]

    def add_verification(self, program_id: int, record: str) -> None:
        self._verifications[program_id] = record

    def verifications(self) -> dict[int, str]:
        return dict(self._verifications)

    def close(self) -> None:
        pass


def _with_id(event: IslandEvent, event_id: int) -> IslandEvent:
    return replace(event, id=event_id)
