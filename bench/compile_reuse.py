"""How often a run's candidates reuse a compiled fit program: a mutator run with a fresh compilation cache.

Candidates that differ only in their float literals share one compiled program (`engine/constants.py`), which
the scoring workers' persistent compilation cache holds. This script runs `discover run` on a task with a new,
empty cache folder, then counts the fit programs that were compiled (one cache entry each) against the
candidates that were fitted, and prints the hit rate with the run's wall time.

    .venv/bin/python bench/compile_reuse.py                                   # bandit, 150 evaluations
    .venv/bin/python bench/compile_reuse.py --task tasks/tuning/task.yaml --max-evals 100

A fit program is counted by its cache entry (`jit_with_constants-*-cache`); tasks whose fitter is not the
engine's gradient fit (the neuron task's own search, ddm_sim's SMC-ABC) compile other programs and are not
counted this way.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="tasks/bandit/task.yaml")
    parser.add_argument("--max-evals", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="discover-reuse-") as folder:
        folder = Path(folder)
        cache = folder / "xla"
        config = folder / "config.yaml"
        config.write_text(f"sandbox:\n  compile_cache: {cache}\n")
        database = folder / "run.db"
        load = os.getloadavg()[0]
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine.cli", "run", str(ROOT / args.task), "--db", str(database),
                        "--config", str(config), "--max-evals", str(args.max_evals), "--quiet"],
                       cwd=ROOT, check=True)
        wall = time.perf_counter() - started
        with sqlite3.connect(database) as connection:
            outcomes = dict(connection.execute("select outcome, count(*) from programs group by outcome"))
        compiled = [p for p in cache.iterdir() if p.name.startswith("jit_with_constants") and p.name.endswith("-cache")]
        fitted = outcomes.get("OK", 0)
        print(f"load average at start {load:.2f} on {os.cpu_count()} cores")
        print(f"{'task':30} {args.task}")
        print(f"{'evaluations':30} {sum(outcomes.values())} ({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))})")
        print(f"{'fit programs compiled':30} {len(compiled)}")
        print(f"{'fitted candidates':30} {fitted}")
        if fitted:
            print(f"{'reused a compiled program':30} {max(fitted - len(compiled), 0) / fitted:.0%}")
        print(f"{'run wall time (s)':30} {wall:.1f}")


if __name__ == "__main__":
    main()
