"""Turning an LLM's answer into candidate source: the module that defines the evolved function.

Answers are messy: code in ```python, ```py or bare fences, or none at all; prose before and after; cut off
by the token limit; the function named `agent_v3` when `agent_v2` was asked for, or `agent`, or something else
with the right arguments; extra helpers and imports; or only the indented body that continues the prompt's
header. `extract_candidate` handles all of these and returns a module whose evolved function is named
`function_name`. `apply_search_replace` applies SEARCH/REPLACE edit blocks, and `add_missing_definitions` brings
in the imports and helpers of the program that was edited when the answer uses them without defining them.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import textwrap
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass

from engine.llm.errors import CompletionParseError
from islands.candidate_model import PARAMS_NAME

__all__ = [
    "CompletionParseError",
    "add_missing_definitions",
    "apply_search_replace",
    "extract_candidate",
    "prompt_header",
    "rename_function",
]

PYTHON_FENCE_LANGUAGES = frozenset({"", "python", "py", "python3", "py3", "ipython", "pycon"})
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)")
# A line that starts Python code at column 0 in an unfenced answer (prose rarely looks like this).
_CODE_START = re.compile(
    r"^(?:def |async def |class |@\w|import \w|from [\w.]+ import |[A-Za-z_]\w*\s*(?::[^=]+)?=[^=]|#)"
)
_COMPOUND = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_EXCERPT_CHARS = 80


@dataclass(frozen=True, slots=True)
class _Region:
    """A stretch of an answer that may hold code; `unterminated` when its fence was never closed."""

    text: str
    fenced: bool
    unterminated: bool


@dataclass(frozen=True, slots=True)
class _Module:
    """Code that parses, with the function chosen as the evolved one and how good a match it is."""

    source: str
    tree: ast.Module
    target: ast.FunctionDef
    rank: int


def prompt_header(prompt: str, function_name: str, version: int) -> str:
    """Returns the prompt's trailing header `def {function_name}_v{version}(...):` (with any docstring after it).

    Returns "" when the prompt does not end with that header.
    """
    matches = list(re.finditer(rf"^def {re.escape(function_name)}_v{version}\b", prompt, flags=re.MULTILINE))
    return prompt[matches[-1].start() :].rstrip() if matches else ""


def extract_candidate(
    answer: str,
    function_name: str,
    version: int,
    header: str = "",
    truncated: bool = False,
    shown: Sequence[str] = (),
) -> str:
    """Returns module source whose evolved function is `function_name`, taken from an LLM answer.

    Args:
        answer: the completion text.
        function_name: the evolved function's name in candidates, e.g. "agent".
        version: the version the prompt asked for; `{function_name}_v{version}` is the preferred match.
        header: the prompt's trailing header (see `prompt_header`); it lets a body-only answer be completed
            and a function with another name be recognised by its argument names.
        truncated: the model hit its token limit, so the code at the very end of the answer may be cut off
            even where it parses.
        shown: the programs of the prompt (module sources). A function that repeats one of them, whatever
            its name, docstring and comments, is not a candidate, nor is a stub (a header with only a
            docstring, `pass` or `...`): models often re-type the prompt before their own function.

    Raises:
        CompletionParseError: when no function can be found; the message says what was found instead.
    """
    if not answer.strip():
        raise CompletionParseError("the answer is empty")
    arguments = _argument_names(header)
    known = _CopyCheck(shown, function_name)
    best: _Module | None = None
    best_region: _Region | None = None
    problems: list[str] = []
    regions = _regions(answer, truncated)
    for region in regions:
        for attempt in (_as_module, _as_body):
            module = attempt(region, function_name, version, header, arguments, problems, known)
            if module is not None and (best is None or module.rank <= best.rank):
                best, best_region = module, region  # later regions win ties: old code first, then the new
                break
    if best is None:
        expected = header.splitlines()[0] if header else f"def {function_name}_v{version}(...):"
        found = "; ".join(dict.fromkeys(problems)) or "no Python code"
        raise CompletionParseError(
            f"expected a Python function `{expected}`, found {found}. The answer starts with: {_excerpt(answer)}"
        )
    source = _finish(best, function_name, known)
    finished = next(node for node in ast.parse(source).body
                    if isinstance(node, ast.FunctionDef) and node.name == function_name)
    if known.copied(finished):  # e.g. the seed with its PARAMS written above it
        raise CompletionParseError(
            f"expected a new function `{function_name}_v{version}`, found `{best.target.name}` that repeats a "
            "program of the prompt unchanged once its PARAMS is put first in its body"
        )
    for region in reversed(regions):  # helpers and imports written in a separate block
        if region is not best_region:
            source = add_missing_definitions(source, region.text, function_name)
    return source


def rename_function(source: str, old_name: str, new_name: str) -> str:
    """Returns `source` with every identifier `old_name` renamed to `new_name`; comments and strings untouched."""
    lines = source.splitlines(keepends=True)
    spots = [
        token.start
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.NAME and token.string == old_name
    ]
    for row, column in reversed(spots):  # right to left, so that earlier columns stay valid
        line = lines[row - 1]
        lines[row - 1] = line[:column] + new_name + line[column + len(old_name) :]
    return "".join(lines)


def apply_search_replace(original: str, answer: str) -> str:
    """Returns `original` edited by the answer's SEARCH/REPLACE blocks.

    A block reads
        <<<<<<< SEARCH
        lines to find
        =======
        lines to put instead
        >>>>>>> REPLACE
    Each SEARCH text must occur in the program, exactly or up to each line's indentation and trailing spaces;
    a replacement found at another indentation is shifted by the same amount.

    Raises:
        CompletionParseError: when the answer has no blocks, or a SEARCH text is not found.
    """
    blocks = re.findall(
        r"^[ \t]*<{5,9}[ \t]*SEARCH[^\n]*\n(.*?)^[ \t]*={5,9}[ \t]*\n(.*?)^[ \t]*>{5,9}[ \t]*REPLACE",
        answer,
        flags=re.MULTILINE | re.DOTALL,
    )
    if not blocks:
        raise CompletionParseError("the answer has no SEARCH/REPLACE blocks")
    edited = original
    for number, (search, replace) in enumerate(blocks, start=1):
        if not search.strip():
            raise CompletionParseError(f"SEARCH/REPLACE block {number} has an empty SEARCH part")
        if search in edited:
            edited = edited.replace(search, replace, 1)
            continue
        edited_lines = edited.splitlines()
        search_lines = search.strip("\n").splitlines()
        replace_lines = replace.strip("\n").splitlines() if replace.strip() else []
        start = _find_lines(edited_lines, search_lines)
        if start is None:
            raise CompletionParseError(
                f"SEARCH/REPLACE block {number}: its SEARCH text is not in the program: {_excerpt(search)}"
            )
        shift = _indent(edited_lines[start]) - _indent(search_lines[0])
        shifted = [_shift_line(line, shift) for line in replace_lines]
        edited = "\n".join(edited_lines[:start] + shifted + edited_lines[start + len(search_lines) :]) + "\n"
    return edited


def add_missing_definitions(source: str, reference: str, function_name: str) -> str:
    """Returns `source` with the imports and top-level definitions of `reference` that it uses but lacks.

    Models often rewrite only the evolved function and call helpers, or use modules, that the program they were
    shown defines or imports. The evolved function of `reference` itself is never copied.
    """
    try:
        candidate_tree, reference_tree = ast.parse(source), ast.parse(reference)
    except SyntaxError:
        return source
    candidate_bound = _bound_names_in(candidate_tree)
    missing = _free_names(candidate_tree)
    added: list[ast.stmt] = []
    remaining = [
        statement for statement in reference_tree.body
        if _bound_names(statement)
        and not (isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.name == function_name)
    ]
    while missing:
        wanted = [statement for statement in remaining if _bound_names(statement) & missing]
        if not wanted:
            break  # what is still missing is defined nowhere; the sandbox will report the NameError
        added.extend(wanted)
        remaining = [statement for statement in remaining if statement not in wanted]
        for statement in wanted:  # a helper brought in may need imports or helpers of its own
            missing |= _free_names(ast.Module(body=[statement], type_ignores=[])) - candidate_bound
        missing -= set().union(*(_bound_names(statement) for statement in added))
    if not added:
        return source
    added.sort(key=lambda statement: statement.lineno)
    imports = [ast.get_source_segment(reference, s) for s in added if isinstance(s, ast.Import | ast.ImportFrom)]
    others = [_segment_with_decorators(reference, s) for s in added if not isinstance(s, ast.Import | ast.ImportFrom)]
    parts = ["\n".join(imports)] if imports else []
    parts += others
    return "\n\n\n".join(parts + [source.lstrip("\n")])


# -- finding code in an answer ----------------------------------------------------------------------------


def _regions(answer: str, truncated: bool = False) -> list[_Region]:
    """Returns the fenced blocks of Python (or of anything, when none is marked Python), else the whole answer."""
    blocks: list[tuple[str, str, bool]] = []
    fence: str | None = None
    language, lines = "", []
    for line in answer.replace("\r\n", "\n").split("\n"):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, language, lines = match.group(1), match.group(2).lower(), []
        elif match and match.group(1).startswith(fence) and not match.group(2):
            blocks.append((language, "\n".join(lines), False))
            fence = None
        else:
            lines.append(line)
    if fence is not None:
        blocks.append((language, "\n".join(lines), True))
    python = [block for block in blocks if block[0] in PYTHON_FENCE_LANGUAGES and block[1].strip()]
    chosen = python or [block for block in blocks if block[1].strip()]
    if chosen:
        return [_Region(text, fenced=True, unterminated=unterminated) for _, text, unterminated in chosen]
    return [_Region(answer.replace("\r\n", "\n"), fenced=False, unterminated=truncated)]


def _as_module(region, function_name, version, header, arguments, problems, known) -> _Module | None:
    """Reads a region as a module (defs, imports, helpers)."""
    lines = region.text.expandtabs(4).split("\n")
    if region.fenced:
        starts = [0]
    else:  # skip the prose before a line that starts code at column 0; try the first few such lines
        starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)][:8]
        if not starts:
            problems.append("no line that starts Python code")
    for start in starts:
        code = lines[start:]
        if all(not line.strip() or line[0].isspace() for line in code):
            if not any(line.lstrip().startswith("def ") for line in code):
                return None  # only indented lines without a def: a body, read by _as_body
            code = textwrap.dedent("\n".join(code)).split("\n")
        source = _parseable_prefix(code, region.unterminated, problems)
        module = _choose(source, function_name, version, arguments, problems, known) if source else None
        if module is not None:
            return module
    return None


def _as_body(region, function_name, version, header, arguments, problems, known) -> _Module | None:
    """Reads a region as the body of the function whose header ends the prompt."""
    if not header:
        return None
    lines = region.text.expandtabs(4).split("\n")
    indented = [i for i, line in enumerate(lines) if line.strip() and line[0].isspace()]
    if not region.fenced:
        # The body starts at the first indented line, after nothing but prose, and ends at the first line
        # indented less than it (prose again).
        if not indented or any(_CODE_START.match(line) for line in lines[: indented[0]]):
            return None
        lines = lines[indented[0] :]
        indent = _indent(lines[0])
        ends = [i for i, line in enumerate(lines) if line.strip() and _indent(line) < indent]
        lines = lines[: ends[0]] if ends else lines
    body = textwrap.dedent("\n".join(lines)).strip("\n")
    first = body.lstrip().split("\n")[0] if body.strip() else ""
    if not first or first.startswith(("def ", "async def ", "class ", "@")):
        return None
    if not re.search(r"^(?:return|raise)\b", body, flags=re.MULTILINE) and not region.unterminated:
        return None  # module-level code without a def is not a body unless it returns
    body_indent = " " * _body_indent(header)
    if body.startswith(('"', "'")):
        header = _def_lines(header)  # the answer brings its own docstring; two would push PARAMS down
    text = header.rstrip() + "\n" + textwrap.indent(body, body_indent, predicate=lambda line: True)
    source = _parseable_prefix(text.split("\n"), region.unterminated, problems)
    return _choose(source, function_name, version, arguments, problems, known) if source else None


def _parseable_prefix(lines: list[str], unterminated: bool, problems: list[str]) -> str:
    """Returns the longest run of leading lines that parses, without a trailing block that was cut off.

    A block was cut off when the answer goes on, indented, after the part that parses (its body was cut),
    or when its fence was never closed. A cut block is kept only when it is a function that already ends
    in `return` or `raise`.
    """
    end = len(lines)
    while end > 0:
        source = "\n".join(lines[:end]).rstrip()
        if not source:
            break
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            # A prefix that runs past the offending line fails the same way, so skip those.
            end = min(end - 1, error.lineno or end)
            continue
        rest = [line for line in lines[end:] if line.strip()]
        cut = unterminated or bool(rest and rest[0][0].isspace())
        if cut and tree.body and not _looks_complete(tree.body[-1]):
            last = tree.body[-1]
            kept = "\n".join(lines[: _first_line(last) - 1]).rstrip()
            name = getattr(last, "name", type(last).__name__.lower())
            problems.append(f"`{name}` cut off before its end")
            return kept
        return source
    problems.append("no complete Python statement")
    return ""


def _looks_complete(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
        return isinstance(statement.body[-1], ast.Return | ast.Raise)
    return not isinstance(statement, _COMPOUND)


def _choose(
    source: str, function_name: str, version: int, arguments: Sequence[str], problems, known: _CopyCheck
) -> _Module | None:
    """Returns the module with its evolved function chosen, or None (noting why) when it has no such function.

    Stubs and copies of the prompt's programs are never chosen. Ranks, best first: `{name}_v{version}`;
    another `{name}_vK` (the highest K); `{name}`; a function whose arguments are the header's (the one no
    other function calls, else the last).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    defined = [statement for statement in tree.body if isinstance(statement, ast.FunctionDef)]
    if not defined:
        problems.append("no function definition")
        return None
    functions = []
    for function in defined:
        if _is_stub(function):
            problems.append(f"only an empty `{function.name}` (a header with no body)")
        elif known.copied(function):
            problems.append(f"`{function.name}` that repeats a program of the prompt unchanged")
        else:
            functions.append(function)
    if not functions:
        return None
    versioned = re.compile(rf"{re.escape(function_name)}_v(\d+)")
    exact = [f for f in functions if f.name == f"{function_name}_v{version}"]
    if exact:
        return _Module(source, tree, exact[-1], 0)
    other_versions = [f for f in functions if versioned.fullmatch(f.name)]
    if other_versions:
        target = max(other_versions, key=lambda f: int(versioned.fullmatch(f.name).group(1)))
        return _Module(source, tree, target, 1)
    plain = [f for f in functions if f.name == function_name]
    if plain:
        return _Module(source, tree, plain[-1], 2)
    if arguments:
        matching = [f for f in functions if [a.arg for a in f.args.args] == list(arguments)]
        if matching:
            called = {node.id for f in functions for node in ast.walk(f) if isinstance(node, ast.Name)}
            roots = [f for f in matching if f.name not in called]
            return _Module(source, tree, (roots or matching)[-1], 3)
    names = ", ".join(f"{f.name}({', '.join(a.arg for a in f.args.args)})" for f in functions)
    problems.append(f"functions {names}")
    return None


