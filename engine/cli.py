"""The `discover` command line. Commands parse their options and delegate; errors print one message and exit 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    pretty_exceptions_show_locals=False,  # keep API keys out of tracebacks
    no_args_is_help=True,
    add_completion=False,
    help="Discover mechanistic neuroscience models: search, verify, iterate.",
)
task_app = typer.Typer(help="Work on a task folder.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)
app.add_typer(task_app, name="task")
app.add_typer(config_app, name="config")

# Piped or logged output has no terminal width; rich would then use 80 columns and cut model names in tables.
console = Console() if sys.stdout.isatty() else Console(width=140)
STATE = {"verbose": False}


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors.")] = False) -> None:
    STATE["verbose"] = verbose


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _overrides(**flags: Any) -> dict[str, Any]:
    """Turns command-line flags into a config layer (only the flags that were given)."""
    layer: dict[str, Any] = {}
    mapping = {
        "max_evals": ("run", "max_evals"),
        "max_hours": ("run", "max_hours"),
        "max_cost_usd": ("run", "max_cost_usd"),
        "target_score": ("run", "target_score"),
        "seed": ("run", "seed"),
        "workers": ("sandbox", "num_workers"),
        "ray_address": ("sandbox", "ray_address"),
        "runner": ("sandbox", "runner"),
    }
    for flag, (section, key) in mapping.items():
        if flags.get(flag) is not None:
            layer.setdefault(section, {})[key] = flags[flag]
    proposer = flags.get("proposer")
    if proposer is not None:
        if proposer == "mutator":
            layer.setdefault("run", {})["proposer"] = "mutator"
        else:
            layer.setdefault("run", {})["proposer"] = "llm"
            llm = layer.setdefault("llm", {})
            llm["provider"] = proposer
            if flags.get("model"):
                # A temperature by default: prompts from islands that hold only the seed differ little, and a
                # server's own default may be greedy. 1.0 is what every provider's models accept.
                model: dict[str, Any] = {"name": flags["model"], "temperature": DEFAULT_TEMPERATURE}
                for flag in ("temperature", "max_tokens"):
                    if flags.get(flag) is not None:
                        model[flag] = flags[flag]
                llm["models"] = [model]
            if flags.get("base_url"):
                llm["base_url"] = flags["base_url"]
    llm_flags = {"max_in_flight": flags.get("llm_max_in_flight"), "timeout_s": flags.get("timeout_s")}
    given = {key: value for key, value in llm_flags.items() if value is not None}
    per_model = [flag for flag in ("temperature", "max_tokens") if flags.get(flag) is not None]
    if proposer in (None, "mutator") and (flags.get("model") or flags.get("base_url") or given or per_model):
        raise typer.BadParameter(
            "--model, --base-url, --max-in-flight, --timeout-s, --temperature and --max-tokens need "
            "--proposer openai or --proposer anthropic."
        )
    if per_model and not flags.get("model"):
        raise typer.BadParameter("--temperature and --max-tokens set the model of --model; give --model too.")
    if given:
        layer.setdefault("llm", {}).update(given)
    return layer


#: The sampling temperature of a model named with --model, unless --temperature says otherwise.
DEFAULT_TEMPERATURE = 1.0


@app.command()
def run(
    task_yaml: Annotated[Path, typer.Argument(help="The task, e.g. tasks/bandit/task.yaml.")],
    db: Annotated[Optional[Path], typer.Option(help="SQLite database; an existing one of the same task resumes.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A preset from configs/, e.g. configs/local.yaml.")] = None,
    max_evals: Annotated[Optional[int], typer.Option(help="Stop after this many evaluated candidates (answers skipped as duplicates are not counted; their tokens are).")] = None,
    max_hours: Annotated[Optional[float], typer.Option(help="Stop after this many hours.")] = None,
    max_cost_usd: Annotated[Optional[float], typer.Option(help="Stop when LLM spending reaches this.")] = None,
    target_score: Annotated[Optional[float], typer.Option(help="Stop when the best held-out score reaches this.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Candidates evaluated at the same time.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed of the search.")] = None,
    ray_address: Annotated[Optional[str], typer.Option(help="An existing Ray cluster: auto, ray://host:10001 or host:6379.")] = None,
    runner: Annotated[Optional[str], typer.Option(help="ray (default) or local (threads in this process, no Ray).")] = None,
    proposer: Annotated[Optional[str], typer.Option(help="mutator, openai or anthropic.")] = None,
    model: Annotated[Optional[str], typer.Option(help="LLM model name (with --proposer).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")] = None,
    max_in_flight: Annotated[Optional[int], typer.Option("--max-in-flight", min=1, help="LLM requests out at once (default 4; drops by itself when answers time out because the server queues them).")] = None,
    timeout_s: Annotated[Optional[float], typer.Option("--timeout-s", min=0.001, help="Seconds to wait for one LLM answer (default 120; doubles by itself, up to 8 times, when a lone request times out).")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help=f"Sampling temperature of --model (default {DEFAULT_TEMPERATURE}).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Most tokens in one answer of --model (default 4096).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final result.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the final result as JSON.")] = False,
    simplify_best: Annotated[int, typer.Option(
        help="At the end, simplify this many best programs (see discover simplify).")] = 0,
) -> None:
    """Run (or resume) a discovery on one task."""
    from engine.search.session import run_discovery

    overrides = _overrides(
        max_evals=max_evals, max_hours=max_hours, max_cost_usd=max_cost_usd, target_score=target_score,
        workers=workers, seed=seed, ray_address=ray_address, runner=runner, proposer=proposer, model=model,
        base_url=base_url, llm_max_in_flight=max_in_flight, timeout_s=timeout_s, temperature=temperature,
        max_tokens=max_tokens,
    )
    from engine.errors import SeedError

    try:
        summary, db_path = run_discovery(
            task_yaml, db_path=db, preset=config, overrides=overrides, quiet=quiet or json_output,
            echo=lambda text: print(text, flush=True),
        )
    except SeedError as error:
        if not json_output:
            raise  # main() prints the message
        _print_json({"error": str(error), "stopped_because": "seed", **error.details})
        raise typer.Exit(1)
    best = summary.best
    result = {
        "db": str(db_path),
        "stopped_because": summary.stopped_because,
        "evaluations": summary.evaluations,
        "evaluations_this_session": summary.evaluations_this_session,
        "evaluations_per_s": summary.evaluations_this_session / max(summary.elapsed_s, 1e-9),
        "seed_score": summary.seed_score,
        "best_score": best.score if best else None,
        "best_id": best.id if best else None,
        "duplicates": summary.duplicates,
    }
    if simplify_best > 0:
        result["simplified"] = _simplify_best(db_path, simplify_best, echo=not json_output)
    if json_output:
        _print_json(result)
        return
    print(f"\nstopped: {summary.stopped_because} after {summary.elapsed_s:.1f} s "
          f"({result['evaluations_per_s']:.2f} evaluations/s this session)")
    if best is not None:
        print(f"best program {best.id} (island {best.island_id}), held-out selection score {best.score:.4f} "
              f"(seed {summary.seed_score:.4f})")
        print(best.source)
    print(f"database: {db_path}")
    if summary.stopped_because == "interrupted":
        print(f"resume with: discover run {task_yaml} --db {db_path}")


def _simplify_best(db_path: Path, count: int, *, echo: bool) -> list[dict[str, Any]]:
    """Simplifies the `count` best programs of a finished run; returns their summaries."""
    from engine.verification.simplify import simplify_stored

    with _open_readonly(db_path) as database:
        best_ids = [program.id for program in database.best(count)]
    summaries = []
    for program_id in best_ids:
        if echo:
            print(f"simplifying program {program_id}", flush=True)
        summary = simplify_stored(db_path, program_id)
        if echo:
            _print_simplification(summary)
        summaries.append({key: value for key, value in summary.items() if key != "steps"})
    return summaries


def _print_simplification(summary: dict[str, Any]) -> None:
    before, after = summary["before"], summary["after"]
    kept = [step for step in summary["steps"] if step["kept"]]
    print(f"program {summary['program_id']}: {len(summary['steps'])} steps tried, {len(kept)} kept, "
          f"{summary['evaluations']} refits on the selection split")
    for step in kept:
        difference = step["difference"]
        print(f"  kept: {step['description']} (vs original {difference['mean']:+.4f} "
              f"[{difference['low']:+.4f}, {difference['high']:+.4f}])")
    if summary["new_program_id"] is None:
        print("  no step keeps the evidence: the program comes back unchanged (nothing stored)")
        return
    print(f"  stored as program {summary['new_program_id']} (parent {summary['program_id']}): "
          f"{before['num_params']} -> {after['num_params']} parameters, AST size {before['ast_size']} -> "
          f"{after['ast_size']}, selection score {before['score']:.4f} -> {after['score']:.4f}")
    print(summary["diff"])


@app.command()
def simplify(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database (no run may be writing to it).")],
    program_id: Annotated[int, typer.Argument(help="The program to simplify (see discover best).")],
    task: Annotated[Optional[Path], typer.Option("--task", help="The task.yaml, if it moved since the run.")] = None,
    workers: Annotated[int, typer.Option(help="Rewrites refitted at the same time.")] = 2,
    max_evaluations: Annotated[int, typer.Option(help="Refits to spend on this program.")] = 80,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Find the smallest program that keeps the held-out evidence; store it as a child of the original."""
    from engine.verification.simplify import simplify_stored

    summary = simplify_stored(db, program_id, task_yaml=task, workers=workers, max_evaluations=max_evaluations,
                              progress=None if json_output else (lambda text: print(text, flush=True)))
    if json_output:
        _print_json(summary)
        return
    _print_simplification(summary)


