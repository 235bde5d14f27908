"""The invariants every mutant keeps, checked on its source text."""

from __future__ import annotations

from engine.mutation.sites import module_names, undefined_reads
from islands.candidate_model import CandidateModel, signature

__all__ = ["candidate_problems", "signature"]


def candidate_problems(source: str, function_name: str, expected_signature: str | None = None) -> list[str]:
    """Returns what is wrong with a candidate module (empty when nothing is).

    Checks that the source parses; defines `function_name` (with `expected_signature`, when given);
    whose first statement after the docstring is a literal `PARAMS` dict with finite low < high bounds;
    that declares exactly the parameters the body reads as `params["name"]`; and that reads no name it
    does not define.
    """
    model = CandidateModel.parse(source, function_name)
    if model.module is None:
        return [model.problem.removeprefix("candidate source ").rstrip(".")]
    function = model.function
    if function is None:
        return [f"defines no module-level function {function_name!r}"]
    problems: list[str] = []
    if expected_signature is not None and model.signature != expected_signature:
        problems.append(f"signature is ({model.signature}); expected ({expected_signature})")
    if model.bounds is None:
        problems.append(model.problem.rstrip("."))
        return problems
    read = model.params_read
    undeclared = [name for name in read if name not in model.bounds]
    unread = [name for name in model.bounds if name not in read]
    if undeclared:
        problems.append(f"reads undeclared parameters {undeclared}")
    if unread:
        problems.append(f"declares parameters it never reads {unread}")
    missing = undefined_reads(function, module_names(model.module))
    if missing:
        problems.append(f"reads names it never defines {sorted(set(missing))}")
    return problems
