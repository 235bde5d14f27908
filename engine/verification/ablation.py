"""Ablation: which parts of a program carry evidence. Each parameter is knocked out and the rest refitted.

A parameter is knocked out by fixing it at its neutral value (0 when its bounds allow it, else the bound
nearest 0: `engine/verification/rewrite.py:neutral_value`), which switches off the term it scales; the other parameters are
refitted through the sandbox like any candidate. The change in held-out log-likelihood per trial (knocked out
minus full, per session, subject or neuron) gets a paired bootstrap interval. A parameter whose interval
reaches zero costs nothing when removed: there is no evidence for it in the held-out data.
"""

from __future__ import annotations

from typing import Any

from engine.verification.comparison import paired_difference, unit_values
from engine.verification.refit import Refitter
from engine.verification.rewrite import declared_parameters, fix_parameter, neutral_value
from sandbox.results import Outcome, RunResult

__all__ = ["ablate", "ablation_lines"]


def ablate(source: str, function_name: str, refitter: Refitter, per_test_units: str,
           full_result: RunResult) -> list[dict[str, Any]]:
    """Returns one row per parameter: {"parameter", "neutral", "outcome", "score", "change", "no_evidence"}.

    Args:
        full_result: the program's own result on the refitter's split and seed, to pair with.
    """
    full_units = unit_values(full_result.details.get("scores_per_test") or {}, per_test_units)
    parameters = declared_parameters(source, function_name)
    rows: list[dict[str, Any]] = []
    variants = []
    for name, (low, high) in parameters.items():
        value = neutral_value(low, high)
        variants.append((name, value, fix_parameter(source, function_name, name, value)))
    runnable = [(name, value, variant) for name, value, variant in variants if variant is not None]
    results = refitter.evaluate([variant for _, _, variant in runnable]) if runnable else []
    by_name = {name: result for (name, _, _), result in zip(runnable, results)}
    retry = [(name, fix_parameter(source, function_name, name, value, fold=False))
             for name, value, _ in runnable if by_name[name].outcome is not Outcome.OK]
    retry = [(name, variant) for name, variant in retry if variant is not None]
    if retry:  # folding away a zeroed term can change a shape; try again with the term left as 0 * x
        for (name, _), result in zip(retry, refitter.evaluate([variant for _, variant in retry])):
            by_name[name] = result
    for name, value, variant in variants:
        result = by_name.get(name)
        if result is None:
            rows.append({"parameter": name, "neutral": value, "outcome": "NOT_RUN", "score": None, "change": None,
                         "no_evidence": None,
                         "detail": "the program's only parameter (a candidate declares at least one)"})
            continue
        ok = result.outcome is Outcome.OK
        change = paired_difference(unit_values(result.details.get("scores_per_test") or {}, per_test_units),
                                   full_units) if ok else None
        rows.append({"parameter": name, "neutral": value, "outcome": result.outcome.name,
                     "score": result.scores.get("score") if ok else None,
                     "change": change.as_dict() if change else None,
                     "no_evidence": bool(change.high >= 0.0) if change else None,
                     "detail": result.error[-300:] if not ok else "" if change else
                               "fewer than two held-out units with a finite log-likelihood"})
    return rows


def ablation_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Returns the ablation table as text lines for `discover verify`; [] without rows."""
    if not rows:
        return []
    lines = ["ablation (knock out, refit the rest; change in held-out LL per trial, 95% paired bootstrap):"]
    for row in rows:
        change = row.get("change")
        if change:
            mark = "  no evidence" if row.get("no_evidence") else ""
            lines.append(f"  {row['parameter']} = {row['neutral']:g}: {change['mean']:+.4f} "
                         f"[{change['low']:+.4f}, {change['high']:+.4f}]{mark}")
        else:
            lines.append(f"  {row['parameter']} = {row['neutral']:g}: {row['outcome']} {row.get('detail', '')[:120]}")
    return lines
