"""The whole loop's throughput: candidates per second with every candidate isolated, and where the time goes.

Setup: a trivial task (the candidate is called once, no fit), an instant LLM on a loopback server speaking the
Chat Completions wire format (the real `openai` SDK), the real island database in SQLite pre-filled with 1,000
or 10,000 programs, and the real worker pool (Ray actors owning bubblewrap sandboxes). Also the same with the
LLM-free mutator instead of the LLM, and with the local thread pool instead of Ray. `llm4` asks the server
for four answers per request (`samples: 4`, Chat Completions' `n`). The LLM server runs in its own process.

    python bench/engine.py                 # 1,000 and 10,000 stored programs, 300 candidates each
    python bench/engine.py --candidates 100 --stored 1000 --configs mutator:ray --profile engine.prof

Prints two tables: candidates/s sustained with the mean milliseconds per candidate spent in parts of the loop
(as the loop waits for them) and the outcomes; and the CPU milliseconds per candidate of each process (the
engine, Ray's actors, the sandboxes with the candidates' processes), with the rate all cores could sustain.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEED = '''def model(params, x):
    """Returns a number; the score is that number."""
    PARAMS = {"a": (0.0, 1.0), "b": (0.0, 2.0)}
    return 0.5 * x + 0.001
'''
SCORE = '''def score(candidate, train, heldout, seed=0):
    # Every declared parameter is 0.5 (mutants add parameters); no fit.
    value = float(candidate({name: 0.5 for name in candidate.PARAMS}, 1.0))
    return {"score": value, "scores_per_test": {"x": value}}
'''
DATA = '''def load():
    return {"train": {"x": [1.0]}, "selection": {"x": [1.0]}, "test": {"x": [1.0]}}
'''
TASK = '''name: trivial
version: 1
summary: A task whose score is the candidate's return value, for measuring the loop itself.
evolve: seed.py:model
inputs: {x: float32}
score: score.py:score
data: data.py:load
limits: {timeout_s: 10, memory_mb: 2048}
allowed_imports: [math]
primitives: [abs]
'''


def make_task(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("seed.py", SEED), ("score.py", SCORE), ("data.py", DATA), ("task.yaml", TASK)):
        (folder / name).write_text(text)
    return folder / "task.yaml"


def prefill(database, n: int) -> float:
    """Registers n distinct successful programs; returns seconds taken."""
    from islands import Candidate

    started = time.perf_counter()
    for i in range(n):
        source = SEED.replace("0.001", repr(0.001 + i * 1e-7)).replace("(0.0, 2.0)", f"(0.0, {2.0 + i * 1e-6!r})")
        database.register(
            Candidate(source=source, parent_ids=(1,), island_id=i % database.config.num_islands, outcome="OK",
                      score=0.5 + i * 1e-7, scores_per_test={"x": 0.5 + i * 1e-7}, proposer="prefill")
        )
    return time.perf_counter() - started


class Timed:
    """Wraps a runner or a proposer and adds up the seconds spent in it (as the loop sees them)."""

    def __init__(self, inner, totals: dict, name: str) -> None:
        self.inner, self.totals, self.name = inner, totals, name

    def submit(self, job):
        started = time.perf_counter()
        self.inner.submit(job)
        self.totals["submit"] = self.totals.get("submit", 0.0) + time.perf_counter() - started

    def results(self, timeout_s):
        return self.inner.results(timeout_s)

    async def propose(self, context):
        started = time.perf_counter()
        proposal = await self.inner.propose(context)
        self.totals["propose"] = self.totals.get("propose", 0.0) + time.perf_counter() - started
        return proposal

    def __getattr__(self, name):
        return getattr(self.inner, name)


def process_cpu_s(pid: int, with_children: bool = False) -> float:
    """CPU seconds (user + system) used by process `pid`, plus its reaped children's when asked; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if with_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def sandbox_workers(owners: set[int]) -> set[int]:
    """Process ids of the sandbox workers (zygotes) started by one of the processes `owners`."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            command = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not command or b"bwrap" in command[0] or not any(part.endswith(b"sandbox/zygote.py") for part in command):
            continue
        ancestor = int(name)
        while ancestor > 1 and ancestor not in owners:
            ancestor = parent_of(ancestor)
        if ancestor in owners:
            found.add(int(name))
    return found


class LLMServerProcess:
    """The loopback LLM server (tests/llm_server.py) in its own process, so that the engine's process measured
    here does not also pay for serving the answers."""

    def __enter__(self) -> LLMServerProcess:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.llm_server", "--answer", "vary"], cwd=REPO,
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # "LLM server listening on http://127.0.0.1:PORT"
        if "http://" not in line:
            raise RuntimeError(f"the LLM server did not start: {line!r}")
        self.openai_base_url = line.split()[-1].strip() + "/v1"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def measure(stored: int, candidates: int, proposer_kind: str, runner_kind: str, workers: int,
            profile: Path | None = None, in_flight: int = 8) -> dict:
    """Runs the loop on the trivial task; `in_flight` candidates per worker (and per island) at once."""
    from engine.search.evaluation import build_context
    from engine.search.loop import Budget, SearchLoop
    from engine.search.session import build_runner, prepare
    from islands import ProgramDatabase

    with tempfile.TemporaryDirectory() as scratch:
        task_yaml = make_task(Path(scratch) / "trivial")
        prepared = prepare(task_yaml, None, {"sandbox": {"runner": runner_kind, "num_workers": workers,
                                                         "max_in_flight_per_island": in_flight}})
        database = ProgramDatabase.open(Path(scratch) / "run.db", prepared.config.islands, prepared.meta)
        context = build_context(prepared.task, prepared.splits)
        runner = build_runner(context, prepared.config)
        server = None
        try:
            if proposer_kind.startswith("llm"):  # "llm", or "llm4": four answers per request
                from engine.llm.config import LLMConfig
                from engine.proposers.llm import build_llm_proposer

                server = LLMServerProcess().__enter__()
                samples = int(proposer_kind[3:] or 1)
                proposer = build_llm_proposer(LLMConfig(provider="openai", base_url=server.openai_base_url,
                                                        models=[{"name": "instant", "samples": samples}],
                                                        max_in_flight=16), environ={})
            else:
                from engine.proposers.mutator import MutationProposer

                proposer = MutationProposer(seed=0)
            totals: dict[str, float] = {}
            loop = SearchLoop(prepared.task, database, Timed(runner, totals, "runner"), Timed(proposer, totals, "proposer"),
                              proposer_name=proposer_kind, max_in_flight=in_flight * workers,
                              max_in_flight_per_island=in_flight)
            loop.ensure_seed()
            prefill_s = prefill(database, stored)
            register_s = [0.0]
            original_register = database.register

            def timed_register(candidate):
                started = time.perf_counter()
                program = original_register(candidate)
                register_s[0] += time.perf_counter() - started
                return program

            database.register = timed_register  # type: ignore[method-assign]
            cpu: dict[str, float] = {}

            def cpu_now() -> dict[str, float]:
                usage = resource.getrusage(resource.RUSAGE_SELF)
                actors = runner.actor_pids() if hasattr(runner, "actor_pids") else []
                return {
                    "engine": usage.ru_utime + usage.ru_stime,
                    "actors": sum(process_cpu_s(pid) for pid in actors),
                    "sandbox": sum(process_cpu_s(pid, with_children=True)
                                   for pid in sandbox_workers({os.getpid(), *actors})),
                    "llm server": process_cpu_s(server.process.pid) if server else 0.0,
                }

            async def warm_then_measure() -> tuple[int, float]:
                # Warm-up: let every worker start (Ray actors, bwrap, imports) before the clock runs. One event
                # loop for both, since an LLM client's connections belong to the loop that opened them.
                await loop.run(Budget(max_evals=database.num_evaluations + 2 * workers))
                before = database.num_evaluations
                register_s[0] = 0.0
                totals.clear()
                profiler = cProfile.Profile() if profile else None
                cpu_before = cpu_now()
                started = time.perf_counter()
                if profiler:
                    profiler.enable()
                await loop.run(Budget(max_evals=before + candidates, max_proposals=10 ** 9))
                elapsed = time.perf_counter() - started
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(str(profile))
                cpu.update({k: v - cpu_before[k] for k, v in cpu_now().items()})
                if hasattr(proposer, "aclose"):
                    await proposer.aclose()
                return database.num_evaluations - before, elapsed

            done, elapsed = asyncio.run(warm_then_measure())
            measured = sorted(database.all_programs(), key=lambda program: program.id)[-done:] if done else []
            outcomes = collections.Counter(str(getattr(p.outcome, "name", p.outcome)) for p in measured)
        finally:
            runner.close()
            database.close()
            if server is not None:
                server.__exit__(None, None, None)
    per = 1000 / max(done, 1)
    return {
        "stored": stored, "proposer": proposer_kind, "runner": runner_kind, "workers": workers,
        "candidates": done, "per_s": done / elapsed, "prefill_s": prefill_s,
        "register_ms": 1000 * register_s[0] / max(done, 1),
        "propose_ms": 1000 * totals.get("propose", 0.0) / max(done, 1),
        "submit_ms": 1000 * totals.get("submit", 0.0) / max(done, 1),
        "cpu_ms": {name: seconds * per for name, seconds in cpu.items()},
        "outcomes": ", ".join(f"{name} {count}" for name, count in outcomes.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=["llm:ray", "llm4:ray", "mutator:ray", "mutator:local"],
                        help="proposer:runner pairs; proposers: mutator, llm, llmN (N answers per request)")
    parser.add_argument("--in-flight", type=int, default=8,
                        help="candidates proposed or evaluating at once, per worker and per island")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="write a cProfile of the engine process's measured phase here (last configuration)")
    arguments = parser.parse_args()
    rows = []
    for stored in arguments.stored:
        for config in arguments.configs:
            proposer_kind, runner_kind = config.split(":")
            row = measure(stored, arguments.candidates, proposer_kind, runner_kind, arguments.workers,
                          arguments.profile, arguments.in_flight)
            rows.append(row)
            print(f"  done: {row}", file=sys.stderr, flush=True)
    print(f"\nwhole loop, trivial task, every candidate isolated, {arguments.workers} workers, "
          f"{arguments.in_flight} candidates in flight per worker")
    print(f"{'stored':>7} {'proposer':>9} {'runner':>7} {'cand':>5} {'cand/s':>7} {'register ms':>12} "
          f"{'propose ms':>11} {'submit ms':>10}   outcomes")
    for r in rows:
        print(f"{r['stored']:>7} {r['proposer']:>9} {r['runner']:>7} {r['candidates']:>5} {r['per_s']:>7.1f} "
              f"{r['register_ms']:>12.2f} {r['propose_ms']:>11.2f} {r['submit_ms']:>10.2f}   {r['outcomes']}")
    print("\nCPU milliseconds per candidate, by process (engine: the loop, proposer, database and Ray driver or "
          "local threads;\nactors: Ray's worker processes; sandbox: the forking workers and the candidates' own "
          "processes)")
    names = ("engine", "actors", "sandbox", "llm server")
    print(f"{'stored':>7} {'proposer':>9} {'runner':>7} " + " ".join(f"{n:>10}" for n in names)
          + f" {'total':>8} {'ceiling/s':>10}")
    for r in rows:
        cells = [r["cpu_ms"].get(n, 0.0) for n in names]
        total = sum(cells[:3])
        print(f"{r['stored']:>7} {r['proposer']:>9} {r['runner']:>7} " + " ".join(f"{c:>10.2f}" for c in cells)
              + f" {total:>8.2f} {1000 * (os.cpu_count() or 1) / total if total else 0:>10.0f}")
    print("ceiling/s: this machine's cores divided by the engine's CPU per candidate (all of it, not the LLM "
          "server's), i.e.\nthe rate if every core were busy with nothing else.")


if __name__ == "__main__":
    main()