def _finish(module: _Module, function_name: str, known: _CopyCheck) -> str:
    """Drops what does not belong in a candidate and renames the evolved function to `function_name`.

    Besides demo code and unused versions, that is what the model copied from the prompt and is no longer
    true of the new function: score comments ("# held-out score 0.7742; ...") and a docstring that is
    FunSearch's "Improved version of `agent_v0`." marker or a shown program's docstring.
    """
    target_name = module.target.name
    versioned = re.compile(rf"{re.escape(function_name)}_v\d+")
    kept_body = [s for s in module.tree.body if s is module.target or not _droppable(s, module, function_name)]
    names_in = {id(s): {node.id for node in ast.walk(s) if isinstance(node, ast.Name)} for s in kept_body}

    def called_by_others(statement: ast.stmt) -> bool:
        return any(statement.name in names_in[id(other)] for other in kept_body if other is not statement)

    # Other versions of the evolved function (models often repeat the prompt's) stay only when called.
    kept_body = [
        s for s in kept_body
        if s is module.target
        or not (isinstance(s, ast.FunctionDef) and versioned.fullmatch(s.name) and not called_by_others(s))
    ]
    lines = module.source.split("\n")
    kept_lines: list[str] = []
    previous_end = 0
    for statement in module.tree.body:
        end = statement.end_lineno or statement.lineno
        if statement in kept_body:
            kept_lines.extend(lines[previous_end:end])
        previous_end = end
    kept_lines = [line for line in kept_lines if not _SCORE_COMMENT.match(line)]
    source = _without_stale_docstring("\n".join(kept_lines), target_name, known).strip("\n") + "\n"
    source = _params_moved_inside(source, target_name)
    source = re.sub(r"\n{4,}", "\n\n\n", source)
    if target_name != function_name:
        source = rename_function(source, target_name, function_name)
    return source


