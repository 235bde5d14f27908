"""Read-only views of a run's database: diffs between programs, ancestry, standalone export, terminal-safe text."""

from __future__ import annotations

import ast
import difflib
import io
import json
import re
import time
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.errors import EngineError
from engine.task.results import fitted_groups
from islands import Program
from islands.candidate_model import CandidateModel

__all__ = ["program_diff", "lineage", "export_source", "printable", "LineageStep"]

# C0 controls but newline and tab, DEL, and C1 controls: a terminal acts on them (ESC starts escape sequences
# that recolour, move the cursor or retitle the window; CR returns to the start of the line and overwrites it).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str) -> str:
    """Returns `text` safe to print on a terminal: each control character but newline and tab written as `\\x1b`.

    Line ends written as CR LF become plain newlines first (Python reads them as newlines too).
    """
    return _CONTROL.sub(_escape, text.replace("\r\n", "\n"))


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
    model = CandidateModel.parse(source, function_name)
    if model.module is None:
        raise EngineError(f"the program's code does not parse: {model.problem.partition(': ')[2]}")
    if model.function is None:
        raise EngineError(f"program has no function '{function_name}'.")
    return [arg.arg for arg in model.function.args.args]


def _code_without_controls(program: Program) -> str:
    """Returns the program's code with the same meaning and no control characters but newline and tab.

    CR and CR LF line ends become newlines (Python reads them so). In comments and in plain string literals
    (not raw, not f-strings) a control character becomes an escape such as `\\x1b`, which stands for the same
    character there. Anywhere else no text keeps the meaning, and EngineError says where it is.
    """
    source = program.source.replace("\r\n", "\n").replace("\r", "\n")
    if not _CONTROL.search(source):
        return source
    starts = [0]
    for line in source.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    edits: list[tuple[int, int, str]] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            begin, end = starts[token.start[0] - 1] + token.start[1], starts[token.end[0] - 1] + token.end[1]
            if token.type == tokenize.COMMENT:
                edits.append((begin, end, _CONTROL.sub(_escape, token.string)))
            elif token.type == tokenize.STRING and _is_plain_literal(token.string):
                edits.append((begin, end, _escape_in_literal(token.string)))
    except (tokenize.TokenError, SyntaxError):
        pass  # the control characters outside comments and literals are reported below
    covered = [(begin, end) for begin, end, _ in edits]
    for match in _CONTROL.finditer(source):
        if not any(begin <= match.start() < end for begin, end in covered):
            line = source.count("\n", 0, match.start()) + 1
            column = match.start() - starts[line - 1] + 1
            raise EngineError(
                f"program {program.id} has the control character {_escape(match)} at line {line}, column {column}, "
                "outside comments and plain string literals, where no escape keeps the program's meaning; nothing "
                "was written (discover show prints the code with such characters escaped)"
            )
    text = source
    for begin, end, replacement in sorted(edits, reverse=True):
        text = text[:begin] + replacement + text[end:]
    with warnings.catch_warnings():  # "\\<ESC>" in the stored code is an unknown escape, which Python warns about
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        changed = ast.dump(ast.parse(text)) != ast.dump(ast.parse(source))
    if changed:  # a safety net: the meaning must not change
        raise EngineError(f"program {program.id}: escaping its control characters would change its meaning; "
                          "nothing was written (discover show prints the code with them escaped)")
    return text


def _is_plain_literal(token: str) -> bool:
    """Whether a string literal's escapes are read (not a raw string) and it holds no code (not an f-string)."""
    prefix = token[: len(token) - len(token.lstrip("rRbBuUfF"))]
    return not set(prefix.lower()) & {"r", "f"}


def _escape_in_literal(literal: str) -> str:
    """Writes the control characters of a plain string literal's source as escapes that stand for them."""
    out: list[str] = []
    for index, char in enumerate(literal):
        if _CONTROL.fullmatch(char):
            backslashes = index - len(literal[:index].rstrip("\\"))
            # After an odd run of backslashes the last one stood for itself (an unknown escape): keep it one.
            out.append("\\" * (backslashes % 2) + f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def _docstring_text(text: str) -> str:
    """Text safe inside the export's triple-quoted docstring: backslashes and quotes escaped, no controls."""
    return printable(text).replace("\\", "\\\\").replace('"', '\\"')


def export_source(program: Program, *, function_name: str, task_name: str, db_path: Path,
                  notes: Sequence[str] = ()) -> str:
    """Returns a standalone module: the program's code, its fitted parameters, and a ready-to-call wrapper.

    The file imports only what the program imports (e.g. jax); it does not need the engine. Control characters
    in the code are escaped where that keeps its meaning (see `_code_without_controls`); elsewhere EngineError.
    `notes` are lines added to the header, e.g. the program's ablation table from `discover verify`.
    """
    source = _code_without_controls(program)
    args = _function_args(source, function_name)
    if "params" not in args:
        raise EngineError(f"{function_name} takes no `params` argument; nothing to bind the fitted parameters to.")
    rest = [a for a in args if a != "params"]
    call = ", ".join("FITTED_PARAMS" if a == "params" else a for a in args)
    groups = fitted_groups(program.fitted_params)
    grouped = len(groups) > 1
    fitted: dict[str, Any] = groups if grouped else next(iter(groups.values()), {})
    first = next(iter(groups), "")
    how, bound = (", group=...", "FITTED_PARAMS_BY_GROUP[group]") if grouped else ("", "FITTED_PARAMS")
    score = f"{program.score:.6f}" if program.score is not None else "none"
    header = (
        f'"""Program {program.id} of a discover run on task \'{_docstring_text(task_name)}\' '
        f'({_docstring_text(str(db_path))}), exported '
        f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.\n\n'
        f"Held-out selection score: {score}. Parameters below were fitted by the engine on the training split.\n"
        f"Call `{function_name}_fitted({', '.join(rest)}{how})`, or `{function_name}({bound}, ...)`.\n"
        + "".join(f"{_docstring_text(line)}\n" for line in (["", *notes] if notes else []))
        + '"""\n\n'
    )
    body = source.rstrip() + "\n\n"
    if grouped:  # one parameter set per group (subject, monkey, neuron, cell)
        body += "FITTED_PARAMS_BY_GROUP = " + json.dumps(fitted, indent=4) + "\n\n\n"
        body += f"def {function_name}_fitted({', '.join([*rest, f'group={first!r}'])}):\n"
        body += f'    """{function_name} with the parameters fitted to `group` bound."""\n'
        body += "    FITTED_PARAMS = FITTED_PARAMS_BY_GROUP[group]\n"
        body += f"    return {function_name}({call})\n\n\n"
        body += 'if __name__ == "__main__":\n'
        body += ('    for group, values in FITTED_PARAMS_BY_GROUP.items():\n'
                 '        print(group + ": " + ", ".join(f"{name} = {value}" for name, value in values.items()))\n')
        return header + body
    body += "FITTED_PARAMS = " + json.dumps(fitted, indent=4) + "\n\n\n"
    body += f"def {function_name}_fitted({', '.join(rest)}):\n"
    body += f'    """{function_name} with the fitted parameters bound."""\n'
    body += f"    return {function_name}({call})\n\n\n"
    body += 'if __name__ == "__main__":\n'
    body += '    for name, value in FITTED_PARAMS.items():\n        print(f"{name} = {value}")\n'
    return header + body
