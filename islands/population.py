"""All islands of a run: registering programs, and the resets and migrations that move programs between islands.

Resets and migrations are planned with random numbers but stored as plain events (which islands were emptied,
which program went where), so that reopening a database replays them exactly without drawing again.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from islands.config import IslandsConfig
from islands.events import IslandEvent
from islands.sampling import Island, Member

__all__ = ["Population"]


class Population:
    """The islands of one run and the members (successful programs) they may hold."""

    def __init__(self, config: IslandsConfig) -> None:
        self.config = config
        self.islands = [self._new_island(i) for i in range(config.num_islands)]
        self.members: dict[int, Member] = {}

    def _new_island(self, island_id: int) -> Island:
        return Island(
            island_id, self.config.cluster_sampling_temperature_init, self.config.cluster_sampling_temperature_period
        )

    def register(self, member: Member, island_id: int) -> None:
        """Registers a successful program on one island."""
        self.members[member.program_id] = member
        self.islands[island_id].register(member)

    def register_everywhere(self, member: Member) -> None:
        """Registers a successful program (the seed) on every island."""
        self.members[member.program_id] = member
        for island in self.islands:
            island.register(member)

    def plan_reset(self, rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
        """Chooses the weaker half of the islands to empty and a founder for each.

        Islands are ranked by their best cluster score plus N(0, 1e-6) noise to break ties; the
        num_islands // 2 lowest are emptied, and each gets the best program of a surviving island drawn
        uniformly at random. Returns (emptied island ids, (founder id, island id) moves).
        """
        best = np.array([island.best_score for island in self.islands], dtype=np.float64)
        order = np.argsort(best + rng.standard_normal(len(best)) * 1e-6, kind="stable")
        num_to_reset = len(self.islands) // 2
        emptied = [int(i) for i in order[:num_to_reset]]
        survivors = [int(i) for i in order[num_to_reset:] if self.islands[int(i)].best_program_id is not None]
        if not emptied or not survivors:
            return (), ()
        moves = []
        for island_id in emptied:
            founder_island = survivors[int(rng.integers(len(survivors)))]
            founder = self.islands[founder_island].best_program_id
            assert founder is not None
            moves.append((founder, island_id))
        return tuple(emptied), tuple(moves)

    def plan_migration(self) -> tuple[tuple[int, int], ...]:
        """Chooses, for each island, its `migration_count` best programs to copy to the next island on the ring.

        Programs the next island already holds are not copied again. Returns (program id, island id) moves.
        """
        count, num_islands = self.config.migration_count, len(self.islands)
        if num_islands < 2:
            return ()
        moves = []
        for island in self.islands:
            target = self.islands[(island.island_id + 1) % num_islands]
            candidates = (pid for pid in island.member_ids if pid not in target.member_ids)
            best = heapq.nlargest(count, candidates, key=lambda pid: (self.members[pid].cluster_score, -pid))
            moves.extend((pid, target.island_id) for pid in best)
        return tuple(moves)

    def apply(self, event: IslandEvent) -> None:
        """Applies a stored reset or migration: empties its islands, then registers its moves."""
        for island_id in event.island_ids if event.kind == "reset" else ():
            self.islands[island_id] = self._new_island(island_id)
        for program_id, island_id in event.moves:
            self.islands[island_id].register(self.members[program_id])

    def snapshot(self) -> list[dict]:
        """Returns each island's state as plain data: counters, best program and clusters (key -> ids)."""
        return [
            {
                "island_id": island.island_id,
                "num_programs": island.num_programs,
                "temperature": island.temperature,
                "best_score": island.best_score if math.isfinite(island.best_score) else None,
                "best_program_id": island.best_program_id,
                "clusters": {
                    repr(key): (cluster.score, tuple(cluster.program_ids())) for key, cluster in island.clusters.items()
                },
            }
            for island in self.islands
        ]
