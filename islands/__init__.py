"""The program database: evaluated programs in islands and clusters, persisted in SQLite (FunSearch-style)."""

from islands.canonical import canonical_hash
from islands.complexity import Complexity, complexity
from islands.config import IslandsConfig
from islands.database import ProgramDatabase, PromptSample
from islands.errors import IslandsError
from islands.events import IslandEvent
from islands.meta import RunMeta
from islands.program import Candidate, Program
from islands.records import SEED_ISLAND_ID
from islands.sqlite_store import SqliteStore
from islands.store import MemoryStore, ProgramStore
from islands.verifications import load_verifications, save_verification

__all__ = [
    "Candidate",
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
    "load_verifications",
    "save_verification",
    "complexity",
]
