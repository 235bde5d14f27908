"""The neuron task's recovery test: the task's own fit gets the twin's generating parameters back. In a file of its
own, so that a parallel test run hands it to a worker of its own at the start (tests/conftest.py: RUN_FIRST)
instead of after test_neuron.py's other slow tests."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from engine.task.spec import load_task
from tests.tasks.candidates import candidate_from

TASK = Path(__file__).resolve().parents[2] / "tasks/neuron"


@pytest.mark.slow
def test_the_fit_recovers_the_twins_generating_parameters():
    """Recovery first: fitted to both cells of the twin with the task's own fit (96 restarts; as a run scores a
    candidate), the generating AdEx model gets back at least 0.85 of its generating parameters' training score, and
    per cell its capacitance, leak, threshold and adaptation and at least 0.85 of the generating parameters' score on
    the held-out test sweep: B6 in both of fit seeds 0 and 1, B8 in at least one.

    B8 fires fastest (up to 71 spikes in 2 s), and about 2 in 64 random starts reach its generating parameters'
    basin: with 16 restarts (version 4) its test sweep scored 0.09-0.43 in each of fit seeds 0-4; with 64 it scored
    0.82-0.94 in all five in version 5 and 0.71-0.94 in version 6; with reverse-mode gradients and still 64 (a
    change of rounding only), B8 was lost in fit seed 0 here (training score 0.741) and scored 0.21 in fit seed 3.
    With 96 (version 7) it scored 0.90-0.94 in all five (tasks/neuron/README.md, "Recovering the twin"). B6 was
    recovered in every seed since the twin starts where the simulator does and the fitter scans its stage-1 loss
    (version 4); before, it was a float32 lottery (seed 0 missed on one AMD EPYC machine)."""
    from tasks.neuron.data import GROUND_TRUTH
    from tasks.neuron.score import CELLS, training_score

    task = load_task(TASK / "synthetic.yaml")
    splits = task.load_splits()
    adex = candidate_from(TASK / "baselines/adex.py")
    score = task.score.load()

    def truth_score(split: str, c: int) -> float:
        cell = {key: jnp.asarray(value[c]) for key, value in splits[split].items() if key != "step_pA"}
        return float(training_score(adex, {n: jnp.float32(v) for n, v in GROUND_TRUTH[CELLS[c]].items()}, cell))

    ceiling_train = float(np.mean([truth_score("train", c) for c in range(len(CELLS))]))
    recovered = {name: [] for name in CELLS}
    for seed in (0, 1):
        result = score(adex, splits["train"], splits["test"], seed=seed)
        assert result.train_score >= 0.85 * ceiling_train, (seed, result.train_score, ceiling_train)
        for c, name in enumerate(CELLS):
            [held_out] = [value for key, value in result.scores_per_test.items() if key.startswith(f"{name}_")]
            fitted = {key: round(result.fitted_params[name][key], 3) for key in GROUND_TRUTH[name]}
            recovered[name].append((held_out >= 0.85 * truth_score("test", c), held_out, fitted))
    assert all(ok for ok, _, _ in recovered["B6"]) and any(ok for ok, _, _ in recovered["B8"]), recovered
    for name in CELLS:
        truth = GROUND_TRUTH[name]
        for _, _, fitted in (r for r in recovered[name] if r[0]):
            for key, tolerance in {"c_pF": 0.1, "g_l_nS": 0.15, "tau_w_ms": 0.2, "b_pA": 0.15}.items():
                assert fitted[key] == pytest.approx(truth[key], rel=tolerance), (name, fitted)
            assert fitted["v_t_mV"] == pytest.approx(truth["v_t_mV"], abs=1.5), (name, fitted)
            assert fitted["a_nS"] == pytest.approx(truth["a_nS"], abs=0.6), (name, fitted)
