"""How sharp the neuron twin's score is around its generating parameters: the task's training score (and test
score) of the generating AdEx parameters moved by small amounts in the fitter's unconstrained space.

A fitter can only be asked to recover a score the data let it find. If parameters within float32 rounding of the
truth already score far below it, "0.85 of the generating parameters' score" is a test of luck, not of the fitter.
This prints two tables: random moves of every parameter at once (RANDOM_DRAWS draws per size, median and minimum
score), and one parameter at a time (the worse of +step and -step). No fitting; about a minute on 2 cores.

    DISCOVER_DATA_MIRROR=../shared/data python bench/neuron_twin.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.fit import read_params  # noqa: E402
from tasks.neuron import score as neuron  # noqa: E402
from tasks.neuron.data import GROUND_TRUTH, load  # noqa: E402
from tests.tasks.candidates import module_from  # noqa: E402

STEPS = (1e-5, 1e-4, 1e-3, 1e-2)  # unconstrained units; each parameter's range spans about 8 of them
RANDOM_DRAWS = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seeds the random moves")
    args = parser.parse_args()
    path = ROOT / "tasks" / "neuron" / "baselines" / "adex.py"
    membrane = module_from(path).membrane
    spec = read_params(path.read_text(), "membrane")
    splits = load(source="synthetic", seed=0)
    one = lambda z, cell: neuron.training_score(membrane, spec.constrain(z), cell)
    score = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(0, 0)))  # z (cells, draws, n), data per cell
    truth = np.stack([spec.unconstrain(GROUND_TRUTH[cell]) for cell in neuron.CELLS]).astype(np.float32)
    rng = np.random.default_rng(args.seed)
    n_cells, size = truth.shape
    started = time.perf_counter()
    for split in ("train", "test"):
        data = {key: jnp.asarray(splits[split][key], jnp.float32) for key in neuron.SWEEP_KEYS}
        spikes = np.asarray(data["spikes"]).sum(axis=-1).astype(int)
        at_truth = np.asarray(score(truth[:, None], data))[:, 0]
        print(f"\n{split} sweeps; spikes per sweep: " +
              ", ".join(f"{cell} {spikes[g].tolist()}" for g, cell in enumerate(neuron.CELLS)))
        print("score at the generating parameters: " +
              ", ".join(f"{cell} {at_truth[g]:.3f}" for g, cell in enumerate(neuron.CELLS)))

        moves = np.stack([rng.standard_normal((n_cells, RANDOM_DRAWS, size)) * step for step in STEPS], axis=1)
        moved = np.asarray(score((truth[:, None, None] + moves).reshape(n_cells, -1, size).astype(np.float32), data))
        moved = moved.reshape(n_cells, len(STEPS), RANDOM_DRAWS)
        print(f"\nall parameters moved at random (s.d. per parameter, {RANDOM_DRAWS} draws): median / minimum score")
        print("| cell | " + " | ".join(f"s.d. {step:g}" for step in STEPS) + " |")
        print("|---|" + "---|" * len(STEPS))
        for g, cell in enumerate(neuron.CELLS):
            print(f"| {cell} | " + " | ".join(f"{np.median(moved[g, k]):.3f} / {moved[g, k].min():.3f}"
                                              for k in range(len(STEPS))) + " |")

        one = np.repeat(truth[:, None], size * len(STEPS) * 2, axis=1).reshape(n_cells, size, len(STEPS), 2, size)
        for j in range(size):
            for k, step in enumerate(STEPS):
                one[:, j, k, 0, j] += step
                one[:, j, k, 1, j] -= step
        single = np.asarray(score(one.reshape(n_cells, -1, size).astype(np.float32), data))
        single = single.reshape(n_cells, size, len(STEPS), 2).min(axis=-1)
        print("\none parameter moved by +/- step (the worse of the two)")
        print("| parameter | " + " | ".join(f"{cell} {step:g}" for cell in neuron.CELLS for step in STEPS) + " |")
        print("|---|" + "---|" * (n_cells * len(STEPS)))
        for j, name in enumerate(spec.names):
            print(f"| {name} | " + " | ".join(f"{single[g, j, k]:.3f}" for g in range(n_cells)
                                             for k in range(len(STEPS))) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
