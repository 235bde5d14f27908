"""The program database survives its writer being killed (kill -9) and can be read while it is written.

Run as a script, this file is the writing process: it registers programs of a deterministic little run in a
loop and prints one line per committed write:

    python tests/integration/test_islands_durability.py RUN.db [MAX_WRITES]
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from islands import Candidate, IslandsConfig, ProgramDatabase, RunMeta

CONFIG = IslandsConfig(
    num_islands=4,
    reset_period_s=None,
    reset_period_evaluations=11,
    cluster_sampling_temperature_period=23,
)
META = RunMeta(task_name="durability", task_version=1, data_hash="0" * 16, function_name="agent")
COMPARED_STATS = (
    "programs", "evaluations", "outcomes", "duplicates", "duplicates_per_island", "seed_score", "best_score",
    "best_program_id", "tokens", "cost_usd", "resets", "migrations", "evaluations_since_reset", "islands",
)  # fmt: skip


def module_source(step: int, comment: bool = False) -> str:
    note = "    # the same program, commented\n" if comment else ""
    return (
        "def agent(params, x):\n"
        '    PARAMS = {"alpha": (0.0, 1.0)}\n'
        f"{note}"
        f"    return params['alpha'] * x + {step}\n"
    )


def writes(database: ProgramDatabase) -> Iterator[tuple[str, int]]:
    """Runs a deterministic search against `database`, yielding (kind, program id) after each committed write."""
    seed = database.register_seed(Candidate(module_source(-1), score=0.0, scores_per_test={"a": 0.0, "b": 0.0}))
    yield "seed", seed.id
    step = 0
    while True:
        prompt = database.sample()
        if step % 6 == 5:
            # A cosmetic copy of the previous step's candidate: found, counted and not evaluated.
            duplicate = database.find_duplicate(module_source(step - 1, comment=True))
            assert duplicate is not None
            database.count_duplicate(prompt.island_id)
            yield "duplicate", duplicate.id
            step += 1
            continue
        failed = step % 7 == 6
        tests = {"a": (step * 37 % 101) / 100, "b": (step * 53 % 97) / 100}
        program = database.register(
            Candidate(
                source=module_source(step),
                parent_ids=tuple(p.id for p in prompt.programs),
                island_id=prompt.island_id,
                outcome="CRASHED" if failed else "OK",
                score=None if failed else sum(tests.values()) / 2,
                scores_per_test={} if failed else tests,
                error="ZeroDivisionError" if failed else "",
                timings={"fit": 0.01},
                proposer="mutator",
                tokens=step,
                cost_usd=0.001,
            )
        )
        yield "program", program.id
        step += 1


def start_writer(path: Path, max_writes: int = 1_000_000) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, str(path), str(max_writes)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def replay_in_memory(programs: int, duplicates: int) -> ProgramDatabase:
    """The same run, uninterrupted, in memory, stopped where the killed one was."""
    replica = ProgramDatabase.open(None, CONFIG, META, seed=0)
    for _ in writes(replica):
        stats = replica.stats()
        if (stats["programs"], stats["duplicates"]) == (programs, duplicates):
            return replica
        assert stats["programs"] <= programs
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_kill_9_while_registering_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    chooser = random.Random()
    for attempt in range(3):
        path = tmp_path / f"run{attempt}.db"
        writer = start_writer(path)
        assert writer.stdout is not None
        lines_before_kill = chooser.randint(20, 250)
        printed = []
        for line in writer.stdout:
            printed.append(line.split())
            if len(printed) >= lines_before_kill:
                break
        time.sleep(chooser.uniform(0.0, 0.01))  # a moment in the middle of some write
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        context = f"(attempt {attempt}, killed after {lines_before_kill} printed writes)"

        with ProgramDatabase.open_readonly(path) as reader:
            ids = [program.id for program in reader.all_programs()]
            # Nothing lost: every write the writer reported as committed is there; nothing duplicated.
            assert ids == list(range(1, len(ids) + 1)), context
            reported = {int(program_id) for kind, program_id in printed if kind in ("program", "seed")}
            assert reported <= set(ids), context
            stats = reader.stats()
            reported_duplicates = sum(1 for kind, _ in printed if kind == "duplicate")
            assert stats["duplicates"] >= reported_duplicates, context
            # The islands rebuilt from the rows are exactly those of the same run left uninterrupted.
            replica = replay_in_memory(len(ids), stats["duplicates"])
            assert reader.island_snapshot() == replica.island_snapshot(), context
            replica_stats = replica.stats()
            for key in COMPARED_STATS:
                assert stats[key] == replica_stats[key], (key, context)
            assert [p.source for p in reader.all_programs()] == [p.source for p in replica.all_programs()]

        connection = sqlite3.connect(path)
        last_event = connection.execute("SELECT max(after_program_id) FROM island_events").fetchone()[0]
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        connection.close()
        assert last_event <= len(ids), context  # no event refers to a program that was not stored

        # The run goes on: the seed is not registered again and new ids follow the stored ones.
        with ProgramDatabase.open(path, CONFIG, META, seed=0) as database:
            assert database.num_evaluations == stats["evaluations"]
            resumed = writes(database)
            assert next(resumed) == ("seed", 1)
            for _ in range(10):
                next(resumed)
            ids_after = [program.id for program in database.all_programs()]
        assert ids_after == list(range(1, len(ids_after) + 1))
        assert len(ids_after) > len(ids)


@pytest.mark.slow
def test_reader_sees_consistent_snapshots_while_a_run_writes(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    writer = start_writer(path, max_writes=20_000)
    assert writer.stdout is not None
    try:
        for _ in range(20):
            writer.stdout.readline()
        seen_programs = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            with ProgramDatabase.open_readonly(path) as reader:
                stats = reader.stats()
                count = stats["programs"]
                assert not seen_programs or count >= seen_programs[-1]
                seen_programs.append(count)
                assert sum(stats["outcomes"].values()) == count
                assert stats["evaluations"] + 1 == count
                best = reader.best(5)
                assert [p.score for p in best] == sorted((p.score for p in best), reverse=True)
                assert reader.pareto_front()
                ids = [program.id for program in reader.all_programs()]
                assert ids == list(range(1, len(ids) + 1)) and len(ids) >= count
                assert reader.get(count).id == count
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert len(seen_programs) >= 3
    assert seen_programs[-1] > seen_programs[0], "the run went on while it was being read"


if __name__ == "__main__":
    database_path, max_writes = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    with ProgramDatabase.open(database_path, CONFIG, META, seed=0) as run:
        for count, (kind, program_id) in enumerate(writes(run), start=1):
            print(kind, program_id, flush=True)
            if count >= max_writes:
                break
        # Stay alive (holding the database open) until killed.
        while True:
            time.sleep(1)
