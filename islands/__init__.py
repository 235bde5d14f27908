"""The program database: evaluated programs in islands and clusters, persisted in SQLite (FunSearch-style).

How the engine uses it:

    db = ProgramDatabase.open(Path("runs/bandit/run.db"), IslandsConfig(), RunMeta("bandit", 1, data_hash))
    db.register_seed(Candidate(seed_source, score=-0.71, scores_per_test={...}))   # a no-op on resume
    while searching:
        prompt = db.sample()                       # island_id, programs by ascending score (best last)
        source = propose(prompt)
        if db.find_duplicate(source) is not None:  # same canonical form as a stored program
            db.count_duplicate(prompt.island_id)
            continue
        db.register(Candidate(source, island_id=prompt.island_id, ...evaluation...))  # one commit
    db.close()

Other processes read a live run with `ProgramDatabase.open_readonly(path)` (best, get, stats, pareto_front).
"""

import importlib
from typing import TYPE_CHECKING, Any

# name -> the submodule that defines it. The submodules load on first use, so that what needs only the candidate
# model (the fitter's ParamSpec in a scoring worker) does not import SQLAlchemy and pydantic.
_HOMES = {
    "canonical_hash": "canonical",
    "CandidateModel": "candidate_model", "Complexity": "candidate_model", "complexity": "candidate_model",
    "IslandsConfig": "config",
    "ProgramDatabase": "database", "PromptSample": "database",
    "IslandsError": "errors",
    "IslandEvent": "events",
    "RunMeta": "meta",
    "Candidate": "program", "Program": "program",
    "SEED_ISLAND_ID": "records",
    "SqliteStore": "sqlite_store",
    "MemoryStore": "store", "ProgramStore": "store",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from islands.candidate_model import CandidateModel, Complexity, complexity
    from islands.canonical import canonical_hash
    from islands.config import IslandsConfig
    from islands.database import ProgramDatabase, PromptSample
    from islands.errors import IslandsError
    from islands.events import IslandEvent
    from islands.meta import RunMeta
    from islands.program import Candidate, Program
    from islands.records import SEED_ISLAND_ID
    from islands.sqlite_store import SqliteStore
    from islands.store import MemoryStore, ProgramStore

__all__ = [
    "Candidate",
    "CandidateModel",
    "Complexity",
    "IslandEvent",
    "IslandsConfig",
    "IslandsError",
    "MemoryStore",
    "Program",
    "ProgramDatabase",
    "ProgramStore",
    "PromptSample",
    "RunMeta",
    "SEED_ISLAND_ID",
    "SqliteStore",
    "canonical_hash",
    "complexity",
]