def _program_summary(program) -> dict[str, Any]:
    return {
        "id": program.id,
        "score": program.score,
        "island": program.island_id,
        "outcome": program.outcome,
        "num_params": program.num_params,
        "ast_size": program.ast_size,
        "parents": list(program.parent_ids),
        "proposer": program.proposer,
    }


def _open_readonly(db: Path):
    from islands import ProgramDatabase

    return ProgramDatabase.open_readonly(db)


@app.command()
def best(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database.")],
    n: Annotated[int, typer.Option("--n", help="How many programs.")] = 10,
    pareto: Annotated[bool, typer.Option("--pareto", help="The Pareto front of held-out score vs complexity.")] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the best programs of a run."""
    from engine.verification.inspect_runs import printable

    reader = _open_readonly(db)
    programs = reader.pareto_front() if pareto else reader.best(n)
    rows = [_program_summary(p) for p in programs]
    if json_output:
        _print_json(rows)
        return
    table = Table(title=f"{'Pareto front' if pareto else 'best programs'} of {db}")
    for column in ("id", "score", "island", "outcome", "num_params", "ast_size", "proposer"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(f"{row[c]:.4f}" if c == "score" and row[c] is not None else printable(str(row[c]))
                        for c in ("id", "score", "island", "outcome", "num_params", "ast_size", "proposer")))
    console.print(table)


@app.command()
def show(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database.")],
    program_id: Annotated[int, typer.Argument(help="Program id (see discover best).")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one program: code, scores, fitted parameters, parents, island, outcome, error.

    Control characters (ESC, CR, ...), which a terminal would act on, are shown as escapes such as \\x1b.

    --json gives the text exactly.
    """
    from engine.task.results import fitted_groups
    from engine.verification.inspect_runs import printable

    program = _open_readonly(db).get(program_id)
    value = {
        **_program_summary(program),
        "code": program.source,
        "scores_per_test": dict(program.scores_per_test),
        "extra_scores": dict(program.extra_scores),
        "fitted_params": fitted_groups(program.fitted_params),
        "error": program.error,
        "timings": dict(program.timings),
        "tokens": program.tokens,
        "cost_usd": program.cost_usd,
        "created_at": program.created_at,
    }
    if json_output:
        _print_json(value)
        return
    score = f"{program.score:.4f}" if program.score is not None else "none"
    lines = [f"program {program.id}  island {program.island_id}  outcome {program.outcome}  score {score}",
             f"parents {list(program.parent_ids)}  proposer {program.proposer}  "
             f"params {program.num_params}  ast size {program.ast_size}"]
    lines += _fitted_lines(program.fitted_params)
    if program.extra_scores:
        lines.append("scores: " + ", ".join(f"{k}={v:.4f}" for k, v in program.extra_scores.items()))
    if program.error:
        lines.append("error:\n" + program.error)
    lines.append(program.source)
    print(printable("\n".join(lines)))


def _fitted_lines(stored) -> list[str]:
    """"fitted: alpha=0.3265, ..." for a pooled fit; one "fitted (group): ..." line per group otherwise."""
    from engine.task.results import POOLED, fitted_groups

    def values_text(values) -> str:
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

    groups = fitted_groups(stored)
    if list(groups) == [POOLED]:
        return ["fitted: " + values_text(groups[POOLED])]
    return [f"fitted ({group}): " + values_text(values) for group, values in groups.items()]


@app.command("eval")
def eval_command(
    task_yaml: Annotated[Path, typer.Argument(help="The task, e.g. tasks/bandit/task.yaml.")],
    candidate_py: Annotated[Path, typer.Argument(help="A candidate module, e.g. tasks/bandit/seed.py.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate one candidate file through the same sandbox and fitter as a run."""
    from engine.search.session import evaluate_file
    from engine.task.results import fitted_groups

    result, _ = evaluate_file(task_yaml, candidate_py)
    value = {
        "outcome": result.outcome.name,
        "score": result.scores.get("score"),
        "scores": dict(result.scores),
        "error": result.error,
        "fitted_params": fitted_groups(result.details.get("fitted_params")),
        "timings": {**dict(result.timings), "wall": result.wall_time_s},
        # What the sandbox saw besides the outcome, e.g. processes the candidate left running ("" when nothing).
        "sandbox_anomaly": str(result.details.get("sandbox_anomaly") or ""),
    }
    if json_output:
        _print_json(value)
        return
    print(f"outcome: {value['outcome']} ({result.outcome.value})")
    if value["score"] is not None:
        print(f"held-out selection score: {value['score']:.4f}")
    for key, number in value["scores"].items():
        if key != "score":
            print(f"{key}: {number:.4f}")
    for line in _fitted_lines(value["fitted_params"]):
        print(line)
    print("timings (s): " + ", ".join(f"{k}={v:.3f}" for k, v in value["timings"].items()))
    if value["sandbox_anomaly"]:
        print(f"sandbox: {value['sandbox_anomaly']}")
    if result.error:
        print("error:\n" + result.error)


@app.command()
def stats(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts, outcomes, seed and best scores, evaluation rate, tokens and cost of a run."""
    value = _open_readonly(db).stats()
    if json_output:
        _print_json(value)
        return
    for key, number in value.items():
        print(f"{key}: {number}")


@app.command()
def diff(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database.")],
    id1: Annotated[int, typer.Argument(help="The older program.")],
    id2: Annotated[int, typer.Argument(help="The newer program.")],
) -> None:
    """Show the code diff between two programs and their score change."""
    from engine.verification.inspect_runs import printable, program_diff

    reader = _open_readonly(db)
    old, new = reader.get(id1), reader.get(id2)
    print(printable(program_diff(old, new)) or "(same code)")
    if old.score is not None and new.score is not None:
        print(f"score {old.score:.4f} -> {new.score:.4f} ({new.score - old.score:+.4f})")
    else:
        print(f"outcome {old.outcome} -> {new.outcome}")


@app.command()
def lineage(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database.")],
    program_id: Annotated[int, typer.Argument(help="The program whose ancestry to show.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a program's ancestry back to the seed, with scores."""
    from dataclasses import asdict

    from engine.verification.inspect_runs import lineage as trace, printable

    steps = trace(_open_readonly(db).get, program_id)
    if json_output:
        _print_json([asdict(step) for step in steps])
        return
    table = Table(title=f"lineage of program {program_id}")
    for column in ("generation", "id", "score", "outcome", "proposer", "island", "parents"):
        table.add_column(column)
    for generation, step in enumerate(reversed(steps)):
        table.add_row(str(generation), str(step.id), f"{step.score:.4f}" if step.score is not None else "-",
                      printable(step.outcome), printable(step.proposer), str(step.island_id),
                      str(list(step.parent_ids)))
    console.print(table)


@app.command()
def export(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database.")],
    program_id: Annotated[int, typer.Argument(help="The program to export.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The file to write, e.g. model.py.")],
) -> None:
    """Write a standalone model file with the fitted parameters that runs without the engine.

    The code is written as stored, except for control characters (ESC, CR, ...), which act on a terminal showing it.

    In comments and plain string literals they become escapes such as \\x1b, which stand for the same character.

    CR line ends become newlines, as Python reads them. Anywhere else, nothing is written and the error says where.
    """
    from engine.verification.inspect_runs import export_source

    reader = _open_readonly(db)
    meta = reader.meta
    program = reader.get(program_id)
    if program.score is None:
        raise typer.BadParameter(f"program {program_id} has no fitted parameters (outcome {program.outcome}).")
    from engine.verification.ablation import ablation_lines

    record = reader.verifications().get(program_id) or {}
    text = export_source(program, function_name=meta.function_name or "agent", task_name=meta.task_name, db_path=db,
                         notes=ablation_lines(record.get("ablation") or []))
    output.write_text(text)
    print(f"wrote {output}")


@app.command()
def verify(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database.")],
    program_id: Annotated[int, typer.Argument(help="The program to verify (see discover best).")],
    task: Annotated[Optional[Path], typer.Option("--task", help="The task.yaml, if it moved since the run.")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Also write the verification figures as PNG files here.")] = None,
    workers: Annotated[int, typer.Option(help="Models evaluated at the same time.")] = 2,
    fit_seeds: Annotated[int, typer.Option(
        help="Fit every model this many times (seeds run seed, +1, ...) and show the test scores' mean and s.d.: "
             "the search ranked the program on one fit.")] = 1,
    ablation: Annotated[bool, typer.Option(
        help="Knock out each parameter and refit the rest (one refit per parameter).")] = True,
    posterior: Annotated[bool, typer.Option(
        help="Also sample the parameters' posterior (NUTS, uniform prior on the bounds) where the task's verify "
             "supports it, and show 90 % intervals.")] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check one program on the test split against the baselines, with statistics, ablation, recovery and plots."""
    from engine.verification.ablation import ablation_lines
    from engine.verification.verify import (check_lines, comparison_lines, fit_spread, posterior_line, recovery_failures,
                                            recovery_redraws, recovery_summary, verify_program)

    record = verify_program(db, program_id, task_yaml=task, workers=workers, fit_seeds=fit_seeds, ablation=ablation,
                            posterior=posterior)
    if plots is not None:
        from engine.verification.figures import draw_task_figure, to_png, validate_figure

        plots.mkdir(parents=True, exist_ok=True)
        for index, figure in enumerate(record.get("figures", [])):
            if not validate_figure(figure):
                ax = draw_task_figure(figure)
                (plots / f"program{program_id}_figure{index}.png").write_bytes(to_png(ax.figure))
    if json_output:
        _print_json(record)
        return
    table = Table(title=f"program {program_id}: test-split scores (never seen by the search)")
    seeds = record.get("fit_seeds") or []
    columns = ["model", "kind", "outcome", "test score", "train score"]
    if len(seeds) > 1:
        columns.append(f"test, {len(seeds)} fits: mean ± s.d.")
    for column in columns:
        table.add_column(column)
    by_score = lambda kv: -kv[1]["score"] if kv[1]["score"] is not None else float("inf")  # a score of 0 is a score
    for name, row in sorted(record["test_scores"].items(), key=by_score):
        cells = [name, row["kind"], row["outcome"],
                 f"{row['score']:.4f}" if row["score"] is not None else "-",
                 f"{row['train_score']:.4f}" if row["train_score"] is not None else "-"]
        if len(seeds) > 1:
            spread = fit_spread(row)
            cells.append(f"{spread[0]:.4f} ± {spread[1]:.4f}" + (f" (n={spread[2]})" if spread[2] < len(seeds) else "")
                         if spread else "-")
        table.add_row(*cells)
    console.print(table)
    if len(seeds) > 1:
        print(f"test score and train score: the fit with the run's seed ({seeds[0]}), the one the search ranked; "
              f"the last column refits with seeds {seeds[0]}-{seeds[-1]}.")
    print(f"selection score {record['selection_score']:.4f}; complexity: {record['complexity']['num_params']} free "
          f"parameters, AST size {record['complexity']['ast_size']}")
    for line in comparison_lines(record) + ablation_lines(record.get("ablation") or []):
        print(line)
    if record.get("recovery"):
        print(recovery_summary(record))
    if record.get("posterior"):
        print(posterior_line(record))
    for line in (recovery_failures(record), recovery_redraws(record)):
        if line:
            print(line)
    for line in check_lines(record):
        print(line)
    if record.get("verify_outcome") not in ("OK", "NOT_DEFINED"):
        print(f"task verification {record['verify_outcome']}: {record.get('verify_error', '')}")
    print(f"{len(record.get('figures', []))} predictive-check figures stored in {db}"
          + (f" and written to {plots}" if plots else ""))


@app.command()
def report(
    db: Annotated[Path, typer.Argument(help="A run's SQLite database.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.")] = Path("report.html"),
    top: Annotated[int, typer.Option(help="How many of the best programs to show in detail.")] = 5,
    verify_top: Annotated[int, typer.Option(help="Verify (test split, recovery, plots) this many best programs first.")] = 3,
    task: Annotated[Optional[Path], typer.Option("--task", help="The task.yaml, if it moved since the run.")] = None,
) -> None:
    """Write one self-contained HTML report of a run, with its plots embedded."""
    from engine.verification.report import write_report

    write_report(db, output, top=top, verify_top=verify_top, task_yaml=task)
    print(f"wrote {output}")


@task_app.command("check")
def task_check(
    task_yaml: Annotated[Path, typer.Argument(help="The task, e.g. tasks/bandit/task.yaml.")],
    split: Annotated[str, typer.Option(help="Held-out split to score: selection, or test (reports only).")] = "selection",
    workers: Annotated[int, typer.Option(help="Models evaluated at the same time.")] = 2,
    fit_seeds: Annotated[int, typer.Option(
        help="Score the seed with this many fit seeds (the run's seed, +1, ...) to measure how much its score "
             "varies, which seed_score_tolerance must cover.")] = 3,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate a task, score its seed and baselines through the same path as a run, and print a table.

    Exits 1 when it reports a problem: a model that fails, or a seed that scores away from seed_score.
    """
    from dataclasses import asdict

    from engine.verification.checks import check_task

    if split not in ("selection", "test"):
        raise typer.BadParameter(f"--split must be selection or test, found {split!r}.")
    if fit_seeds < 1:
        raise typer.BadParameter(f"--fit-seeds must be at least 1, found {fit_seeds}.")
    report = check_task(task_yaml, split=split, workers=workers, fit_seeds=fit_seeds)
    if json_output:
        _print_json({**asdict(report), "passed": not report.problems})
    else:
        table = Table(title=f"{task_yaml}: held-out {split} scores")
        for column in ("model", "kind", "outcome", "score", "train score", "params", "wall s"):
            table.add_column(column)
        for row in report.rows:
            table.add_row(row.name, row.kind, row.outcome,
                          f"{row.score:.4f}" if row.score is not None else "-",
                          f"{row.train_score:.4f}" if row.train_score is not None else "-",
                          str(row.num_params), f"{row.wall_s:.1f}")
        console.print(table)
        if report.seed_time_s is not None:
            print(f"seed: {report.seed_time_s:.1f} s of limits.timeout_s {report.timeout_s:g} (warns above a third)")
        if len(report.seed_scores) > 1:
            print(f"seed with fit seeds {', '.join(map(str, report.fit_seeds))}: "
                  + ", ".join(f"{score:.4f}" for score in report.seed_scores))
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for problem in report.problems:
            print(f"problem: {problem}", file=sys.stderr)
        if report.suggested:
            fields = ", ".join(f"{key}: {value:g}" for key, value in report.suggested.items())
            if "seed_score" in report.suggested:
                print(f"suggestion: seed_score is not set; put {fields} in {task_yaml}, so that runs and checks "
                      "catch a changed scorer, dataset or environment.")
            else:
                print(f"suggestion: put {fields} in {task_yaml}.")
        print("task check: " + (f"{len(report.problems)} problem(s)" if report.problems else "passed"))
    if report.problems:
        raise typer.Exit(1)


@config_app.command("show")
def config_show(
    task_yaml: Annotated[Path, typer.Argument(help="The task, e.g. tasks/bandit/task.yaml.")],
    config: Annotated[Optional[Path], typer.Option("--config", help="A preset from configs/.")] = None,
    max_evals: Annotated[Optional[int], typer.Option()] = None,
    workers: Annotated[Optional[int], typer.Option()] = None,
    proposer: Annotated[Optional[str], typer.Option()] = None,
    model: Annotated[Optional[str], typer.Option()] = None,
    base_url: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Print the configuration a run would use: task defaults, then the preset, then flags."""
    import yaml

    from engine.config import load_experiment_config
    from engine.task.spec import load_task

    task = load_task(task_yaml)
    merged = load_experiment_config(
        task.file.defaults, str(task.yaml_path), config,
        _overrides(max_evals=max_evals, workers=workers, proposer=proposer, model=model, base_url=base_url),
    )
    print(yaml.safe_dump(merged.model_dump(mode="json"), sort_keys=False))


def _known_errors() -> tuple[type[BaseException], ...]:
    """The root error classes whose messages are for people and print without a traceback: the engine's
    `DiscoverError`, and the program database's and the sandbox's roots where those packages were imported (one
    that was not imported raised nothing, and importing islands (SQLAlchemy) only to name its error would cost
    every command a second)."""
    from engine.errors import DiscoverError

    known: list[type[BaseException]] = [DiscoverError]
    for module, name in (("islands.errors", "IslandsError"), ("sandbox.errors", "SandboxError")):
        error = getattr(sys.modules.get(module), name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            known.append(error)
    return tuple(known)


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Command-line mistakes found while parsing: click's, and typer's own where typer carries its copy of click."""
    kinds: list[type[BaseException]] = []
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    if hasattr(typer, "TyperException"):
        kinds.append(typer.TyperException)
    return tuple(kinds)


def _usage_line(error: BaseException) -> str:
    """One line for a command-line mistake: what was wrong, what was found, and where the usage is."""
    message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
    errors = getattr(error.__cause__, "errors", None)  # typer checks values with pydantic
    if callable(errors):
        found = (errors() or [{}])[0].get("input")
        if found is not None:
            message = f"{message.rstrip('.')}; found {found!r}."
    if not message.endswith("."):
        message += "."
    context = getattr(error, "ctx", None)
    if context is not None:
        message += f" See '{context.command_path} --help'."
    return message


def _fail(message: str, *, as_json: bool, status: int = 1) -> None:
    """Prints an error as one message (a JSON object under --json) and exits with `status`."""
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    else:
        print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def main() -> None:
    """Console-script entry: our errors and command-line mistakes print one message, without a traceback.

    Our errors exit with status 1, command-line mistakes with 2; --verbose shows our errors' tracebacks. Under
    --json the message goes to stdout as {"error": "..."}, so a script that parses the output gets JSON either way.
    """
    as_json = "--json" in sys.argv[1:]
    usage = _usage_errors()
    try:
        status = app(standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.exit(130)
    except usage as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # `discover` alone: the help, as click shows it
            error.show()  # type: ignore[attr-defined]
            sys.exit(error.exit_code)  # type: ignore[attr-defined]
        _fail(_usage_line(error), as_json=as_json, status=getattr(error, "exit_code", 2))
    except Exception as error:
        if STATE["verbose"] or not isinstance(error, _known_errors()):
            raise
        _fail(str(error), as_json=as_json)
    if isinstance(status, int) and status:  # without standalone mode, click returns a command's Exit(code)
        sys.exit(status)


if __name__ == "__main__":
    main()