def _droppable(statement: ast.stmt, module: _Module, function_name: str) -> bool:
    """Top-level statements that would run on import (demo calls, prints, __main__ blocks) or clash by name."""
    if isinstance(statement, ast.Expr):
        is_docstring = statement is module.tree.body[0] and isinstance(statement.value, ast.Constant)
        return not is_docstring
    if isinstance(statement, ast.If):
        return "__name__" in ast.unparse(statement.test)
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return statement.name == function_name  # the evolved function is about to take this name
    return False


# -- what the model copied from the prompt ----------------------------------------------------------------

# A comment line the prompt puts above each program (see engine.proposers.prompts.diagnostics_text), possibly renamed.
_SCORE_COMMENT = re.compile(r"^\s*#\s*(?:\w+_v\d+:\s*)?held-out score\b")
_MARKER_DOCSTRING = re.compile(r"^Improved version of `?\w+_v\d+`?\.?$")


class _CopyCheck:
    """Recognises functions and docstrings copied from the prompt's programs."""

    def __init__(self, shown: Sequence[str], function_name: str) -> None:
        self.shapes: set[str] = set()
        self.docstrings: set[str] = set()
        for source in shown:
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, ast.FunctionDef) and node.name == function_name:
                    self.shapes.add(_function_shape(node))
                    docstring = ast.get_docstring(node)
                    if docstring:
                        self.docstrings.add(docstring.strip())

    def copied(self, function: ast.FunctionDef) -> bool:
        return bool(self.shapes) and _function_shape(function) in self.shapes

    def stale(self, docstring: str) -> bool:
        """The docstring is FunSearch's version marker, or lines of the shown programs' docstrings, or both."""
        lines = [line.strip() for line in docstring.strip().split("\n") if line.strip()]
        if lines and _MARKER_DOCSTRING.match(lines[0]):
            lines = lines[1:]
        shown_lines = {line.strip() for text in self.docstrings for line in text.split("\n")}
        return all(line in shown_lines for line in lines)


