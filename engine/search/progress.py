"""Shows a run moving: a live rich panel on a terminal, plain lines otherwise (CI, nohup), nothing with --quiet."""

from __future__ import annotations

import collections
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from engine.search.loop import LoopEvent

__all__ = ["ProgressDisplay"]


class ProgressDisplay:
    """Receives LoopEvents and shows evaluations/budget, rate, best score, outcomes, workers busy, tokens, cost."""

    def __init__(
        self,
        max_evals: int,
        num_workers: int,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        line_every_s: float = 5.0,
    ) -> None:
        self.max_evals = max_evals
        self.num_workers = num_workers
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.line_every_s = line_every_s
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.tokens = 0
        self.cost_usd = 0.0
        self.best_score: float | None = None
        self.improved_at_s: float | None = None
        self.started = time.monotonic()
        self.first_evaluations: int | None = None
        self.last: LoopEvent | None = None
        self._last_line = 0.0
        self._live: Live | None = None
        self.interactive = self.stream.isatty() and not quiet

    def __enter__(self) -> "ProgressDisplay":
        if self.interactive:
            self._live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)
            self._live = None

    def rate(self) -> float:
        if self.last is None or self.first_evaluations is None:
            return 0.0
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (self.last.evaluations - self.first_evaluations) / elapsed

    def __call__(self, event: LoopEvent) -> None:
        if self.first_evaluations is None:  # the rate counts from the evaluation before the first one shown
            self.first_evaluations = event.evaluations - (1 if event.program is not None else 0)
        self.last = event
        if event.program is not None:
            self.outcomes[event.program.outcome] += 1
            self.tokens += event.program.tokens
            self.cost_usd += event.program.cost_usd
        else:  # a skipped duplicate: its answer was paid for too
            self.tokens += event.duplicate_tokens
            self.cost_usd += event.duplicate_cost_usd
        if event.improved:
            self.best_score = event.best_score
            self.improved_at_s = event.elapsed_s
        elif self.best_score is None:
            self.best_score = event.best_score
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(self._table())
            return
        now = time.monotonic()
        if event.improved or now - self._last_line >= self.line_every_s:
            self._last_line = now
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        event = self.last
        if event is None:
            return "no evaluations yet"
        outcomes = " ".join(f"{name.lower()}={count}" for name, count in sorted(self.outcomes.items()))
        best = f"{self.best_score:.4f}" if self.best_score is not None else "-"
        improved = f" (improved at {self.improved_at_s:.0f}s)" if self.improved_at_s is not None else ""
        text = (
            f"[{event.elapsed_s:7.1f}s] evals {event.evaluations}/{self.max_evals} | {self.rate():.2f}/s | "
            f"best {best}{improved} | {outcomes} | dup={event.duplicates} | in flight {event.in_flight}"
        )
        if self.tokens:
            text += f" | tokens {self.tokens} ${self.cost_usd:.4f}"
        return text

    def _table(self) -> Table:
        table = Table(title="discover run", show_header=False, expand=False)
        event = self.last
        table.add_column("what", style="bold")
        table.add_column("value")
        evaluations = event.evaluations if event else 0
        table.add_row("evaluations", f"{evaluations} / {self.max_evals}")
        table.add_row("evaluations per second", f"{self.rate():.2f}")
        best = f"{self.best_score:.4f}" if self.best_score is not None else "-"
        when = f" (last improved at {self.improved_at_s:.0f} s)" if self.improved_at_s is not None else ""
        table.add_row("best selection score", best + when)
        table.add_row("outcomes", ", ".join(f"{k.lower()} {v}" for k, v in sorted(self.outcomes.items())) or "-")
        busy = min(event.in_flight, self.num_workers) if event else 0
        table.add_row("workers busy", f"{busy} / {self.num_workers}")
        table.add_row("duplicates skipped", str(event.duplicates if event else 0))
        table.add_row("LLM tokens / cost", f"{self.tokens} / ${self.cost_usd:.4f}")
        return table
