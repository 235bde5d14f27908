"""The ProgramStore contract, run against MemoryStore and SqliteStore alike."""

from __future__ import annotations

import pytest

from islands import IslandEvent, IslandsError, Program


def program(program_id: int, **fields) -> Program:
    values = dict(
        id=program_id,
        island_id=0,
        source=f"def agent(params):\n    return {program_id}\n",
        parent_ids=(1, 2),
        outcome="OK",
        score=0.5,
        scores_per_test={"a": 0.5},
        error="",
        fitted_params={"alpha": 0.1, "w": [1.0, 2.0]},
        timings={"fit": 0.2},
        extra_scores={"train": 0.6},
        behaviour=(1.0, 2.0),
        proposer="mutator",
        tokens=5,
        cost_usd=0.01,
        canonical_hash=f"hash{program_id % 2}",
        num_params=1,
        ast_size=12,
        created_at=1000.0 + program_id,
    )
    values.update(fields)
    return Program(**values)


def test_programs_round_trip(store) -> None:
    stored = [program(1), program(2, behaviour=None, score=None, outcome="TIMEOUT", error="late"), program(3)]
    for item in stored:
        store.add(item)
    assert [store.get(i) for i in (1, 2, 3)] == stored
    assert store.get(4) is None
    assert list(store.programs()) == stored


def test_events_are_written_with_their_program(store) -> None:
    reset = IslandEvent("reset", 5.0, evaluation_count=1, after_program_id=1, island_ids=(2, 3), moves=((1, 2), (1, 3)))
    store.add(program(1), [reset])
    store.add(None, [IslandEvent("duplicate", 6.0, 1, 1, island_ids=(0,))])
    summaries, events = store.load()
    assert [s.id for s in summaries] == [1]
    assert summaries[0].source_length == len(program(1).source) and summaries[0].canonical_hash == "hash1"
    assert [(e.id, e.kind, e.island_ids, e.moves) for e in events] == [
        (1, "reset", (2, 3), ((1, 2), (1, 3))),
        (2, "duplicate", (0,), ()),
    ]


def test_an_id_is_stored_once(store) -> None:
    store.add(program(1))
    with pytest.raises(IslandsError, match="program id 1 is already stored"):
        store.add(program(1))


def test_meta_round_trip(store) -> None:
    assert "task_name" not in store.read_meta()
    store.write_meta({"task_name": "bandit", "task_version": "1"})
    store.write_meta({"task_version": "2"})
    meta = store.read_meta()
    assert (meta["task_name"], meta["task_version"]) == ("bandit", "2")


def test_many_programs_are_listed_in_id_order(store) -> None:
    for program_id in range(1, 1203):
        store.add(program(program_id))
    assert [p.id for p in store.programs()] == list(range(1, 1203))