def _function_shape(function: ast.FunctionDef) -> str:
    """The function's code without its name and docstring (comments are never in the tree)."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    return ast.dump(ast.Module(body=[ast.FunctionDef(name="_", args=function.args, body=body or [ast.Pass()],
                                                     decorator_list=[], returns=None, type_params=[])],
                               type_ignores=[]))


def _is_stub(function: ast.FunctionDef) -> bool:
    """A header with nothing but a docstring, `pass` or `...` in its body."""
    return all(
        isinstance(statement, ast.Pass)
        or (isinstance(statement, ast.Expr) and isinstance(getattr(statement, "value", None), ast.Constant))
        for statement in function.body
    )


def _params_moved_inside(source: str, name: str) -> str:
    """Returns `source` with a module-level `PARAMS = {...}` moved into function `name` as its first statement.

    Models often declare PARAMS above the function; the convention puts it first in the body, where the engine
    reads it. Done only when the function declares no PARAMS itself and no other function reads the global.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    declarations = [node for node in tree.body if isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == PARAMS_NAME
                    and isinstance(node.value, ast.Dict)]
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    target = next((node for node in functions if node.name == name), None)
    if len(declarations) != 1 or target is None:
        return source
    declares = any(isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == PARAMS_NAME
                                                        for t in node.targets) for node in ast.walk(target))
    read_elsewhere = any(isinstance(node, ast.Name) and node.id == PARAMS_NAME for function in functions
                         if function is not target for node in ast.walk(function))
    if declares or read_elsewhere:
        return source
    declaration = declarations[0]
    first = target.body[0]
    has_docstring = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
    after = first.end_lineno if has_docstring and len(target.body) > 1 else target.body[0].lineno - 1
    indent = " " * (target.body[0].col_offset)
    lines = source.split("\n")
    moved = [indent + line for line in ast.unparse(declaration).split("\n")]
    result = lines[:after] + moved + lines[after:]
    del result[declaration.lineno - 1 : declaration.end_lineno]  # above the function, so indices hold
    return re.sub(r"\n{4,}", "\n\n\n", "\n".join(result).strip("\n") + "\n")


