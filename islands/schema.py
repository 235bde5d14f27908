"""The SQLite layout of a program database (SQLAlchemy 2.0 rows) and the upgrades between its versions."""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import JSON, Connection, Float, Integer, String, Text, inspect, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "MetaRow", "ProgramRow", "EventRow", "VerificationRow", "SCHEMA_VERSION", "MIGRATIONS", "upgrade"]

SCHEMA_VERSION = 2


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    """One fact about the run: schema_version, task_name, task_version, data_hash, islands_config, ..."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ProgramRow(Base):
    """One evaluated program, successful or not. The seed has island_id -1 (it is on every island)."""

    __tablename__ = "programs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[float] = mapped_column(Float)  # unix time, s
    island_id: Mapped[int] = mapped_column(Integer, index=True)
    source: Mapped[str] = mapped_column(Text)
    source_length: Mapped[int] = mapped_column(Integer)  # characters
    parent_ids: Mapped[list[int]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: failed (or NaN)
    scores_per_test: Mapped[dict[str, float]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)
    fitted_params: Mapped[dict[str, Any]] = mapped_column(JSON)
    timings: Mapped[dict[str, float]] = mapped_column(JSON)  # s per phase
    extra_scores: Mapped[dict[str, float]] = mapped_column(JSON)
    behaviour: Mapped[list[float] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    proposer: Mapped[str] = mapped_column(String)
    tokens: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    canonical_hash: Mapped[str] = mapped_column(String, index=True)
    num_params: Mapped[int] = mapped_column(Integer)
    ast_size: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    """One island event: an opening of the run, a reset, a migration or a skipped duplicate."""

    __tablename__ = "island_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String)
    created_at: Mapped[float] = mapped_column(Float)  # unix time, s
    evaluation_count: Mapped[int] = mapped_column(Integer)
    after_program_id: Mapped[int] = mapped_column(Integer)
    island_ids: Mapped[list[int]] = mapped_column(JSON)
    moves: Mapped[list[list[int]]] = mapped_column(JSON)  # [[program_id, island_id], ...]
    tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # a duplicate's LLM tokens
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # and their price


class VerificationRow(Base):
    """One verification of one program (`discover verify`); `record` is the JSON the engine produced. The latest
    row of a program is its current verification. Files written before this table existed get it when they are
    next opened for writing; readers of such a file see no verifications."""

    __tablename__ = "verifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    program_id: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[float] = mapped_column(Float)  # unix time, s
    record: Mapped[str] = mapped_column(Text)


def _upgrade_0_to_1(connection: Connection) -> None:
    """Version 0 had no behaviour signatures and no island events: add the column and the table."""
    columns = {column["name"] for column in inspect(connection).get_columns("programs")}
    if "behaviour" not in columns:
        connection.execute(text("ALTER TABLE programs ADD COLUMN behaviour JSON"))
    Base.metadata.create_all(connection, tables=[EventRow.__table__])


def _upgrade_1_to_2(connection: Connection) -> None:
    """Version 1 did not store what a skipped duplicate's answer cost: add its tokens and price (0 before)."""
    columns = {column["name"] for column in inspect(connection).get_columns("island_events")}
    if "tokens" not in columns:
        connection.execute(text("ALTER TABLE island_events ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0"))
    if "cost_usd" not in columns:
        connection.execute(text("ALTER TABLE island_events ADD COLUMN cost_usd FLOAT NOT NULL DEFAULT 0"))


# version -> the function that upgrades a database from that version to the next, inside one transaction.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {0: _upgrade_0_to_1, 1: _upgrade_1_to_2}


def upgrade(connection: Connection, found_version: int) -> int:
    """Applies the migrations from `found_version` up to SCHEMA_VERSION; returns the number applied."""
    applied = 0
    for version in range(found_version, SCHEMA_VERSION):
        MIGRATIONS[version](connection)
        applied += 1
    return applied
