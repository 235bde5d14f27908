"""`ProgramDatabase`: the engine's program database: store every evaluated program, draw prompt examples.

A run opens one database, registers the seed once, then repeats: `sample()` a prompt's examples,
let a proposer write a candidate, skip it if `find_duplicate` knows it (then `count_duplicate`),
evaluate it, `register()` it. Every registration is one committed transaction; reopening the database
rebuilds the islands exactly from the stored rows and island events.
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from islands.analysis import SourceAnalyser
from islands.config import IslandsConfig
from islands.errors import IslandsError
from islands.events import EventKind, IslandEvent
from islands.meta import RunMeta, describe_mismatch, meta_from_strings, meta_to_strings
from islands.pareto import pareto_front_ids
from islands.population import Population
from islands.program import Candidate, Program
from islands.records import SEED_ISLAND_ID, MemberRule, program_from_candidate
from islands.sampling import Member
from islands.sqlite_store import SqliteStore
from islands.store import MemoryStore, ProgramStore, ProgramSummary, summary_of

__all__ = ["ProgramDatabase", "PromptSample", "SEED_ISLAND_ID"]

_PROGRAM_CACHE_SIZE = 8192  # programs kept in memory for prompts (about 2 kB each)

@dataclass(frozen=True, slots=True)
class PromptSample:
    """Programs drawn for one prompt.

    Attributes:
        island_id: the island they come from; the candidate written from them is registered there.
        programs: the programs, by ascending cluster score (best last); the same program may appear twice.
    """

    island_id: int
    programs: tuple[Program, ...]


class ProgramDatabase:
    """Programs of one run, organised in islands. Create it with `open` (or `open_readonly` to read a live run).

    Only one process writes to a database file at a time; call a database object from one thread at a time.
    """

    def __init__(
        self,
        store: ProgramStore,
        config: IslandsConfig,
        meta: RunMeta,
        seed: int = 0,
        *,
        where: str = "<memory>",
        readonly: bool = False,
    ) -> None:
        """Rebuilds the islands from what `store` holds; use `open`, which also checks and writes metadata."""
        self._store = store
        self._config = config
        self._meta = meta
        self._where = where
        self._readonly = readonly
        self._closed = False
        self._broken = ""
        self._analyse = SourceAnalyser(meta.function_name)
        self._member_rule = MemberRule(config)
        self._population = Population(config)
        self._next_id = 1
        self._num_evaluations = 0
        self._seed_id: int | None = None
        self._outcomes: Counter[str] = Counter()
        self._tokens = 0
        self._cost_usd = 0.0
        self._duplicates = [0] * config.num_islands
        self._duplicate_tokens = 0
        self._duplicate_cost_usd = 0.0
        self._num_resets = 0
        self._num_migrations = 0
        self._successful: dict[int, tuple[float, int, int]] = {}  # id -> (score, num_params, ast_size)
        self._first_with_hash: dict[str, int] = {}  # canonical hash -> id of the first program that had it
        # Clocks. Run time counts only while a writer has the database open ("open" events start sessions).
        self._session_start: float | None = None
        self._active_before_s = 0.0  # run time of the sessions before the current one
        self._last_time = 0.0
        self._active_at_last_reset_s = 0.0
        self._evaluations_at_last_reset = 0
        self._evaluations_at_last_migration = 0
        self._island_events: list[IslandEvent] = []  # resets and migrations, for reports
        self._program_cache: OrderedDict[int, Program] = OrderedDict()
        self._replay(*store.load())
        self._rng = np.random.default_rng([seed, self._num_evaluations])

    # ----------------------------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, path: Path | None, config: IslandsConfig, meta: RunMeta, seed: int = 0) -> ProgramDatabase:
        """Opens (or creates) the database of a run for writing; `path` None keeps it in memory.

        Reopening a database made for another task, task version, data or islands settings raises
        IslandsError saying what differs.

        Args:
            path: the SQLite file (its folder is created), or None for an in-memory store.
            config: the islands settings.
            meta: what the run is about.
            seed: seed of the random draws (prompt examples, resets); a reopened run continues with
                draws seeded by (seed, evaluations so far).
        """
        store: ProgramStore = MemoryStore() if path is None else SqliteStore(Path(path))
        where = "<memory>" if path is None else str(path)
        try:
            stored = store.read_meta()
            if "task_name" in stored:
                problem = describe_mismatch(where, stored, meta, config)
                if problem:
                    raise IslandsError(problem)
            else:
                store.write_meta({**meta_to_strings(meta, config), "created_at": repr(time.time()), "seed": str(seed)})
            database = cls(store, config, meta, seed, where=where)
            database._add_event("open", ())
        except BaseException:
            store.close()
            raise
        return database

    @classmethod
    def open_to_annotate(cls, path: Path) -> ProgramDatabase:
        """Opens a run's database file to store what was learned about its programs after the run (verifications).

        It takes the writer's lock, so that only one process writes the file: while a run writes to it, this
        raises IslandsError saying so. Nothing is recorded about the opening itself.
        """
        store = SqliteStore(Path(path))
        try:
            stored = store.read_meta()
            if "task_name" not in stored:
                raise IslandsError(f"{path} holds no run yet (no task metadata)")
            meta, config = meta_from_strings(stored)
            return cls(store, config, meta, int(stored.get("seed", "0")), where=str(path))
        except BaseException:
            store.close()
            raise

    @classmethod
    def open_readonly(cls, path: Path) -> ProgramDatabase:
        """Opens a database file for reading only, e.g. while a run writes to it (reads see the last commit).

        Methods that write raise IslandsError; best, get, stats, pareto_front, all_programs and meta work.
        """
        store = SqliteStore(Path(path), readonly=True)
        try:
            stored = store.read_meta()
            if "task_name" not in stored:
                raise IslandsError(f"{path} holds no run yet (no task metadata); wait until the run has started")
            meta, config = meta_from_strings(stored)
            return cls(store, config, meta, int(stored.get("seed", "0")), where=str(path), readonly=True)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        """Closes the store; the database cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            self._store.close()

    def __enter__(self) -> ProgramDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def meta(self) -> RunMeta:
        """What the run is about."""
        return self._meta

    @property
    def config(self) -> IslandsConfig:
        """The islands settings."""
        return self._config

    @property
    def seed_id(self) -> int | None:
        """The stored seed's program id, or None before `register_seed`."""
        return self._seed_id

    @property
    def num_evaluations(self) -> int:
        """Candidates registered with `register` (failed ones included; the seed and skipped duplicates not)."""
        return self._num_evaluations

    # ----------------------------------------------------------------------------------------------- writing

    def register_seed(self, candidate: Candidate) -> Program:
        """Stores the seed and registers it on every island; on a reopened run returns the stored seed.

        Raises IslandsError when the seed failed (the search needs a seed that runs and scores), or when
        the database already holds a different seed.
        """
        self._check_writable()
        if self._seed_id is not None:
            stored = self.get(self._seed_id)
            if stored.canonical_hash != self._analyse(candidate.source).canonical_hash:
                raise IslandsError(
                    f"database {self._where} holds a different seed (program {stored.id}); this run's seed "
                    "differs from it in more than formatting. Use another --db path."
                )
            return stored
        program = self._make_program(candidate, SEED_ISLAND_ID)
        if self._member(summary_of(program)) is None:
            error = candidate.error or "no error text"
            raise IslandsError(
                f"the seed failed (outcome {candidate.outcome}, score {candidate.score}): {error}. "
                "The search starts from a seed that runs and gets a finite score; fix the seed first."
            )
        self._consume(summary_of(program))
        self._commit(program, ())
        self._remember(program)
        return program

    def register(self, candidate: Candidate) -> Program:
        """Stores an evaluated candidate (always) and adds it to island `candidate.island_id` if it succeeded.

        Then, with reset "periodic", resets the weaker half of the islands when a reset period has passed;
        with reset "migration", migrates programs along the ring when the migration interval has passed.
        """
        self._check_writable()
        if not 0 <= candidate.island_id < self._config.num_islands:
            raise IslandsError(
                f"candidate.island_id is {candidate.island_id}; expected 0..{self._config.num_islands - 1}, "
                "the island_id of the PromptSample it was written from"
            )
        program = self._make_program(candidate, candidate.island_id)
        self._consume(summary_of(program))
        events = []
        if self._config.reset == "periodic" and self._reset_due(program.created_at):
            emptied, founders = self._population.plan_reset(self._rng)
            if emptied:  # a single island has no weaker half
                events.append(self._event("reset", emptied, founders, program.created_at))
        if self._config.reset == "migration" and (
            self._num_evaluations - self._evaluations_at_last_migration >= self._config.migration_interval_evaluations
        ):
            events.append(self._event("migration", (), self._population.plan_migration(), program.created_at))
        for event in events:
            self._consume_event(event)
        self._commit(program, events)
        if program.id in self._successful:
            self._remember(program)  # it may be drawn for a prompt soon
        return program

    def count_duplicate(self, island_id: int, tokens: int = 0, cost_usd: float = 0.0) -> None:
        """Counts (and stores) one candidate from a prompt of `island_id` that was skipped as a duplicate.

        `tokens` and `cost_usd` are what its answer cost; they count in `stats()` like an evaluated one's.
        """
        self._check_writable()
        if not 0 <= island_id < self._config.num_islands:
            raise IslandsError(f"island_id is {island_id}; expected 0..{self._config.num_islands - 1}")
        event = replace(self._event("duplicate", (island_id,), (), time.time()), tokens=int(tokens),
                        cost_usd=float(cost_usd))
        self._consume_event(event)
        self._commit(None, (event,))

    # ----------------------------------------------------------------------------------------------- reading

    def sample(self) -> PromptSample:
        """Draws an island uniformly, then programs from it for one prompt (see IslandsConfig)."""
        self._check_open()
        island_id = int(self._rng.integers(self._config.num_islands))
        island = self._population.islands[island_id]
        if not island.clusters:
            raise IslandsError(
                f"island {island_id} holds no successful program; register a seed that succeeds before sampling"
            )
        drawn = island.sample(self._rng, self._config.functions_per_prompt, self._config.length_normalisation)
        return PromptSample(island_id, tuple(self._cached(program_id) for program_id, _ in drawn))

    def find_duplicate(self, source: str) -> Program | None:
        """Returns the first stored program with the same canonical form as `source`, or None.

        Always None when the config's reject_duplicates is false.
        """
        self._check_open()
        if not self._config.reject_duplicates:
            return None
        program_id = self._first_with_hash.get(self._analyse(source).canonical_hash)
        return None if program_id is None else self.get(program_id)

    def get(self, program_id: int) -> Program:
        """Returns a stored program; raises IslandsError when there is none with this id."""
        self._check_open()
        program = self._program_cache.get(program_id) or self._store.get(program_id)
        if program is None:
            raise IslandsError(
                f"no program with id {program_id} in {self._where}; stored ids run from 1 to {self._next_id - 1}"
            )
        return program

    def best(self, n: int = 10) -> list[Program]:
        """Returns up to `n` successful programs by descending score (ties: earlier first)."""
        top = heapq.nlargest(n, self._successful.items(), key=lambda item: (item[1][0], -item[0]))
        return [self.get(program_id) for program_id, _ in top]

    def pareto_front(self) -> list[Program]:
        """Returns the successful programs not dominated in (score higher, num_params lower, ast_size lower)."""
        points = [(pid, score, params, size) for pid, (score, params, size) in self._successful.items()]
        return [self.get(program_id) for program_id in pareto_front_ids(points)]

    def all_programs(self) -> Iterator[Program]:
        """Yields every stored program (the seed and failed ones included) in id order."""
        self._check_open()
        return self._store.programs()

    def save_verification(self, program_id: int, record: dict[str, Any]) -> None:
        """Stores a verification of a stored program (`discover verify`); non-finite numbers are stored as null."""
        self._check_writable()
        self.get(program_id)
        self._store.add_verification(program_id, json.dumps(_plain(record)))

    def verifications(self) -> dict[int, dict[str, Any]]:
        """Returns program id -> its latest verification record."""
        self._check_open()
        return {program_id: json.loads(record) for program_id, record in self._store.verifications().items()}

    def island_events(self) -> list[IslandEvent]:
        """Returns the resets and migrations so far, oldest first (time, evaluation count, islands, moves)."""
        return list(self._island_events)

    def island_snapshot(self) -> list[dict[str, Any]]:
        """Returns each island's state as plain data: programs registered, temperature, best, clusters."""
        return self._population.snapshot()

    def stats(self) -> dict[str, Any]:
        """Returns the run's numbers for progress displays and reports.

        Keys: programs (stored, seed included), evaluations, outcomes {outcome: count}, duplicates,
        duplicates_per_island, seed_score, best_score, best_program_id, run_time_s (time a writer had the
        database open, up to the last write), evaluations_per_s (evaluations / run_time_s), tokens and cost_usd
        (every answer paid for, skipped duplicates included), duplicate_tokens and duplicate_cost_usd (their share),
        resets, migrations, evaluations_since_reset, evaluations_since_migration, and islands: one dict per
        island with island_id, best_score (held-out score of its best program), best_program_id,
        num_programs (registered since it was last emptied), num_clusters, temperature.
        """
        best = max(self._successful.items(), key=lambda item: (item[1][0], -item[0]), default=None)
        run_time_s = self._run_time_s(self._last_time)
        seed_score = self._successful[self._seed_id][0] if self._seed_id in self._successful else None
        islands = []
        for island in self._population.islands:
            best_id = island.best_program_id
            islands.append(
                {
                    "island_id": island.island_id,
                    "best_score": None if best_id is None else self._successful[best_id][0],
                    "best_program_id": best_id,
                    "num_programs": island.num_programs,
                    "num_clusters": len(island.clusters),
                    "temperature": island.temperature,
                }
            )
        return {
            "programs": self._next_id - 1,
            "evaluations": self._num_evaluations,
            "outcomes": dict(self._outcomes),
            "duplicates": sum(self._duplicates),
            "duplicates_per_island": list(self._duplicates),
            "seed_score": seed_score,
            "best_score": None if best is None else best[1][0],
            "best_program_id": None if best is None else best[0],
            "run_time_s": run_time_s,
            "evaluations_per_s": self._num_evaluations / run_time_s if run_time_s > 0 else 0.0,
            "tokens": self._tokens,
            "cost_usd": self._cost_usd,
            "duplicate_tokens": self._duplicate_tokens,
            "duplicate_cost_usd": self._duplicate_cost_usd,
            "resets": self._num_resets,
            "migrations": self._num_migrations,
            "evaluations_since_reset": self._num_evaluations - self._evaluations_at_last_reset,
            "evaluations_since_migration": self._num_evaluations - self._evaluations_at_last_migration,
            "islands": islands,
        }

    # ----------------------------------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise IslandsError(f"database {self._where} is closed; open it again to use it")

    def _check_writable(self) -> None:
        self._check_open()
        if self._readonly:
            raise IslandsError(f"database {self._where} was opened read-only; only the run's engine writes to it")
        if self._broken:
            raise IslandsError(
                f"database {self._where} could not store a write ({self._broken}); the islands in memory may be "
                "ahead of the file. Close it and open it again to continue from what was stored."
            )

    def _make_program(self, candidate: Candidate, island_id: int) -> Program:
        facts = self._analyse(candidate.source)
        return program_from_candidate(candidate, self._next_id, island_id, facts, created_at=time.time())

    def _member(self, summary: ProgramSummary) -> Member | None:
        return self._member_rule(summary)

    def _consume(self, summary: ProgramSummary) -> None:
        """Accounts for one stored program: counters, clocks and islands (used live and when replaying)."""
        self._next_id = summary.id + 1
        self._first_with_hash.setdefault(summary.canonical_hash, summary.id)
        self._outcomes[summary.outcome] += 1
        self._tokens += summary.tokens
        self._cost_usd += summary.cost_usd
        if self._session_start is None:
            self._session_start = summary.created_at
        self._last_time = max(self._last_time, summary.created_at)
        member = self._member(summary)
        if summary.island_id == SEED_ISLAND_ID:
            self._seed_id = summary.id
        else:
            self._num_evaluations += 1
        if member is not None:
            score = float(summary.score)  # type: ignore[arg-type]  # a member's score is finite
            self._successful[summary.id] = (score, summary.num_params, summary.ast_size)
            if summary.island_id == SEED_ISLAND_ID:
                self._population.register_everywhere(member)
            else:
                self._population.register(member, summary.island_id)

    def _consume_event(self, event: IslandEvent) -> None:
        if event.kind == "open":
            if self._session_start is not None:
                self._active_before_s += max(0.0, self._last_time - self._session_start)
            self._session_start = event.created_at
        elif event.kind == "reset":
            self._island_events.append(event)
            self._population.apply(event)
            self._num_resets += 1
            self._active_at_last_reset_s = self._run_time_s(event.created_at)
            self._evaluations_at_last_reset = event.evaluation_count
        elif event.kind == "migration":
            self._island_events.append(event)
            self._population.apply(event)
            self._num_migrations += 1
            self._evaluations_at_last_migration = event.evaluation_count
        elif event.kind == "duplicate":
            self._duplicates[event.island_ids[0]] += 1
            self._tokens += event.tokens
            self._cost_usd += event.cost_usd
            self._duplicate_tokens += event.tokens
            self._duplicate_cost_usd += event.cost_usd
        self._last_time = max(self._last_time, event.created_at)

    def _replay(self, summaries: Sequence[ProgramSummary], events: Sequence[IslandEvent]) -> None:
        """Rebuilds all state from stored programs and events, in the order they were written."""
        pending = iter(events)
        event = next(pending, None)
        for summary in summaries:
            while event is not None and event.after_program_id < summary.id:
                self._consume_event(event)
                event = next(pending, None)
            self._consume(summary)
        while event is not None:
            self._consume_event(event)
            event = next(pending, None)

    def _run_time_s(self, now: float) -> float:
        """Seconds a writer has had the database open, up to `now`, not counting time between sessions."""
        if self._session_start is None:
            return 0.0
        return self._active_before_s + max(0.0, now - self._session_start)

    def _reset_due(self, now: float) -> bool:
        by_count = self._config.reset_period_evaluations
        if by_count is not None and self._num_evaluations - self._evaluations_at_last_reset >= by_count:
            return True
        by_time = self._config.reset_period_s
        return by_time is not None and self._run_time_s(now) - self._active_at_last_reset_s > by_time

    def _event(
        self, kind: EventKind, island_ids: Sequence[int], moves: Sequence[tuple[int, int]], now: float
    ) -> IslandEvent:
        return IslandEvent(
            kind=kind,
            created_at=now,
            evaluation_count=self._num_evaluations,
            after_program_id=self._next_id - 1,
            island_ids=tuple(island_ids),
            moves=tuple(moves),
        )

    def _add_event(self, kind: EventKind, island_ids: Sequence[int]) -> None:
        event = self._event(kind, island_ids, (), time.time())
        self._consume_event(event)
        self._commit(None, (event,))

    def _commit(self, program: Program | None, events: Sequence[IslandEvent]) -> None:
        try:
            self._store.add(program, events)
        except (IslandsError, SQLAlchemyError, OSError) as error:
            self._broken = str(error).splitlines()[0]
            raise IslandsError(
                f"could not store a program in {self._where}: {self._broken}. "
                "Close the database and open it again to continue from what was stored."
            ) from error

    def _cached(self, program_id: int) -> Program:
        program = self._program_cache.get(program_id)
        if program is not None:
            self._program_cache.move_to_end(program_id)
            return program
        program = self.get(program_id)
        self._remember(program)
        return program

    def _remember(self, program: Program) -> None:
        """Keeps a program in the bounded cache of programs that prompts may show."""
        self._program_cache[program.id] = program
        if len(self._program_cache) > _PROGRAM_CACHE_SIZE:
            self._program_cache.popitem(last=False)


def _plain(value: Any) -> Any:
    """JSON cannot hold NaN/inf; they become None so readers never see invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