def _without_stale_docstring(source: str, name: str, known: _CopyCheck) -> str:
    """Returns `source` without the docstring of function `name` when it was copied from the prompt."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name and len(node.body) > 1:
            docstring = ast.get_docstring(node)
            first = node.body[0]
            if docstring is not None and known.stale(docstring) and first.lineno > node.lineno:
                lines = source.split("\n")
                return "\n".join(lines[: first.lineno - 1] + lines[first.end_lineno :])
    return source


# -- small helpers --------------------------------------------------------------------------------------


def _def_lines(header: str) -> str:
    """Returns the `def ...:` line(s) of a header, without the docstring that may follow."""
    lines = header.split("\n")
    for end in range(1, len(lines) + 1):
        try:
            ast.parse("\n".join(lines[:end]).rstrip() + "\n    pass")
        except SyntaxError:
            continue
        return "\n".join(lines[:end])
    return header


def _argument_names(header: str) -> tuple[str, ...]:
    if not header:
        return ()
    tree = ast.parse(_def_lines(header) + "\n    pass") if _def_lines(header) != header or _parses(header) else None
    if tree and tree.body and isinstance(tree.body[0], ast.FunctionDef):
        return tuple(a.arg for a in tree.body[0].args.args)
    return ()


def _parses(header: str) -> bool:
    try:
        ast.parse(header.rstrip() + "\n    pass")
    except SyntaxError:
        return False
    return True


def _body_indent(header: str) -> int:
    """Returns the indentation of the header's body: that of a docstring after it, else 4."""
    for line in header.split("\n")[1:]:
        if line.strip() and line[0].isspace():
            return _indent(line)
    return 4


