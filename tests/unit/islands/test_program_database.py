"""ProgramDatabase: seeding, resets, migration, duplicates, resume, metadata, statistics, Pareto front."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.islands.islands_helpers import META, candidate, open_database, source
from islands import IslandsConfig, IslandsError, ProgramDatabase, SEED_ISLAND_ID
from islands.pareto import pareto_front_ids

RESET_EVERY_4 = dict(num_islands=4, reset_period_s=None, reset_period_evaluations=4)


def island_ids(snapshot: dict) -> set[int]:
    return {pid for _, ids in snapshot["clusters"].values() for pid in ids}


# ------------------------------------------------------------------------------------------------ seeding


def test_seed_is_stored_once_and_registered_on_every_island(db_path: Path | None) -> None:
    database = open_database(db_path, num_islands=3)
    seed = database.register_seed(candidate(0.5))
    assert (seed.id, seed.island_id, seed.num_params) == (1, SEED_ISLAND_ID, 1)
    assert [island_ids(s) for s in database.island_snapshot()] == [{1}, {1}, {1}]
    assert database.num_evaluations == 0
    assert database.register_seed(candidate(0.5)) == seed
    assert len(list(database.all_programs())) == 1


def test_failed_seed_is_refused() -> None:
    database = open_database(None)
    with pytest.raises(IslandsError, match=r"the seed failed \(outcome CRASHED.*boom.*fix the seed"):
        database.register_seed(candidate(0.5, outcome="CRASHED", score=None, error="boom"))
    assert list(database.all_programs()) == []


def test_a_different_seed_on_a_reopened_run_is_refused(tmp_path: Path) -> None:
    with open_database(tmp_path / "run.db") as database:
        database.register_seed(candidate(0.5))
    with open_database(tmp_path / "run.db") as database:
        with pytest.raises(IslandsError, match="holds a different seed"):
            database.register_seed(candidate(0.7))


def test_register_checks_the_island_id() -> None:
    database = open_database(None, num_islands=2)
    with pytest.raises(IslandsError, match="island_id is 2; expected 0..1"):
        database.register(candidate(0.5, island_id=2))


def test_program_records_everything_given(db_path: Path | None) -> None:
    database = open_database(db_path)
    database.register_seed(candidate(0.0))
    given = candidate(
        0.25,
        island_id=3,
        parent_ids=(1,),
        scores_per_test={"s1": 0.2, "s2": 0.3},
        fitted_params={"alpha": 0.3, "w": [1.0, 2.0]},
        timings={"fit": 1.5},
        extra_scores={"train": 0.4},
        behaviour=(1.0, 0.0),
        proposer="mutator",
        tokens=120,
        cost_usd=0.002,
    )
    stored = database.register(given)
    again = database.get(stored.id)
    assert again == stored
    assert (again.island_id, again.parent_ids, again.proposer, again.tokens) == (3, (1,), "mutator", 120)
    assert again.fitted_params == {"alpha": 0.3, "w": [1.0, 2.0]}
    assert again.behaviour == (1.0, 0.0) and again.ast_size > 10 and again.created_at > 0
    with pytest.raises(IslandsError, match="no program with id 99"):
        database.get(99)


# ------------------------------------------------------------------------------------------------ resets


def test_reset_empties_the_weaker_half_and_reseeds_from_survivors() -> None:
    founders_seen = set()
    for seed in range(12):
        database = open_database(None, seed=seed, **RESET_EVERY_4)
        database.register_seed(candidate(0.0))
        best = {i: database.register(candidate(score, island_id=i)) for i, score in enumerate([5.0, 4.0, 1.0, 2.0])}
        snapshot = database.island_snapshot()
        assert database.stats()["resets"] == 1
        # Islands 2 and 3 had the lowest best scores: emptied, then given one founder each.
        assert [s["num_programs"] for s in snapshot] == [2, 2, 1, 1]
        for emptied in (2, 3):
            (founder,) = island_ids(snapshot[emptied])
            assert founder in (best[0].id, best[1].id)
            founders_seen.add(founder)
        assert island_ids(snapshot[0]) == {1, best[0].id} and island_ids(snapshot[1]) == {1, best[1].id}
        assert snapshot[2]["temperature"] == pytest.approx(0.1 * (1 - 1 / 30_000))
        (event,) = database.island_events()
        assert (event.kind, event.evaluation_count, event.after_program_id) == ("reset", 4, best[3].id)
        assert sorted(event.island_ids) == [2, 3] and {i for _, i in event.moves} == {2, 3}
    assert founders_seen == {best[0].id, best[1].id}  # the surviving island is drawn at random


def test_ties_are_broken_at_random() -> None:
    emptied_sets = set()
    for seed in range(10):
        database = open_database(None, seed=seed, **RESET_EVERY_4)
        database.register_seed(candidate(0.0))
        for index in range(4):
            database.register(candidate(0.0, source=source(0.0, padding=index + 1), island_id=index))
        emptied_sets.add(tuple(i for i, s in enumerate(database.island_snapshot()) if s["num_programs"] == 1))
    assert len(emptied_sets) > 2 and all(len(emptied) == 2 for emptied in emptied_sets)


def test_reset_by_run_time() -> None:
    database = open_database(None, num_islands=2, reset_period_s=1e-9)
    database.register_seed(candidate(0.0))
    database.register(candidate(1.0, island_id=0))
    database.register(candidate(2.0, island_id=0))
    assert database.stats()["resets"] == 2


def test_no_reset_before_the_period() -> None:
    database = open_database(None, num_islands=4)  # 4 h
    database.register_seed(candidate(0.0))
    for index in range(10):
        database.register(candidate(float(index), island_id=index % 4))
    assert database.stats()["resets"] == 0


# ------------------------------------------------------------------------------------------------ migration


def test_migration_copies_the_best_programs_along_the_ring() -> None:
    database = open_database(None, num_islands=3, reset="migration", migration_interval_evaluations=2)
    database.register_seed(candidate(0.0))
    five = database.register(candidate(5.0, island_id=0))
    three = database.register(candidate(3.0, island_id=1))  # 2 evaluations: migrate
    snapshot = database.island_snapshot()
    assert island_ids(snapshot[0]) == {1, five.id}  # island 2 had only the seed, which island 0 already holds
    assert island_ids(snapshot[1]) == {1, three.id, five.id}
    assert island_ids(snapshot[2]) == {1, three.id}
    stats = database.stats()
    assert (stats["migrations"], stats["resets"], stats["evaluations_since_migration"]) == (1, 0, 0)


# ------------------------------------------------------------------------------------------------ duplicates


def test_duplicates_are_found_and_counted(db_path: Path | None) -> None:
    database = open_database(db_path, num_islands=3)
    seed = database.register_seed(candidate(0.5))
    cosmetic = source(0.5).replace("return", "# a comment\n    return")
    assert database.find_duplicate(cosmetic) == seed
    assert database.find_duplicate(source(0.6)) is None
    database.count_duplicate(2)
    database.count_duplicate(2)
    database.count_duplicate(0)
    stats = database.stats()
    assert (stats["duplicates"], stats["duplicates_per_island"]) == (3, [1, 0, 2])
    assert stats["evaluations"] == 0
    with pytest.raises(IslandsError, match="island_id is 5"):
        database.count_duplicate(5)


def test_duplicate_rejection_can_be_switched_off() -> None:
    database = open_database(None, reject_duplicates=False)
    database.register_seed(candidate(0.5))
    assert database.find_duplicate(source(0.5)) is None


# ------------------------------------------------------------------------------------------------ resume


def drive(database: ProgramDatabase, steps: int, start: int = 0) -> None:
    """A deterministic little run: samples, failures, duplicates."""
    database.register_seed(candidate(0.0))
    for step in range(start, start + steps):
        prompt = database.sample()
        if step % 7 == 3:
            database.count_duplicate(prompt.island_id)
            continue
        failed = step % 5 == 4
        database.register(
            candidate(
                0.001 * step,
                score=None if failed else 0.001 * (step % 13),
                outcome="CRASHED" if failed else "OK",
                island_id=prompt.island_id,
                parent_ids=tuple(p.id for p in prompt.programs),
                tokens=10,
                cost_usd=0.5,
            )
        )


@pytest.mark.parametrize("reset", ["periodic", "migration"])
def test_reopening_rebuilds_the_same_islands(tmp_path: Path, reset: str) -> None:
    config = dict(
        num_islands=4,
        reset=reset,
        reset_period_s=None,
        reset_period_evaluations=9,
        migration_interval_evaluations=6,
        cluster_sampling_temperature_period=17,
    )
    path = tmp_path / "run.db"
    with open_database(path, **config) as database:
        drive(database, steps=80)
        snapshot, stats = database.island_snapshot(), database.stats()
    assert stats["resets" if reset == "periodic" else "migrations"] >= 5
    with open_database(path, **config) as reopened:
        assert reopened.island_snapshot() == snapshot
        reopened_stats = reopened.stats()
        compared = ("programs", "evaluations", "outcomes", "duplicates_per_island", "tokens", "cost_usd", "resets",
                    "migrations", "evaluations_since_reset", "evaluations_since_migration", "islands")  # fmt: skip
        for key in compared:
            assert reopened_stats[key] == stats[key], key
        assert reopened.num_evaluations == stats["evaluations"]
        assert reopened.register_seed(candidate(0.0)).id == 1  # no-op
        drive(reopened, steps=20, start=80)
        ids = [program.id for program in reopened.all_programs()]
    assert ids == list(range(1, len(ids) + 1))
    assert len(ids) == stats["programs"] + 17  # 20 steps, 3 of them duplicates


def test_resume_keeps_the_reset_clock_in_evaluations(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with open_database(path, **RESET_EVERY_4) as database:
        database.register_seed(candidate(0.0))
        for index in range(3):
            database.register(candidate(float(index), island_id=index))
    with open_database(path, **RESET_EVERY_4) as database:
        assert database.stats()["evaluations_since_reset"] == 3
        database.register(candidate(9.0, island_id=3))  # the 4th evaluation
        assert database.stats()["resets"] == 1


def test_resume_does_not_count_time_between_sessions(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with open_database(path, num_islands=2, reset_period_s=3600.0) as database:
        database.register_seed(candidate(0.0))
        database.register(candidate(1.0))
    # Pretend the first session ended two hours ago: the gap is not run time, so no reset is due.
    connection = sqlite3.connect(path)
    connection.execute("UPDATE programs SET created_at = created_at - 7200")
    connection.execute("UPDATE island_events SET created_at = created_at - 7200")
    connection.commit()
    connection.close()
    with open_database(path, num_islands=2, reset_period_s=3600.0) as database:
        assert database.stats()["run_time_s"] < 60
        database.register(candidate(2.0))
        assert database.stats()["resets"] == 0


# ------------------------------------------------------------------------------------------------ metadata


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(task_name="neuron"), "was made for task 'bandit' version 1; this run is task 'neuron' version 1. "
                                   "Use another --db path."),
        (dict(task_version=2), "was made for task 'bandit' version 1; this run is task 'bandit' version 2"),
        (dict(data_hash="e" * 16), "was made with task data of hash dddd"),
        (dict(function_name="model"), "was made for evolved function 'agent'; this run evolves 'model'"),
    ],
)  # fmt: skip
def test_reopening_for_another_run_says_what_differs(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "run.db"
    open_database(path).close()
    with pytest.raises(IslandsError, match=f"database {path} " + message.replace("(", r"\(").replace(")", r"\)")):
        ProgramDatabase.open(path, IslandsConfig(), replace(META, **change))


def test_reopening_with_other_islands_settings_says_which(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    open_database(path).close()
    with pytest.raises(IslandsError, match="islands settings num_islands=10; this run has num_islands=4"):
        open_database(path, num_islands=4)
    # The experiment's own configuration text is kept but may change between sessions.
    ProgramDatabase.open(path, IslandsConfig(), replace(META, experiment_config="max_samples: 10")).close()


def test_readonly_database_refuses_writes_and_reads_meta(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with open_database(path, num_islands=3) as database:
        database.register_seed(candidate(0.5))
        database.register(candidate(0.7))
    with ProgramDatabase.open_readonly(path) as reader:
        assert reader.meta == META and reader.config.num_islands == 3
        assert [p.score for p in reader.best()] == [0.7, 0.5]
        assert reader.stats()["evaluations"] == 1
        with pytest.raises(IslandsError, match="opened read-only"):
            reader.register(candidate(0.9))
    with pytest.raises(IslandsError, match="no program database at"):
        ProgramDatabase.open_readonly(tmp_path / "missing.db")


def test_readonly_path_may_hold_odd_characters(tmp_path: Path) -> None:
    path = tmp_path / "a run #1?" / "run 1.db"
    open_database(path).close()
    with ProgramDatabase.open_readonly(path) as reader:
        assert reader.stats()["programs"] == 0


def test_only_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with open_database(path) as database:
        database.register_seed(candidate(0.5))
        with pytest.raises(IslandsError, match="another process is writing to .*run.db"):
            open_database(path)
        with ProgramDatabase.open_readonly(path) as reader:  # readers are welcome
            assert reader.stats()["programs"] == 1
    open_database(path).close()  # free again once the writer has closed


def test_one_writer_at_a_time_through_symbolic_links_too(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "run.db"
    (tmp_path / "link.db").symlink_to(path)
    (tmp_path / "linked-runs").symlink_to(tmp_path / "runs", target_is_directory=True)
    with open_database(path) as database:
        database.register_seed(candidate(0.5))
        others = (tmp_path / "link.db", tmp_path / "linked-runs" / "run.db", path.parent / ".." / "runs" / "run.db")
        for other in others:
            with pytest.raises(IslandsError, match=f"another process is writing to {other}"):
                open_database(other)
    with open_database(tmp_path / "link.db") as database:  # free again once the writer has closed
        assert database.stats()["programs"] == 1
    assert sorted(p.name for p in (tmp_path / "runs").glob("*.lock")) == ["run.db.lock"]


def test_closed_database_says_so() -> None:
    database = open_database(None)
    database.close()
    with pytest.raises(IslandsError, match="is closed"):
        database.sample()


# ------------------------------------------------------------------------------------------------ reports


def test_stats_count_outcomes_tokens_and_bests(db_path: Path | None) -> None:
    database = open_database(db_path, num_islands=2)
    database.register_seed(candidate(0.1))
    database.register(candidate(0.3, island_id=1, tokens=100, cost_usd=0.01))
    database.register(candidate(0.9, score=None, outcome="TIMEOUT", tokens=50, cost_usd=0.02))
    stats = database.stats()
    assert stats["programs"] == 3 and stats["evaluations"] == 2
    assert stats["outcomes"] == {"OK": 2, "TIMEOUT": 1}
    assert (stats["seed_score"], stats["best_score"], stats["best_program_id"]) == (0.1, 0.3, 2)
    assert (stats["tokens"], stats["cost_usd"]) == (150, pytest.approx(0.03))
    assert [(i["best_score"], i["best_program_id"]) for i in stats["islands"]] == [(0.1, 1), (0.3, 2)]
    assert stats["evaluations_per_s"] > 0
    assert [p.id for p in database.best(1)] == [2]


def test_pareto_front_ids() -> None:
    points = [
        (1, 0.5, 2, 100),  # dominated by 2
        (2, 0.6, 2, 90),
        (3, 0.9, 5, 300),
        (4, 0.6, 1, 200),  # fewer params than 2: kept
        (5, 0.9, 5, 300),  # equal to 3: kept too
        (6, 0.1, 9, 900),  # dominated
    ]
    assert pareto_front_ids(points) == [3, 5, 4, 2]


def test_pareto_front_of_the_database() -> None:
    database = open_database(None)
    database.register_seed(candidate(0.5))  # 1 parameter
    two_params = source(0.6).replace('"alpha": (0.0, 1.0)', '"alpha": (0.0, 1.0), "beta": (0.0, 1.0)')
    richer = database.register(candidate(0.6, source=two_params))
    database.register(candidate(0.4))  # worse and no simpler than the seed
    database.register(candidate(0.9, outcome="CRASHED", score=None))
    assert [p.id for p in database.pareto_front()] == [richer.id, 1]


def test_non_numeric_scores_are_refused_with_their_field() -> None:
    database = open_database(None)
    with pytest.raises(IslandsError, match=r"candidate.scores_per_test must map names to numbers; found \{'a': None\}"):
        database.register(candidate(0.5, scores_per_test={"a": None}))


def test_a_failed_write_stops_the_database_until_reopened(tmp_path: Path) -> None:
    database = open_database(tmp_path / "run.db")
    database.register_seed(candidate(0.5))
    database._store.close()  # stands in for a disk that stopped accepting writes
    with pytest.raises(IslandsError, match="could not store a program in .*open it again"):
        database.register(candidate(0.6))
    with pytest.raises(IslandsError, match=r"could not store a write \(.*\); the islands in memory may be ahead"):
        database.register(candidate(0.7))
    with open_database(tmp_path / "run.db") as reopened:
        assert [p.id for p in reopened.all_programs()] == [1]


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(IslandsError, match="is a folder; --db takes a database file"):
        open_database(tmp_path)


def test_a_point_whose_complexity_is_not_a_number_is_on_no_front() -> None:
    from islands.pareto import pareto_front_ids

    # As read from a database edited by hand: SQLite keeps text that does not look like a number as text.
    points = [(1, 0.5, 2, 10), (2, 0.9, "many", 5), (3, 0.9, 3, "big"), (4, 0.7, 2.0, 12)]
    assert pareto_front_ids(points) == [4, 1]


def test_pareto_front_ids_agrees_with_brute_force() -> None:
    import random

    chooser = random.Random(3)
    for _ in range(50):
        points = [
            (i, chooser.choice([0.1, 0.2, 0.3, 0.4]), chooser.randint(0, 4), chooser.randint(10, 15)) for i in range(40)
        ]

        def dominated(p):
            return any(
                q[1] >= p[1] and q[2] <= p[2] and q[3] <= p[3] and q[1:] != p[1:] for q in points if q is not p
            )

        assert sorted(pareto_front_ids(points)) == sorted(p[0] for p in points if not dominated(p))
