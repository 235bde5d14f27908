"""Island events: resets, migrations, skipped duplicates and the opening of a run, as stored for replay and reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["IslandEvent", "EventKind"]

EventKind = Literal["open", "reset", "migration", "duplicate"]


@dataclass(frozen=True, slots=True)
class IslandEvent:
    """Something that changed the islands (or was counted) other than registering a new program.

    Attributes:
        kind: "open" (a writer opened the database), "reset" (islands emptied and reseeded),
            "migration" (programs copied along the ring), "duplicate" (a candidate skipped as a duplicate).
        created_at: unix time in seconds.
        evaluation_count: evaluations stored when it happened.
        after_program_id: the id of the last program stored before it (0 when none).
        island_ids: reset: the islands emptied; duplicate: the island whose prompt produced it; else empty.
        moves: (program id, island id) registrations made by the event, in order: a reset's founders,
            a migration's migrants.
        tokens: a duplicate's LLM tokens (prompt + completion), paid for though it was not evaluated.
        cost_usd: a duplicate's price in US dollars.
        id: its id in the store (0 before it is stored).
    """

    kind: EventKind
    created_at: float
    evaluation_count: int
    after_program_id: int
    island_ids: tuple[int, ...] = ()
    moves: tuple[tuple[int, int], ...] = ()
    tokens: int = 0
    cost_usd: float = 0.0
    id: int = 0