def _first_line(statement: ast.stmt) -> int:
    decorators = getattr(statement, "decorator_list", [])
    return min([statement.lineno] + [d.lineno for d in decorators])


def _segment_with_decorators(source: str, statement: ast.stmt) -> str:
    lines = source.split("\n")
    return "\n".join(lines[_first_line(statement) - 1 : statement.end_lineno])


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _shift_line(line: str, shift: int) -> str:
    if shift >= 0:
        return " " * shift + line if line.strip() else line
    return line[min(-shift, _indent(line)) :]


def _find_lines(haystack: list[str], needle: list[str]) -> int | None:
    """Returns where `needle` occurs in `haystack`, comparing lines without surrounding whitespace."""
    stripped = [line.strip() for line in needle]
    for start in range(len(haystack) - len(needle) + 1):
        if all(haystack[start + i].strip() == stripped[i] for i in range(len(needle))):
            return start
    return None


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _EXCERPT_CHARS else flat[:_EXCERPT_CHARS] + "...")


def _bound_names(statement: ast.stmt) -> set[str]:
    """Names a top-level statement defines: imports, functions, classes, assignment targets."""
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _bound_names_in(tree: ast.Module) -> set[str]:
    """Every name the code binds anywhere (a rough over-approximation of its locals and globals)."""
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def _free_names(tree: ast.Module) -> set[str]:
    """Names the code reads but never binds."""
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return used - _bound_names_in(tree)
