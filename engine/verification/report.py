"""`discover report DB -o report.html`: one self-contained HTML file (plots embedded) about a run.

Contents: best selection score vs evaluations for each island; outcome counts over time; the Pareto front of
held-out score vs complexity; for the top programs their code, diff to their parent, fitted parameters and the
task's verification figures; and the test-split scores of the final selected models next to the baselines,
which the search never saw.
"""

from __future__ import annotations

import collections
import html
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.verification.figures import draw_task_figure, png_data_uri, to_png, validate_figure
from engine.task.results import fitted_groups
from engine.verification.inspect_runs import program_diff
from islands import Program

__all__ = ["build_report", "write_report"]

OUTCOME_COLOURS = {
    "OK": "tab:green",
    "TIMEOUT": "tab:orange",
    "CRASHED": "tab:red",
    "INVALID_OUTPUT": "tab:purple",
    "SYNTAX_ERROR": "tab:brown",
    "FORBIDDEN": "black",
    "OUT_OF_MEMORY": "tab:pink",
    "NO_CODE": "tab:gray",
    "WORKER_LOST": "tab:olive",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _text(value: Any) -> str:
    """Any value read from the database, as HTML text: escaped, whatever its type (the file may have been edited)."""
    return html.escape(str(value), quote=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _running_best(programs: Sequence[Program], start: float, keep) -> tuple[list[int], list[float]]:
    """Returns (evaluation numbers, best score so far) over the programs that `keep` selects."""
    xs, ys, best = [], [], start
    for number, program in enumerate(programs, start=1):
        if keep(program) and program.score is not None:
            best = max(best, program.score)
        if keep(program) and math.isfinite(best):
            xs.append(number)
            ys.append(best)
    return xs, ys


def plot_best_by_island(programs: Sequence[Program]) -> bytes:
    """Best selection score so far vs evaluation number, one line per island and one for the whole run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    evaluated = [p for p in programs if p.proposer != "seed"]
    seed = next((p for p in programs if p.proposer == "seed"), None)
    start = seed.score if seed is not None and seed.score is not None else -math.inf
    cmap = plt.get_cmap("tab10")
    for index, island in enumerate(sorted({p.island_id for p in evaluated})):
        xs, ys = _running_best(evaluated, start, lambda p, island=island: p.island_id == island)
        if xs:
            ax.step(xs, ys, where="post", lw=1, color=cmap(index % 10), alpha=0.8, label=f"island {island}")
    xs, ys = _running_best(evaluated, start, lambda p: True)
    if xs:
        ax.step(xs, ys, where="post", lw=2.2, color="black", label="whole run")
    if math.isfinite(start):
        ax.axhline(start, color="gray", ls="--", lw=1, label="seed")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best selection score")
    ax.set_title("Best held-out (selection) score over the run")
    ax.legend(fontsize=7, ncol=2, frameon=False, loc="lower right")
    return to_png(fig)


def plot_outcomes(programs: Sequence[Program]) -> bytes:
    """Cumulative count of each outcome vs evaluation number."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    evaluated = [p for p in programs if p.proposer != "seed"]
    outcomes = sorted({p.outcome for p in evaluated})
    x = np.arange(1, len(evaluated) + 1)
    stacks = [np.cumsum([p.outcome == outcome for p in evaluated]) for outcome in outcomes]
    if evaluated:
        colours = [OUTCOME_COLOURS.get(o, "gray") for o in outcomes]
        ax.stackplot(x, *stacks, labels=outcomes, colors=colours, alpha=0.8)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("candidates (cumulative)")
    ax.set_title("Outcomes over the run")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    return to_png(fig)


def plot_pareto(programs: Sequence[Program], front: Sequence[Program]) -> bytes:
    """Held-out score vs complexity (free parameters; AST size), Pareto-optimal programs highlighted."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
    front_ids = {p.id for p in front}
    for ax, attribute, label in ((axes[0], "num_params", "free parameters"), (axes[1], "ast_size", "AST size (nodes)")):
        ok = [p for p in programs if p.score is not None and _is_number(getattr(p, attribute))]
        ax.scatter([getattr(p, attribute) for p in ok], [p.score for p in ok], s=10, color="lightgray", label="programs")
        chosen = sorted((p for p in ok if p.id in front_ids), key=lambda p: getattr(p, attribute))
        ax.scatter(
            [getattr(p, attribute) for p in chosen], [p.score for p in chosen], s=28, color="tab:red",
            label="Pareto front", zorder=3,
        )
        for p in chosen:
            ax.annotate(str(p.id), (getattr(p, attribute), p.score), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
    axes[0].set_ylabel("selection score")
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle("Held-out score vs complexity", fontsize=10)
    return to_png(fig)


def _img(png: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{_text(alt)}" src="{png_data_uri(png)}">'


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _params_table(stored: Any) -> str:
    """One row per parameter, one column per group (a pooled fit has one)."""
    groups = fitted_groups(stored)
    if not groups:
        return "<p>(no fitted parameters)</p>"
    names = list(dict.fromkeys(name for values in groups.values() for name in values))

    def cell(value: Any) -> str:
        return f"<td>{value:.4g}</td>" if _is_number(value) else f"<td>{_text(value)}</td>"

    header = "".join(f"<th>{_text(group)}</th>" for group in groups) if len(groups) > 1 else "<th>fitted value</th>"
    rows = "".join(f"<tr><td>{_text(name)}</td>" + "".join(cell(values.get(name, "")) for values in groups.values())
                   + "</tr>" for name in names)
    return f"<table><tr><th>parameter</th>{header}</tr>{rows}</table>"


def _test_table(record: dict[str, Any]) -> str:
    def order(item):
        score = item[1]["score"]
        return -score if score is not None else math.inf

    from engine.verification.verify import fit_spread

    fits = len(record.get("fit_seeds") or [])

    def spread_cell(row) -> str:
        spread = fit_spread(row)
        return f"<td>{_number(spread[0])} ± {_number(spread[1])}</td>" if spread else "<td>-</td>"

    rows = [
        f"<tr><td>{_text(name)}</td><td>{_text(row['kind'])}</td>"
        f"<td>{_number(row['score']) if row['score'] is not None else _text(row['outcome'])}</td>"
        + (spread_cell(row) if fits > 1 else "") + "</tr>"
        for name, row in sorted(record["test_scores"].items(), key=order)
    ]
    head = "<tr><th>model</th><th>kind</th><th>test score</th>" + (
        f"<th>mean ± s.d. over {fits} fits</th>" if fits > 1 else "") + "</tr>"
    return "<table>" + head + "".join(rows) + "</table>"


def _interval_cell(entry: dict[str, Any] | None) -> str:
    if not isinstance(entry, dict) or not all(_is_number(entry.get(key)) for key in ("mean", "low", "high")):
        return "<td>-</td><td>-</td>"
    return (f"<td>{entry['mean']:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}]</td>"
            f"<td>{_text(entry['wins'])} of {_text(entry['n'])}</td>")


def _comparison_table(record: dict[str, Any]) -> str:
    """The program against each model (paired bootstrap over held-out units), with AIC and BIC; "" without."""
    entries = record.get("comparisons") or {}
    if not entries:
        return ""
    rows = []
    for name, entry in entries.items():
        criteria = (record["test_scores"].get(name) or {}).get("information_criteria") or {}
        rows.append(f"<tr><td>{_text(name)}</td>{_interval_cell(entry)}<td>{_number(criteria.get('aic'))}</td>"
                    f"<td>{_number(criteria.get('bic'))}</td></tr>")
    own = (record["test_scores"].get("program") or {}).get("information_criteria") or {}
    rows.append(f"<tr><td>(program itself)</td><td>-</td><td>-</td><td>{_number(own.get('aic'))}</td>"
                f"<td>{_number(own.get('bic'))}</td></tr>")
    label = _text(record.get("comparison_units", "held-out score"))
    return (f"<h3>Program against each model</h3><p>Program minus model, {label} per held-out unit (session, "
            "subject or neuron): mean and 95% paired bootstrap interval, and the units the program wins. AIC and "
            "BIC of each model on the training split (lower is better).</p><table><tr><th>model</th>"
            "<th>difference [95% interval]</th><th>program wins</th><th>AIC</th><th>BIC</th></tr>"
            + "".join(rows) + "</table>")


def _ablation_table(record: dict[str, Any]) -> str:
    rows = record.get("ablation") or []
    if not rows:
        return ""
    cells = []
    for row in rows:
        change = row.get("change")
        verdict = ("no evidence" if row.get("no_evidence") else "needed") if change else _text(row.get("outcome"))
        cells.append(f"<tr><td>{_text(row['parameter'])}</td><td>{_text(row['neutral'])}</td>"
                     f"{_interval_cell(change)}<td>{verdict}</td></tr>")
    return ("<h3>Ablation</h3><p>Each parameter knocked out (fixed at its neutral value, the rest refitted): change "
            "in held-out log-likelihood per trial, 95% paired bootstrap interval. \"no evidence\": removing it "
            "costs nothing measurable on the test split.</p><table><tr><th>parameter</th><th>fixed at</th>"
            "<th>change [95% interval]</th><th>units better</th><th>verdict</th></tr>" + "".join(cells) + "</table>")


def _program_section(program: Program, by_id: dict[int, Program], record: dict[str, Any] | None) -> str:
    from engine.verification.verify import (check_lines, posterior_line, recovery_failures, recovery_redraws,
                                            recovery_summary)

    parts = [
        f'<h2 id="program-{_text(program.id)}">Program {_text(program.id)}</h2>',
        f"<p>island {_text(program.island_id)}; selection score {_number(program.score)}; proposer "
        f"{_text(program.proposer)}; parents {_text(list(program.parent_ids))}</p>",
        "<h3>Code</h3><pre>" + _text(program.source) + "</pre>",
    ]
    parents = [by_id.get(i) if isinstance(i, int) else None for i in program.parent_ids]
    scored_parents = [p for p in parents if p is not None and _is_number(p.score)]
    if scored_parents:
        parent = max(scored_parents, key=lambda p: p.score)
        diff = _text(program_diff(parent, program))
        parts.append(f"<h3>Diff to parent {_text(parent.id)}</h3><pre>{diff}</pre>")
    parts.append("<h3>Fitted parameters</h3>" + _params_table(program.fitted_params))
    if record:
        parts.append("<h3>Test split, next to the baselines</h3>" + _test_table(record))
        parts.append(_comparison_table(record) + _ablation_table(record))
        if record.get("recovery"):
            parts.append(f"<p>{html.escape(recovery_summary(record))}</p>")
        if record.get("posterior"):
            parts.append(f"<p>{html.escape(posterior_line(record))}</p>")
        for line in (recovery_failures(record), recovery_redraws(record)):
            if line:
                parts.append(f"<p>{html.escape(line)}</p>")
        lines = check_lines(record)
        if lines:
            parts.append(f"<h3>{html.escape(lines[0][0].upper() + lines[0][1:])}</h3><ul>"
                         + "".join(f"<li>{html.escape(line)}</li>" for line in lines[1:]) + "</ul>")
        figures = [f for f in record.get("figures", []) if not validate_figure(f)]
        if figures:
            parts.append("<h3>Posterior predictive checks</h3>")
            for figure in figures:
                ax = draw_task_figure(figure)
                parts.append(_img(to_png(ax.figure), figure.get("title", "figure")))
    return "\n".join(parts)


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:12px}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}"
    "img.plot{max-width:100%;display:block;margin:.5em 0}"
)
# Marks the page once every plot has decoded, so a headless browser test can check them.
SCRIPT = (
    "<script>window.addEventListener('load',function(){var imgs=document.querySelectorAll('img.plot');"
    "var ok=0;imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;});"
    "document.body.setAttribute('data-plots-total',imgs.length);"
    "document.body.setAttribute('data-plots-loaded',ok);});</script>"
)


def build_report(
    db_path: Path, *, top: int = 5, verify_top: int = 3, task_yaml: Path | None = None, workers: int = 2
) -> str:
    """Returns the report's HTML. Verifies (and stores) the `verify_top` best programs not verified yet."""
    from islands import ProgramDatabase

    reader = ProgramDatabase.open_readonly(db_path)
    try:
        meta = reader.meta
        programs = list(reader.all_programs())
        best = reader.best(top)
        front = reader.pareto_front()
        stats = reader.stats()
        verifications = reader.verifications()
    finally:
        reader.close()
    by_id = {p.id: p for p in programs}
    not_verified = ""
    if verify_top > 0:
        from engine.verification.verify import verify_program
        from islands import IslandsError

        for program in best[:verify_top]:
            if program.id not in verifications:
                try:
                    verifications[program.id] = verify_program(db_path, program.id, task_yaml=task_yaml,
                                                               workers=workers)
                except IslandsError as error:  # a run still writes the file: report what is stored
                    not_verified = f"Programs not verified yet were not verified now: {error}"
                    break

    counts = collections.Counter(p.outcome for p in programs if p.proposer != "seed")
    sections = [
        "<h2>Search progress</h2>" + _img(plot_best_by_island(programs), "best score by island"),
        _img(plot_outcomes(programs), "outcomes over time"),
        "<p>" + ", ".join(f"{_text(k)}: {v}" for k, v in sorted(counts.items()))
        + f"; duplicates skipped: {_text(stats.get('duplicates', 0))}"
        + (f"; LLM tokens paid for: {_text(stats['tokens'])} ({_text(stats.get('duplicate_tokens', 0))} of them on "
           f"duplicates), ${stats.get('cost_usd', 0.0):.4f}" if stats.get("tokens") else "") + "</p>",
        "<h2>Pareto front</h2>" + _img(plot_pareto(programs, front), "Pareto front"),
    ]
    if not_verified:
        sections.append(f"<p>{_text(not_verified)}</p>")
    final_rows = "".join(
        f"<tr><td><a href='#program-{_text(p.id)}'>{_text(p.id)}</a></td><td>{_number(p.score)}</td>"
        f"<td>{_number((verifications.get(p.id) or {}).get('test_score')) if p.id in verifications else 'not verified'}</td>"
        f"<td>{_text(p.num_params)}</td><td>{_text(p.ast_size)}</td></tr>"
        for p in best
    )
    sections.append(
        "<h2>Final selected models: test-split scores</h2><p>The test split was never used by the search: the "
        "selection score ranked candidates; the test score is read only here.</p><table><tr><th>program</th>"
        "<th>selection score</th><th>test score</th><th>free parameters</th><th>AST size</th></tr>"
        + final_rows + "</table>"
    )
    sections.extend(_program_section(p, by_id, verifications.get(p.id)) for p in best)

    title = f"discover report: {meta.task_name} v{meta.task_version}"
    summary = (
        f"<p>database {_text(db_path)}; {_text(stats.get('evaluations'))} evaluations; seed score "
        f"{_number(stats.get('seed_score'))}; best selection score {_number(stats.get('best_score'))}; "
        f"generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{summary}"
        f"{''.join(sections)}{SCRIPT}</body></html>"
    )


def write_report(db_path: Path, output: Path, **options: Any) -> Path:
    """Writes the report to `output` and returns its path."""
    output.write_text(build_report(db_path, **options), encoding="utf-8")
    return output
