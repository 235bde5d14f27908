"""Prints what simplification did to one program: size, held-out scores, ablation, next to the ground truth.

    python bench/simplify_table.py DB ORIGINAL_ID SIMPLIFIED_ID [--task TASK_YAML] [--workers 2]

Refits the original, the simplified program, the seed and the task's ground-truth baseline on the selection
split (what simplification decided on) and on the test split (never used by the search or by simplification),
through the sandbox like `discover verify`; then knocks out each parameter of the simplified program on the test
split. Prints one table of parameters, AST size and scores, the paired differences (simplified minus original)
and the ablation rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/engine.py would shadow the package

from engine.verification.ablation import ablate, ablation_lines
from engine.verification.comparison import paired_difference, unit_values
from engine.verification.refit import Refitter
from engine.search.session import prepare
from engine.verification.verify import locate_task
from islands import ProgramDatabase, complexity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("original", type=int)
    parser.add_argument("simplified", type=int)
    parser.add_argument("--task", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    with ProgramDatabase.open_readonly(arguments.db) as reader:
        meta = reader.meta
        original, simplified = reader.get(arguments.original), reader.get(arguments.simplified)
    prepared = prepare(locate_task(meta, arguments.task))
    task = prepared.task
    units = task.file.per_test_units
    truth = {name: source for name, source in task.baseline_sources().items()
             if task.file.baselines[name].kind == "ground_truth"}
    models = {"original": original.source, "simplified": simplified.source, "seed": task.seed_source, **truth}
    scores: dict[str, dict[str, object]] = {}
    for split in ("selection", "test"):
        with Refitter(prepared, heldout=split, workers=arguments.workers, hidden_paths=[arguments.db]) as refitter:
            results = dict(zip(models, refitter.evaluate(list(models.values()))))
            if split == "test":
                ablation = ablate(simplified.source, task.function_name, refitter, units, results["simplified"])
        scores[split] = results
    print(f"{'model':28s} {'params':>6s} {'AST':>5s} {'selection':>10s} {'test':>8s}")
    for name, source in models.items():
        size = complexity(source, task.function_name)
        row = [scores[split][name].scores.get("score") for split in ("selection", "test")]
        print(f"{name:28s} {size.num_params:6d} {size.ast_size:5d} "
              + " ".join(f"{value:10.4f}" if value is not None else f"{'-':>10s}" for value in row))
    for split in ("selection", "test"):
        per_unit = {name: unit_values(result.details.get("scores_per_test") or {}, units)
                    for name, result in scores[split].items()}
        difference = paired_difference(per_unit["simplified"], per_unit["original"])
        print(f"simplified minus original, {split}: {difference.describe() if difference else '-'}")
        for name in truth:
            difference = paired_difference(per_unit["simplified"], per_unit[name])
            print(f"simplified minus {name}, {split}: {difference.describe() if difference else '-'}")
    print("\n".join(ablation_lines(ablation)))
    no_evidence = [row["parameter"] for row in ablation if row.get("no_evidence")]
    print(f"parameters whose ablation costs nothing: {no_evidence or 'none'}")
    print("\nsimplified program:\n" + simplified.source)


if __name__ == "__main__":
    main()
