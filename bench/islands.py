"""Benchmark of the program database: registrations and prompt samples per second, and latency at scale.

Registers N programs (default 100,000) on 10 islands, drawing one prompt before each registration as a
run does, then draws N more prompts from the full database. Every registration is committed on its own
(SQLite in WAL mode, synchronous=NORMAL). Prints a table.

    .venv/bin/python bench/islands.py               # 100,000 programs
    .venv/bin/python bench/islands.py --programs 10000
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

# This script is named like the package it measures: keep its own folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from islands import Candidate, IslandsConfig, ProgramDatabase, RunMeta  # noqa: E402
from islands.analysis import SourceAnalyser  # noqa: E402

SEED_SOURCE = '''import jax.numpy as jnp


def agent(params, state, choice, reward):
    """One trial of a learner in a two-armed bandit; returns the logits of its next choice and its new state."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
    q = state[:2]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error * CONSTANT)
    logits = params["beta"] * q
    return logits, state.at[:2].set(q)
'''


def candidate_source(index: int, rng: random.Random) -> str:
    """A distinct, realistic candidate: the seed with a different constant and a varying number of extra lines."""
    extra = "".join(f"    q = q * {rng.random():.6f} + {j}\n" for j in range(rng.randrange(0, 4)))
    source = SEED_SOURCE.replace("CONSTANT", f"{1 + index * 1e-6:.7f}")
    return source.replace("    logits = ", extra + "    logits = ")


class Timer:
    """Wall-clock and CPU time of one operation (CPU time is less disturbed by other processes on the machine)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cpu.append(time.process_time() - self._cpu)
        self.wall.append(time.perf_counter() - self._wall)


def ms(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1e3:.3f}"


def p99(seconds: list[float]) -> str:
    return f"{sorted(seconds)[int(len(seconds) * 0.99)] * 1e3:.3f}"


def commit_cost(folder: Path, synchronous: str, count: int = 2000) -> float:
    """Median seconds of one INSERT + COMMIT of a 2 kB row with plain sqlite3 in WAL mode."""
    connection = sqlite3.connect(folder / f"commit_{synchronous}.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    payload = "x" * 2000
    times = []
    for _ in range(count):
        start = time.perf_counter()
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t (body) VALUES (?)", (payload,))
        connection.execute("COMMIT")
        times.append(time.perf_counter() - start)
    connection.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=100_000)
    parser.add_argument("--islands", type=int, default=10)
    parser.add_argument("--folder", type=Path, default=None, help="where the database file goes (default: a temp dir)")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="islands-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

    rng = random.Random(0)
    config = IslandsConfig(num_islands=args.islands)  # reset every 4 h of run time: none during the benchmark
    meta = RunMeta(task_name="bench", task_version=1, data_hash="0" * 16, function_name="agent")
    database = ProgramDatabase.open(path, config, meta, seed=0)
    database.register_seed(
        Candidate(SEED_SOURCE.replace("CONSTANT", "1.0"), score=-0.7, scores_per_test={"a": -0.7, "b": -0.7})
    )

    sources = [candidate_source(i, rng) for i in range(args.programs)]
    load_before = os.getloadavg()[0]
    samples, lookups, registrations, analyses = Timer(), Timer(), Timer(), Timer()
    analyse = SourceAnalyser("agent", capacity=1)
    for index, source in enumerate(sources):
        with samples:
            prompt = database.sample()
        failed = rng.random() < 0.2
        # Per-test scores drift upwards over the run, as they do in a search; 2 tests, signature to 6 decimals.
        level = -0.7 + 0.3 * index / args.programs
        tests = {"a": level + rng.gauss(0, 0.05), "b": level + rng.gauss(0, 0.05)}
        candidate = Candidate(
            source=source,
            parent_ids=tuple(p.id for p in prompt.programs),
            island_id=prompt.island_id,
            outcome="CRASHED" if failed else "OK",
            score=None if failed else statistics.fmean(tests.values()),
            scores_per_test={} if failed else tests,
            error="ValueError: boom" if failed else "",
            fitted_params={} if failed else {"alpha": rng.random(), "beta": 20 * rng.random()},
            timings={"fit": rng.random(), "score": rng.random()},
            proposer="mutator",
        )
        # As the engine does: look the candidate up before evaluating it, register it after.
        with lookups:
            duplicate = database.find_duplicate(source)
        assert duplicate is None
        with registrations:
            database.register(candidate)
        if index % 100 == 0:
            with analyses:
                analyse(source + " ")  # a new string: no cache hit

    late = Timer()
    start_all = time.perf_counter()
    for _ in range(args.programs):
        with late:
            database.sample()
    late_total = time.perf_counter() - start_all
    load_after = os.getloadavg()[0]

    stats = database.stats()
    start = time.perf_counter()
    best = database.best(10)
    best_s = time.perf_counter() - start
    start = time.perf_counter()
    front = database.pareto_front()
    pareto_s = time.perf_counter() - start
    database.close()  # checkpoints the WAL into the main file
    size = sum(Path(f"{path}{suffix}").stat().st_size for suffix in ("", "-wal") if Path(f"{path}{suffix}").exists())

    start = time.perf_counter()
    reopened = ProgramDatabase.open(path, config, meta, seed=0)
    reopen_s = time.perf_counter() - start
    reopened.close()
    start = time.perf_counter()
    reader = ProgramDatabase.open_readonly(path)
    reader.best(10)
    reader_s = time.perf_counter() - start
    reader.close()

    n = args.programs
    rows = [
        ("find_duplicate (hash + lookup)", lookups, "lookups/s", sum(lookups.wall)),
        ("register (one commit each)", registrations, "programs/s", sum(registrations.wall)),
        ("sample, during the loop", samples, "prompts/s", sum(samples.wall)),
        (f"sample, {n:,} stored", late, "prompts/s", late_total),
    ]
    print(f"islands: {args.islands}, programs: {n:,} (+ seed), 20% failed, file: {path}")
    print(f"load average (1 min) of the machine: {load_before:.1f} before the loop, {load_after:.1f} after it")
    header = ("operation", "throughput", "median ms", "last 10%: median ms", "p99 ms", "CPU median ms")
    print(f"{header[0]:32} {header[1]:>20} {header[2]:>10} {header[3]:>20} {header[4]:>8} {header[5]:>14}")
    for name, timer, unit, total in rows:
        last = slice(len(timer.wall) - len(timer.wall) // 10, len(timer.wall))
        print(
            f"{name:32} {f'{len(timer.wall) / total:,.0f} {unit}':>20} {ms(timer.wall):>10} "
            f"{ms(timer.wall[last]):>20} {p99(timer.wall[last]):>8} {ms(timer.cpu[last]):>14}"
        )
    print()
    both = [a + b for a, b in zip(lookups.wall, registrations.wall)]
    print(f"find_duplicate + register per program: median {ms(both)} ms ({n / sum(both):,.0f} programs/s)")
    print(f"canonical hash + complexity of one ~0.7 kB source: median {ms(analyses.wall)} ms, CPU {ms(analyses.cpu)} "
          "ms (done once, in find_duplicate; register reuses it)")  # fmt: skip
    for synchronous in ("NORMAL", "FULL"):
        print(f"plain sqlite3 INSERT+COMMIT of a 2 kB row, WAL, synchronous={synchronous}: "
              f"median {commit_cost(folder, synchronous) * 1e3:.3f} ms")  # fmt: skip
    print(f"database size: {size / 1e6:.1f} MB, {size / (n + 1):,.0f} bytes per program")
    print(f"clusters: {sum(i['num_clusters'] for i in stats['islands']):,} over {args.islands} islands")
    print(f"best(10): {best_s * 1e3:.1f} ms, pareto_front(): {pareto_s * 1e3:.1f} ms ({len(front)} programs)")
    print(f"reopen (rebuild islands from {n + 1:,} rows): {reopen_s:.2f} s; open_readonly + best(10): {reader_s:.2f} s")
    assert len(best) == 10


if __name__ == "__main__":
    main()
