"""Terminal-safe text and export of code holding control characters: a table of sources and what comes out."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.verification.inspect_runs import export_source, printable
from islands import Program


def program(source: str) -> Program:
    return Program(id=7, island_id=0, source=source, parent_ids=(), outcome="OK", score=0.5, scores_per_test={},
                   error="", fitted_params={"alpha": 0.5}, timings={}, extra_scores={}, behaviour=None,
                   proposer="test", tokens=0, cost_usd=0.0, canonical_hash="", num_params=1, ast_size=1,
                   created_at=0.0)


def exported_code(source: str) -> str:
    text = export_source(program(source), function_name="agent", task_name="bandit", db_path=Path("run.db"))
    return text.split('"""\n\n', 1)[1].split("\n\nFITTED_PARAMS", 1)[0]


def meaning(source: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))  # "\<ESC>", an unknown escape
        return ast.dump(ast.parse(source))


HEAD = "def agent(params, x):\n"


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    assert printable("a\x1b[31mb\x07c\x9bd\x7fe") == "a\\x1b[31mb\\x07c\\x9bd\\x7fe"
    assert printable("line\r\nover\rwrite\tand\nmore") == "line\nover\\x0dwrite\tand\nmore"
    assert printable("plain ünïcode") == "plain ünïcode"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (HEAD + "    return x\n", HEAD + "    return x"),
        (HEAD.replace("\n", "\r\n") + "    return x\r", HEAD + "    return x"),  # CR LF and CR: newlines
        (HEAD + "    # \x1b]0;title\x07\n    return x\n", HEAD + "    # \\x1b]0;title\\x07\n    return x"),
        (HEAD + '    """Doc\x1b[2J."""\n    return x\n', HEAD + '    """Doc\\x1b[2J."""\n    return x'),
        (HEAD + '    s = "a\x1b" + b"\x07" + "\x9b"\n    return x\n',
         HEAD + '    s = "a\\x1b" + b"\\x07" + "\\x9b"\n    return x'),
        # "\<ESC>" is a backslash and ESC, as is "\\<ESC>": both come out as an escaped backslash and \x1b.
        (HEAD + '    s = "\\\x1b" + "\\\\\x1b"\n    return x\n',
         HEAD + '    s = "\\\\\\x1b" + "\\\\\\x1b"\n    return x'),
    ],
)
def test_export_escapes_control_characters_where_the_escape_means_the_same(source: str, expected: str) -> None:
    code = exported_code(source)
    assert code == expected
    assert meaning(code) == meaning(source.replace("\r\n", "\n").replace("\r", "\n"))


@pytest.mark.parametrize(
    ("source", "where"),
    [
        (HEAD + '    s = r"\x1b"\n    return x\n', "line 2, column 11"),  # a raw string reads no escapes
        (HEAD + '    s = f"{x}\x1b"\n    return x\n', "line 2, column 14"),
        ("\x0c" + HEAD + "    return x\n", "line 1, column 1"),
    ],
)
def test_export_refuses_a_control_character_no_escape_can_stand_for(source: str, where: str) -> None:
    with pytest.raises(EngineError, match=f"program 7 has the control character \\\\x(1b|0c) at {where}, outside"):
        exported_code(source)


def test_the_export_header_survives_quotes_and_backslashes_in_names() -> None:
    text = export_source(program(HEAD + "    return x\n"), function_name="agent", task_name='a"""b\x1b',
                         db_path=Path("C:\\new\\run.db"))
    module = ast.parse(text)
    assert ast.get_docstring(module).startswith('Program 7 of a discover run on task \'a"""b\\x1b\' (C:\\new\\run.db)')
