"""`SqliteStore`: the program store in one SQLite file, in WAL mode so that other processes can read during a run.

Durability: each registered program is committed in its own transaction together with the island events it
caused. The journal is in WAL mode with synchronous=NORMAL: a commit survives the writing process being killed
at any moment; only a power failure or OS crash can lose the last few commits, never corrupt the file.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, inspect, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from islands.errors import IslandsError
from islands.events import IslandEvent
from islands.program import Program
from islands.schema import MIGRATIONS, SCHEMA_VERSION, Base, EventRow, MetaRow, ProgramRow, VerificationRow, upgrade
from islands.store import ProgramSummary

__all__ = ["SqliteStore"]

_PROGRAMS = ProgramRow.__table__
_EVENTS = EventRow.__table__
_META = MetaRow.__table__
_VERIFICATIONS = VerificationRow.__table__
_PROGRAM_SQL = (
    "SELECT id, island_id, source, parent_ids, outcome, score, scores_per_test, error, fitted_params, timings, "
    "extra_scores, behaviour, proposer, tokens, cost_usd, canonical_hash, num_params, ast_size, created_at "
    "FROM programs"
)
_SUMMARY_SQL = (
    "SELECT id, island_id, outcome, score, scores_per_test, behaviour, source_length, num_params, ast_size, "
    "created_at, tokens, cost_usd, canonical_hash FROM programs ORDER BY id"
)


class SqliteStore:
    """A `ProgramStore` in a SQLite file.

    Args:
        path: the database file; created (with its folder) unless `readonly`.
        readonly: open for reading only, e.g. while another process writes.
    """

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise IslandsError(f"no program database at {self.path}; check the --db path")
            self._lock_file = None
        else:
            if self.path.is_dir():
                raise IslandsError(f"{self.path} is a folder; --db takes a database file, e.g. {self.path / 'run.db'}")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise IslandsError(_cannot_write(self.path, error.strerror or str(error))) from None
            self._lock_file = _lock_for_writing(self.path)
        # One connection for the store's life: a transaction per call costs no pool checkout. The lock lets
        # the store be called from several threads of one process.
        self._lock = threading.Lock()
        try:
            try:
                self._connect(immutable=False)
            except DBAPIError as error:
                if not (readonly and _is_write_refusal(error.orig)):
                    raise
                # Read-only media: SQLite reads a WAL database through a -shm file it cannot create there. A file
                # that nobody can write does not change while it is read, so it is read as immutable instead.
                self._release()
                self._check_no_pending_commits()
                self._connect(immutable=True)
        except DBAPIError as error:
            self._release()
            if not readonly and _is_write_refusal(error.orig):
                raise IslandsError(_cannot_write(self.path, str(error.orig))) from error
            raise IslandsError(f"{self.path} is not a readable SQLite database: {error.orig}") from error
        except IslandsError:
            self._release()
            raise

    def _connect(self, *, immutable: bool) -> None:
        self._engine = _make_engine(self.path, self.readonly, immutable=immutable)
        self._connection = self._engine.connect()
        self._connection.commit()
        self._prepare()

    def _check_no_pending_commits(self) -> None:
        """Refuses to read a database as immutable while its last commits wait in a -wal file (they would be missed)."""
        wal = Path(f"{self.path}-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            raise IslandsError(
                f"{self.path} is in a folder that cannot be written and its last commits are still in {wal.name}, "
                f"which SQLite reads only with a {self.path.name}-shm file it cannot create there; copy "
                f"{self.path.name} and {wal.name} to a folder you can write and read the copy"
            )

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction (reads included, so that they see one moment of a run being written)."""
        with self._lock, self._connection.begin():
            yield self._connection

    def _prepare(self) -> None:
        """Creates the tables of a new file, or checks and upgrades the layout of an existing one."""
        with self._transaction() as connection:
            tables = set(inspect(connection).get_table_names())
            if not tables and not self.readonly:
                Base.metadata.create_all(connection)
                connection.execute(insert(_META).values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            if "meta" not in tables or "programs" not in tables:
                raise IslandsError(
                    f"{self.path} is not a program database (tables found: {sorted(tables) or 'none'}). "
                    "Use another --db path."
                )
            found = connection.execute(select(_META.c.value).where(_META.c.key == "schema_version")).scalar()
            version = int(found) if found is not None else 0
            if version > SCHEMA_VERSION:
                raise IslandsError(
                    f"{self.path} has database layout version {version}, newer than this version of discover "
                    f"reads ({SCHEMA_VERSION}). Upgrade discover."
                )
            if version < SCHEMA_VERSION:
                if self.readonly:
                    raise IslandsError(
                        f"{self.path} has the old database layout version {version}; open it once for writing "
                        f"(resume the run) to upgrade it to version {SCHEMA_VERSION}."
                    )
                assert all(v in MIGRATIONS for v in range(version, SCHEMA_VERSION))
                upgrade(connection, version)
                connection.execute(delete(_META).where(_META.c.key == "schema_version"))
                connection.execute(insert(_META).values(key="schema_version", value=str(SCHEMA_VERSION)))
            if not self.readonly:
                _VERIFICATIONS.create(connection, checkfirst=True)  # a file from before the table existed
                # A write that changes nothing: a file this process cannot write fails here, when the store
                # opens, rather than at the first program a run stores after evaluating it.
                connection.exec_driver_sql("DELETE FROM meta WHERE 0")

    def read_meta(self) -> dict[str, str]:
        with self._transaction() as connection:
            return {key: value for key, value in connection.execute(select(_META.c.key, _META.c.value))}

    def write_meta(self, values: Mapping[str, str]) -> None:
        with self._transaction() as connection:
            connection.execute(delete(_META).where(_META.c.key.in_(list(values))))
            connection.execute(insert(_META), [{"key": key, "value": value} for key, value in values.items()])

    def add(self, program: Program | None, events: Sequence[IslandEvent] = ()) -> None:
        try:
            with self._transaction() as connection:
                if program is not None:
                    connection.execute(insert(_PROGRAMS), _program_to_row(program))
                if events:
                    connection.execute(insert(_EVENTS), [_event_to_row(e) for e in events])
        except IntegrityError as error:
            raise IslandsError(
                f"program id {program.id if program else '?'} is already stored in {self.path}: another process "
                "is writing to this database. Only one run may write to a database at a time."
            ) from error

    def get(self, program_id: int) -> Program | None:
        # Plain SQL: prompts fetch programs by id all the time, and this is several times faster than a select().
        with self._transaction() as connection:
            row = connection.exec_driver_sql(_PROGRAM_SQL + " WHERE id = ?", (program_id,)).first()
        return None if row is None else _tuple_to_program(row)

    def load(self) -> tuple[list[ProgramSummary], list[IslandEvent]]:
        # One read transaction, so that programs and events come from the same moment of a run being written.
        with self._transaction() as connection:
            # Plain SQL and json.loads here: rebuilding a run of 100,000 programs reads every row, and the
            # generic row processing would take several times longer than the reading itself.
            rows = connection.exec_driver_sql(_SUMMARY_SQL)
            loads = json.loads
            summaries = [
                ProgramSummary(
                    id=row_id,
                    island_id=island_id,
                    outcome=outcome,
                    score=score,
                    scores_per_test=loads(scores_per_test),
                    behaviour=None if behaviour is None else tuple(loads(behaviour)),
                    source_length=source_length,
                    num_params=num_params,
                    ast_size=ast_size,
                    created_at=created_at,
                    tokens=tokens,
                    cost_usd=cost_usd,
                    canonical_hash=canonical_hash,
                )
                for (row_id, island_id, outcome, score, scores_per_test, behaviour, source_length, num_params,
                     ast_size, created_at, tokens, cost_usd, canonical_hash) in rows
            ]  # fmt: skip
            events = [_row_to_event(r) for r in connection.execute(select(_EVENTS).order_by(_EVENTS.c.id)).mappings()]
        return summaries, events

    def programs(self) -> Iterator[Program]:
        last_id, batch = 0, 500
        while True:
            query = _PROGRAM_SQL + " WHERE id > ? ORDER BY id LIMIT ?"
            with self._transaction() as connection:
                rows = [_tuple_to_program(row) for row in connection.exec_driver_sql(query, (last_id, batch))]
            yield from rows
            if len(rows) < batch:
                return
            last_id = rows[-1].id

    def add_verification(self, program_id: int, record: str) -> None:
        with self._transaction() as connection:
            connection.execute(insert(_VERIFICATIONS).values(program_id=program_id, created_at=time.time(),
                                                             record=record))

    def verifications(self) -> dict[int, str]:
        with self._transaction() as connection:
            if not inspect(connection).has_table(_VERIFICATIONS.name):
                return {}
            rows = connection.execute(select(_VERIFICATIONS.c.program_id, _VERIFICATIONS.c.record)
                                      .order_by(_VERIFICATIONS.c.id))
            return {program_id: record for program_id, record in rows}  # the latest row of each program

    def close(self) -> None:
        with self._lock:
            self._release()

    def _release(self) -> None:
        if hasattr(self, "_connection"):
            self._connection.close()
        if hasattr(self, "_engine"):
            self._engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the writer's lock
            self._lock_file = None


def _cannot_write(path: Path, reason: str) -> str:
    return (
        f"cannot write the database {path} ({reason}): a run writes it and the -wal, -shm and .lock files beside "
        "it, so give --db a file in a folder you can write (copy the database there to resume its run); "
        "best, show and stats can read it where it is"
    )


def _is_write_refusal(error: BaseException | None) -> bool:
    """Whether SQLite failed because the file, or the folder for its -wal and -shm files, cannot be written."""
    name = getattr(error, "sqlite_errorname", "")
    return name.startswith("SQLITE_READONLY") or name == "SQLITE_CANTOPEN" or "readonly database" in str(error)


def _lock_for_writing(path: Path) -> IO[bytes]:
    """Takes the one writer's lock of a database file (released when the process ends, even by kill -9).

    The lock file sits beside the file the path resolves to, so that a run through a symbolic link (or a
    linked folder) and a run on the path itself take the same lock.
    """
    try:
        lock_file = open(f"{path.resolve()}.lock", "ab")  # noqa: SIM115 -- held open for the store's life
    except OSError as error:
        raise IslandsError(_cannot_write(path, f"{error.strerror}: {error.filename}")) from None
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock_file.close()
        raise IslandsError(
            f"another process is writing to {path} (a run is using it). Wait for it to end, read it with "
            "a read-only command, or use another --db path."
        ) from None
    return lock_file


def _make_engine(path: Path, readonly: bool, *, immutable: bool = False) -> Engine:
    # The file is opened by sqlite3 directly, so that no character of its path is read as part of a URL.
    target = f"file:{quote(str(path.resolve()))}" + ("?mode=ro" if readonly else "")
    target += "&immutable=1" if immutable else ""

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(target, uri=True, timeout=30.0, check_same_thread=False)

    engine = create_engine("sqlite://", creator=connect, poolclass=StaticPool)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (reads included).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not readonly:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.connection.driver_connection.execute("BEGIN")

    return engine


def _program_to_row(program: Program) -> dict[str, Any]:
    return {
        "id": program.id,
        "created_at": program.created_at,
        "island_id": program.island_id,
        "source": program.source,
        "source_length": len(program.source),
        "parent_ids": list(program.parent_ids),
        "outcome": program.outcome,
        "score": program.score,
        "scores_per_test": dict(program.scores_per_test),
        "error": program.error,
        "fitted_params": dict(program.fitted_params),
        "timings": dict(program.timings),
        "extra_scores": dict(program.extra_scores),
        "behaviour": None if program.behaviour is None else list(program.behaviour),
        "proposer": program.proposer,
        "tokens": program.tokens,
        "cost_usd": program.cost_usd,
        "canonical_hash": program.canonical_hash,
        "num_params": program.num_params,
        "ast_size": program.ast_size,
    }


def _tuple_to_program(row: Sequence[Any]) -> Program:
    """The program of a row selected by _PROGRAM_SQL (JSON columns are text there)."""
    # fmt: off
    (program_id, island_id, source, parent_ids, outcome, score, scores_per_test, error, fitted_params, timings,
     extra_scores, behaviour, proposer, tokens, cost_usd, canonical_hash, num_params, ast_size, created_at) = row
    # fmt: on
    loads = json.loads
    return Program(
        id=program_id,
        island_id=island_id,
        source=source,
        parent_ids=tuple(loads(parent_ids)),
        outcome=outcome,
        score=score,
        scores_per_test=loads(scores_per_test),
        error=error,
        fitted_params=loads(fitted_params),
        timings=loads(timings),
        extra_scores=loads(extra_scores),
        behaviour=None if behaviour is None else tuple(loads(behaviour)),
        proposer=proposer,
        tokens=tokens,
        cost_usd=cost_usd,
        canonical_hash=canonical_hash,
        num_params=num_params,
        ast_size=ast_size,
        created_at=created_at,
    )


def _event_to_row(event_: IslandEvent) -> dict[str, Any]:
    return {
        "kind": event_.kind,
        "created_at": event_.created_at,
        "evaluation_count": event_.evaluation_count,
        "after_program_id": event_.after_program_id,
        "island_ids": list(event_.island_ids),
        "moves": [list(move) for move in event_.moves],
        "tokens": event_.tokens,
        "cost_usd": event_.cost_usd,
    }


def _row_to_event(row: Mapping[str, Any]) -> IslandEvent:
    return IslandEvent(
        kind=row["kind"],
        created_at=row["created_at"],
        evaluation_count=row["evaluation_count"],
        after_program_id=row["after_program_id"],
        island_ids=tuple(row["island_ids"]),
        moves=tuple((int(p), int(i)) for p, i in row["moves"]),
        tokens=int(row["tokens"] or 0),
        cost_usd=float(row["cost_usd"] or 0.0),
        id=row["id"],
    )
