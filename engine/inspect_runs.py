"""Read-only views of a run's database: diffs between programs, ancestry, and standalone export."""

from __future__ import annotations

import ast
import difflib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from islands import Program

__all__ = ["program_diff", "lineage", "export_source", "LineageStep"]


def program_diff(old: Program, new: Program) -> str:
    """Returns a unified diff of two programs' code, headed by their ids and scores."""

    def label(program: Program) -> str:
        score = f"{program.score:.4f}" if program.score is not None else program.outcome
        return f"program {program.id} (score {score})"

    return "".join(
        difflib.unified_diff(
            old.source.splitlines(keepends=True),
            new.source.splitlines(keepends=True),
            fromfile=label(old),
            tofile=label(new),
        )
    )


@dataclass(frozen=True, slots=True)
class LineageStep:
    """One ancestor: its id, score, outcome, proposer, and the parent it is traced through."""

    id: int
    score: float | None
    outcome: str
    proposer: str
    island_id: int
    parent_ids: tuple[int, ...]


def lineage(get, program_id: int, max_steps: int = 10_000) -> list[LineageStep]:
    """Returns the ancestry chain from a program back to the seed, following each program's best-scoring parent.

    Args:
        get: program id -> Program (e.g. a database's `get`).
    """
    steps: list[LineageStep] = []
    seen: set[int] = set()
    current: int | None = program_id
    while current is not None and current not in seen and len(steps) < max_steps:
        seen.add(current)
        program = get(current)
        steps.append(
            LineageStep(program.id, program.score, program.outcome, program.proposer, program.island_id, tuple(program.parent_ids))
        )
        parents = [get(pid) for pid in program.parent_ids]
        # The prompt's best shot is its last parent; follow the best-scoring one so the chain shows the improvement path.
        scored = [p for p in parents if p.score is not None]
        current = max(scored, key=lambda p: p.score).id if scored else (parents[-1].id if parents else None)
    return steps


def _function_args(source: str, function_name: str) -> list[str]:
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function_name:
            return [arg.arg for arg in node.args.args]
    raise ValueError(f"program has no function '{function_name}'.")


def export_source(program: Program, *, function_name: str, task_name: str, db_path: Path) -> str:
    """Returns a standalone module: the program's code, its fitted parameters, and a ready-to-call wrapper.

    The file imports only what the program imports (e.g. jax); it does not need the engine.
    """
    args = _function_args(program.source, function_name)
    if "params" not in args:
        raise ValueError(f"{function_name} takes no `params` argument; nothing to bind the fitted parameters to.")
    rest = [a for a in args if a != "params"]
    call = ", ".join("FITTED_PARAMS" if a == "params" else a for a in args)
    fitted: dict[str, Any] = {k: v for k, v in program.fitted_params.items()}
    score = f"{program.score:.6f}" if program.score is not None else "none"
    header = (
        f'"""Program {program.id} of a discover run on task \'{task_name}\' ({db_path}), exported '
        f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.\n\n'
        f"Held-out selection score: {score}. Parameters below were fitted by the engine on the training split.\n"
        f"Call `{function_name}_fitted({', '.join(rest)})`, or `{function_name}(FITTED_PARAMS, ...)`.\n"
        '"""\n\n'
    )
    body = program.source.rstrip() + "\n\n"
    body += "FITTED_PARAMS = " + json.dumps(fitted, indent=4) + "\n\n\n"
    body += f"def {function_name}_fitted({', '.join(rest)}):\n"
    body += f'    """{function_name} with the fitted parameters bound."""\n'
    body += f"    return {function_name}({call})\n\n\n"
    body += 'if __name__ == "__main__":\n'
    body += '    for name, value in FITTED_PARAMS.items():\n        print(f"{name} = {value}")\n'
    return header + body
