"""Best held-out score against evaluations: the mutation proposer versus re-sampling the seed's constants.

Runs the real search loop (program database, sandboxed worker pool, maximum-likelihood fits) twice on one
task, once with `MutationProposer` and once with `ConstantResampler`, a floor that only re-draws the numbers
of the seed (its PARAMS bounds and float literals), and prints the best held-out ("selection" split) score
reached after 50, 100, 200, 500 and 1000 evaluations.

    python bench/discovery.py tasks/bandit/task.yaml --max-evals 1000 --workers 16
    python bench/discovery.py tasks/bandit/task.yaml --max-evals 100 --workers 2 --fast

With --db-dir the databases are kept, and running the same command again resumes each search up to --max-evals
evaluations in all. Ctrl-C (or SIGTERM) stops a search cleanly, as it does `discover run`.

--fast scores a copy of the task with less data and a cheaper fit (fewer sessions, restarts and optimiser
steps), so the absolute scores differ from a full run; the comparison between proposers is what it shows.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.search.evaluation import build_context  # noqa: E402
from engine.search.loop import Budget, SearchLoop  # noqa: E402
from engine.mutation.declarations import find_function, params_statement_index  # noqa: E402
from engine.mutation.sites import FLOAT, analyse, expression_sites  # noqa: E402
from engine.mutation.workspace import number_node  # noqa: E402
from engine.proposers.base import PromptContext, Proposal, Shot  # noqa: E402
from engine.proposers.mutator import MutationProposer  # noqa: E402
from engine.search.session import build_runner, evaluate_file, prepare, run_with_signals  # noqa: E402
from islands import ProgramDatabase  # noqa: E402

CHECKPOINTS = (50, 100, 200, 500, 1000)


def time_proposals(task_yaml: Path, count: int) -> None:
    """Prints the CPU time per mutator proposal for a seed-only prompt and a prompt of the seed and baselines.

    Each proposal is timed next to an `ast.parse` of the seed, so that the ratio between the two stays
    meaningful on a machine whose speed varies with its load.
    """
    task_folder = task_yaml.resolve().parent
    seed = (task_folder / "seed.py").read_text()
    baselines = [p.read_text() for p in sorted((task_folder / "baselines").glob("*.py"))]
    proposer = MutationProposer()
    for label, sources in (("seed only", [seed]), (f"seed + {len(baselines)} baselines", [seed, *baselines])):
        shots = tuple(Shot(program_id=i, source=s, score=float(i)) for i, s in enumerate(sources))
        times, parse_times = [], []
        for k in range(count):
            started = time.process_time()
            ast.parse(seed)
            parse_times.append(time.process_time() - started)
            context = PromptContext(0, "agent", shots, "", len(shots), seed=k)
            started = time.process_time()
            proposer.mutate(context)
            times.append(time.process_time() - started)
        ratio = sum(times) / sum(parse_times)
        times.sort()
        parse_times.sort()
        print(
            f"{label}: median {times[count // 2] * 1e3:.2f} ms, mean {sum(times) / count * 1e3:.2f} ms, "
            f"p90 {times[9 * count // 10] * 1e3:.2f} ms per proposal (CPU time, {count} proposals); "
            f"ast.parse of the seed: median {parse_times[count // 2] * 1e6:.0f} us; "
            f"a proposal costs {ratio:.1f} parses of the seed"
        )


class ConstantResampler:
    """The floor: re-draws every number of the seed's evolved function, and nothing else.

    Each proposal starts again from the seed and multiplies each nonzero PARAMS bound and each float
    literal (never an index) by exp(N(0, 0.5)); bounds keep low < high. For a seed without float literals
    (the bandit seed) only the upper bounds of its parameters change.
    """

    def __init__(self, seed_source: str, function_name: str, seed: int = 0) -> None:
        self.seed_source = seed_source
        self.function_name = function_name
        self.seed = seed

    answers_per_request = 1

    async def propose(self, context: PromptContext) -> list[Proposal]:
        rng = random.Random(f"constants:{self.seed}:{context.seed}")
        module = ast.parse(self.seed_source)
        function = find_function(module, self.function_name)
        if function is None:
            return [Proposal(source="", proposer="constants", error=f"the seed has no function {self.function_name!r}")]
        changed = 0
        index = params_statement_index(function)
        if index is not None and isinstance(function.body[index].value, ast.Dict):
            for bounds in function.body[index].value.values:
                values = [ast.literal_eval(element) for element in bounds.elts]
                new = [v * math.exp(rng.gauss(0.0, 0.5)) if v != 0 else 0.0 for v in values]
                if new[0] < new[1]:
                    bounds.elts = [number_node(float(f"{v:.4g}")) for v in new]
                    changed += 1
        for site in expression_sites(function, analyse(function, module)):
            node = site.node
            if site.kind == FLOAT and isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value:
                site.replace(number_node(float(f"{node.value * math.exp(rng.gauss(0.0, 0.5)):.4g}")))
                changed += 1
        if not changed:
            return [Proposal(source="", proposer="constants", error="the seed has no numbers to re-draw")]
        return [Proposal(source=ast.unparse(module) + "\n", proposer="constants")]

    async def aclose(self) -> None:
        pass


def fast_task_copy(task_yaml: Path, folder: Path) -> Path:
    """Returns a copy of the bandit task with 15 sessions of 100 trials and a 4-restart, 60-step fit."""
    copy = folder / task_yaml.parent.name
    shutil.copytree(task_yaml.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    text = (copy / "task.yaml").read_text()
    text = text.replace("n_sessions: 40, n_trials: 200", "n_sessions: 15, n_trials: 100")
    # seed_score is the full task's; the cheaper copy's seed scores otherwise, and a run would stop on it.
    text = "\n".join(line for line in text.splitlines() if not line.startswith("seed_score")) + "\n"
    (copy / "task.yaml").write_text(text + "score_options: {restarts: 4, max_steps: 60}\n")
    return copy / "task.yaml"


def run_search(
    task_yaml: Path, proposer_name: str, db_path: Path, max_evals: int, workers: int, seed: int,
    max_minutes: float | None = None,
) -> dict[str, Any]:
    """Runs one search and returns its best-so-far curve: [(evaluations, best held-out score)]."""
    overrides = {"run": {"seed": seed, "max_evals": max_evals}, "sandbox": {"num_workers": workers}}
    prepared = prepare(task_yaml, None, overrides)
    task, config = prepared.task, prepared.config
    if proposer_name == "mutator":
        proposer: Any = MutationProposer(seed=seed)
    else:
        proposer = ConstantResampler(task.seed_source, task.function_name, seed=seed)
    database = ProgramDatabase.open(db_path, config.islands, prepared.meta, seed=seed)
    runner = build_runner(build_context(task, prepared.splits, seed=seed), config)
    loop = SearchLoop(
        task, database, runner, proposer, proposer_name=proposer_name, max_in_flight=2 * workers,
        max_in_flight_per_island=config.sandbox.max_in_flight_per_island, seed=seed,
    )
    started = time.monotonic()
    try:
        loop.ensure_seed()
        budget = Budget(
            max_evals=max_evals, max_hours=None if max_minutes is None else max_minutes / 60,
            max_proposals=20 * max_evals + 100,
        )
        summary = asyncio.run(run_with_signals(loop, budget, print))
        programs = sorted(database.all_programs(), key=lambda p: p.id)
    finally:
        close = getattr(runner, "close", None)
        if close is not None:
            close()
        database.close()
    best, curve = -math.inf, []
    for count, program in enumerate(programs, start=1):
        if program.score is not None and math.isfinite(program.score):
            best = max(best, program.score)
        curve.append((count, best))
    winner = max((p for p in programs if p.score is not None), key=lambda p: p.score, default=None)
    return {
        "proposer": proposer_name,
        "curve": curve,
        "stopped_because": summary.stopped_because,
        "duplicates": summary.duplicates,
        "failed": sum(1 for p in programs if p.score is None),
        "wall_s": time.monotonic() - started,
        "best_source": winner.source if winner else "",
    }


def best_at(curve: list[tuple[int, float]], evaluations: int) -> float | None:
    """Returns the best score after `evaluations` evaluations, or None when the run stopped earlier."""
    if len(curve) < evaluations:
        return None
    return curve[evaluations - 1][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task_yaml", type=Path, nargs="?", default=REPO / "tasks" / "bandit" / "task.yaml")
    parser.add_argument("--max-evals", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="score a cheaper copy of the task (see above)")
    parser.add_argument("--proposers", default="mutator,constants")
    parser.add_argument("--max-minutes", type=float, help="stop each proposer's search after this long")
    parser.add_argument("--json", type=Path, help="also write the curves here")
    parser.add_argument(
        "--db-dir", type=Path,
        help="keep each search's database here as <proposer>.db (for `discover verify`); default: a temporary folder",
    )
    parser.add_argument("--time-proposals", type=int, metavar="N", help="only time N mutator proposals and exit")
    parser.add_argument(
        "--reference", type=Path, action="append", default=[],
        help="also score this model file on the same task (e.g. tasks/bandit/baselines/forgetting_perseveration.py)",
    )
    args = parser.parse_args()
    if args.time_proposals:
        time_proposals(args.task_yaml, args.time_proposals)
        return

    if args.db_dir:
        args.db_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="discover-bench-") as scratch:
        task_yaml = fast_task_copy(args.task_yaml.resolve(), Path(scratch)) if args.fast else args.task_yaml
        for reference in args.reference:
            result, _ = evaluate_file(Path(task_yaml), reference.resolve())
            print(f"reference {reference}: held-out score {result.scores.get('score', float('nan')):.4f} "
                  f"({result.outcome.name})", flush=True)
        results = []
        for name in [n for n in args.proposers.split(",") if n]:
            result = run_search(
                task_yaml, name, (args.db_dir or Path(scratch)) / f"{name}.db", args.max_evals, args.workers,
                args.seed, args.max_minutes,
            )
            results.append(result)
            print(
                f"{name}: {len(result['curve'])} evaluations in {result['wall_s']:.0f} s, {result['failed']} failed, "
                f"{result['duplicates']} duplicates skipped; stopped: {result['stopped_because']}",
                flush=True,
            )
            if result["stopped_because"] == "interrupted":
                break
    if not results:
        return
    seed_score = results[0]["curve"][0][1] if results[0]["curve"] else float("nan")
    print(f"\nbest held-out score (selection split) vs evaluations; seed {seed_score:.4f}"
          f"{' (--fast task copy)' if args.fast else ''}")
    print("evaluations " + "".join(f"{r['proposer']:>12}" for r in results))
    for checkpoint in CHECKPOINTS:
        cells = [best_at(r["curve"], checkpoint) for r in results]
        print(f"{checkpoint:>11} " + "".join(f"{c:>12.4f}" if c is not None else f"{'-':>12}" for c in cells))
    print(f"{'final':>11} " + "".join(f"{r['curve'][-1][1]:>12.4f}" for r in results)
          + "   (" + ", ".join(f"{r['proposer']} after {len(r['curve'])}" for r in results) + ")")
    for result in results:
        print(f"\nbest program of {result['proposer']}:\n{result['best_source']}")
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items()} for r in results], indent=1))


if __name__ == "__main__":
    main()
