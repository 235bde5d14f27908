"""Stored verification results (test-split scores, parameter recovery, predictive-check figures) per program.

`discover verify` and `discover report` write one row per verification; the latest row of a program is its
current verification. The table is optional: databases written before it existed get it on first use, so it
needs no schema upgrade.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Float, Integer, Text, create_engine, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from islands.errors import IslandsError
from islands.schema import Base

__all__ = ["VerificationRow", "save_verification", "load_verifications"]


class VerificationRow(Base):
    """One verification of one program; `record` is the JSON the engine produced."""

    __tablename__ = "verifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    program_id: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[float] = mapped_column(Float)  # unix time, s
    record: Mapped[str] = mapped_column(Text)


def _engine(path: Path):
    if not Path(path).is_file():
        raise IslandsError(f"{path}: no such database.")
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:  # same durability settings as the run's store
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    VerificationRow.__table__.create(engine, checkfirst=True)
    return engine


def _plain(value: Any) -> Any:
    """JSON cannot hold NaN/inf; they become None so readers never see invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_verification(path: Path, program_id: int, record: dict[str, Any]) -> None:
    """Stores a verification record for a program (one transaction)."""
    engine = _engine(path)
    try:
        with Session(engine) as session, session.begin():
            session.add(
                VerificationRow(program_id=program_id, created_at=time.time(), record=json.dumps(_plain(record)))
            )
    finally:
        engine.dispose()


def load_verifications(path: Path) -> dict[int, dict[str, Any]]:
    """Returns program id -> its latest verification record."""
    engine = _engine(path)
    try:
        with Session(engine) as session:
            rows = session.scalars(select(VerificationRow).order_by(VerificationRow.id)).all()
            return {row.program_id: json.loads(row.record) for row in rows}
    finally:
        engine.dispose()
