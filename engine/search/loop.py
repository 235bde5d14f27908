"""The search loop: sample a prompt, propose a candidate, evaluate it in the sandbox, register the result.

Proposals (async: an LLM may take seconds) and evaluations (worker pool) overlap: the loop keeps up to
`max_in_flight` candidates between "prompt sampled" and "result registered", and at most
`max_in_flight_per_island` of them per island, so prompts are never built from a stale island.
The engine process is the only writer of the database.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.search.evaluation import at_bounds, make_job, to_candidate
from engine.llm.errors import LLMBudgetExhausted
from engine.errors import SeedError
from engine.proposers.prompts import PromptTask, diagnostics_text, render_prompt
from engine.search.seed_check import seed_drift, seed_failure_message
from engine.proposers.base import PromptContext, Proposal, Proposer, Shot
from islands import Candidate, Program, ProgramDatabase, canonical_hash
from sandbox.pool import Runner, evaluate_many
from sandbox.results import RunResult
from engine.task.spec import TaskSpec

__all__ = ["SearchLoop", "Budget", "RunSummary", "LoopEvent", "evaluate_once"]


def failure_summary(error: str) -> str:
    """Returns the part of a candidate's error a model can act on: the candidate's line and the exception.

    A traceback's last lines are often a library's footer ("For simplicity, JAX has removed its internal
    frames ..."), so the exception line is looked for, not taken from the end.
    """
    lines = [line.rstrip() for line in error.strip().split("\n") if line.strip()]
    exception = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Warning)\b", line)]
    where = [index for index, line in enumerate(lines) if 'File "candidate.py"' in line]
    kept = []
    if where:
        kept += lines[where[-1] : where[-1] + 2]
    kept += exception[-1:] if exception else lines[-2:]
    return "\n".join(dict.fromkeys(kept))[-600:]


_UNKNOWN = object()


@dataclass(frozen=True, slots=True)
class Budget:
    """When to stop. None means no limit of that kind."""

    max_evals: int
    max_hours: float | None = None
    target_score: float | None = None
    max_cost_usd: float | None = None
    max_proposals: int | None = None


@dataclass(frozen=True, slots=True)
class LoopEvent:
    """What the loop tells its progress display after each registration, or a skipped duplicate (program None)."""

    program: Program | None
    evaluations: int
    best_score: float | None
    improved: bool
    duplicates: int
    in_flight: int
    elapsed_s: float
    duplicate_tokens: int = 0  # what the skipped duplicate's answer cost (program None)
    duplicate_cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a run ended."""

    evaluations: int
    evaluations_this_session: int
    best: Program | None
    seed_score: float | None
    stopped_because: str
    elapsed_s: float
    duplicates: int


@dataclass
class _Pending:
    source: str
    parent_ids: tuple[int, ...]
    island_id: int
    proposal: Proposal
    propose_s: float
    canonical_hash: str | None = None  # None when duplicates are not rejected
    submitted_at: float = field(default_factory=time.monotonic)


def evaluate_once(runner: Runner, source: str, function_name: str, job_id: int = 0, poll_s: float = 0.5) -> RunResult:
    """Runs one candidate through the pool and waits for its result."""
    (result,) = evaluate_many(runner, [make_job(job_id, source, function_name)], poll_s)
    return result


class SearchLoop:
    """Drives one discovery run over an open database, a runner and a proposer."""

    def __init__(
        self,
        task: TaskSpec,
        database: ProgramDatabase,
        runner: Runner,
        proposer: Proposer,
        *,
        proposer_name: str,
        max_in_flight: int,
        max_in_flight_per_island: int,
        seed: int = 0,
        on_event: Callable[[LoopEvent], None] | None = None,
    ) -> None:
        self.task = task
        self.database = database
        self.runner = runner
        self.proposer = proposer
        self.proposer_name = proposer_name
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_island = max_in_flight_per_island
        self.rng = random.Random(seed)
        self.seed = seed
        self.on_event = on_event or (lambda event: None)
        self.stop_requested = False
        self._pending: dict[int, _Pending] = {}
        self._proposals: dict[asyncio.Task, tuple[int, tuple[int, ...], float]] = {}
        self._next_job_id = 1
        self._duplicates = 0
        self._proposal_count = 0
        self._budget_message: str | None = None
        self._best: float | None | object = _UNKNOWN
        self._prompt_task = PromptTask.from_task(task)
        # The last failure of a candidate made from each best shot, shown in the next prompt from that shot.
        self._last_failure: dict[int, str] = {}

    # -- seeding ---------------------------------------------------------------------------------------------
    def ensure_seed(self, db_path: Path | None = None) -> Program:
        """Evaluates the seed, checks its score, and registers it on every island (a resumed run keeps its own).

        A fresh run compares the score with task.yaml's `seed_score`; a resumed run compares it with the seed's
        score stored when the run began (see engine.search.seed_check). Either way a failed or drifted seed raises
        SeedError before anything is stored or searched.

        Args:
            db_path: the database file, named in the message when a resumed run's seed drifted.
        """
        task = self.task
        result = evaluate_once(self.runner, task.seed_source, task.function_name, job_id=0)
        candidate = to_candidate(result, source=task.seed_source, parent_ids=(), island_id=0, proposer="seed")
        if candidate.score is None:
            raise SeedError(
                seed_failure_message(result, task.yaml_path, task.evolve.path),
                {"outcome": candidate.outcome, "error": result.error},
            )
        resuming = self.database.seed_id is not None
        if resuming:
            stored = self.database.register_seed(candidate)  # refuses a seed that differs from the stored one
            drift = seed_drift(candidate.score, stored.score, task.file.seed_score_tolerance, "database")
        else:
            drift = seed_drift(candidate.score, task.file.seed_score, task.file.seed_score_tolerance, "task.yaml")
        if drift is not None:
            raise SeedError(
                drift.message(task.yaml_path, db_path),
                {"outcome": candidate.outcome, "seed_score": drift.found, "expected": drift.expected,
                 "tolerance": drift.tolerance, "expected_from": drift.against},
            )
        return stored if resuming else self.database.register_seed(candidate)

    # -- prompts ---------------------------------------------------------------------------------------------
    def _shot(self, program: Program) -> Shot:
        text = diagnostics_text(
            program.score if program.score is not None else float("nan"),
            program.fitted_params,
            at_bounds(program, self.task.function_name),
            program.extra_scores,
        )
        return Shot(program_id=program.id, source=program.source, score=program.score or 0.0, diagnostics=text)

    def _island_load(self, island_id: int) -> int:
        pending = sum(1 for p in self._pending.values() if p.island_id == island_id)
        return pending + sum(1 for island, _, _ in self._proposals.values() if island == island_id)

    def _next_prompt(self) -> PromptContext | None:
        for _ in range(20):
            sample = self.database.sample()
            if self._island_load(sample.island_id) < self.max_in_flight_per_island:
                self._proposal_count += 1
                shots = [self._shot(p) for p in sample.programs]
                best_id = max(shots, key=lambda shot: shot.score).program_id
                return render_prompt(
                    island_id=sample.island_id,
                    function_name=self.task.function_name,
                    shots=shots,
                    summary=self.task.file.summary,
                    description=self.task.file.description,
                    primitives=self.task.file.primitives,
                    seed=self.seed * 1_000_003 + self._proposal_count,
                    task=self._prompt_task,
                    vary=True,
                    last_failure=self._last_failure.get(best_id, ""),
                )
        return None

    # -- the loop --------------------------------------------------------------------------------------------
    def _in_flight(self) -> int:
        return len(self._pending) + len(self._proposals)

    def _answers_in_flight(self) -> int:
        """Candidates on their way: those evaluating, plus every answer the requests still out may return."""
        return len(self._pending) + len(self._proposals) * max(1, self.proposer.answers_per_request)

    def _stop_reason(self, budget: Budget, started: float) -> str | None:
        if self.stop_requested:
            if self._budget_message and (self._pending or self._proposals):
                return None  # let the evaluations already paid for finish
            return self._budget_message or "interrupted"
        done = self.database.num_evaluations
        if done >= budget.max_evals:
            if self._pending or self._proposals:
                # Answers already asked for are evaluated, not dropped: with several answers per request the
                # run may end up to `answers_per_request - 1` evaluations past --max-evals.
                return None
            return f"reached --max-evals {budget.max_evals}"
        if budget.max_hours is not None and time.monotonic() - started >= budget.max_hours * 3600:
            return f"reached --max-hours {budget.max_hours}"
        best = self._best_score()
        if budget.target_score is not None and best is not None and best >= budget.target_score:
            return f"reached the target score {budget.target_score}"
        if budget.max_proposals is not None and self._proposal_count >= budget.max_proposals:
            return f"made {self._proposal_count} proposals, most of them duplicates; the proposer is stuck"
        return None

    def _register(self, candidate: Candidate, started: float, best_before: float | None) -> Program:
        program = self.database.register(candidate)
        improved = program.score is not None and (best_before is None or program.score > best_before)
        if improved:
            self._best = program.score
        self._tell(program, improved, started)
        return program

    def _tell(self, program: Program | None, improved: bool, started: float, tokens: int = 0,
              cost_usd: float = 0.0) -> None:
        """Sends the progress display a LoopEvent: after a registration, or (program None) a skipped duplicate
        whose answer cost `tokens` and `cost_usd`."""
        self.on_event(
            LoopEvent(
                program=program,
                evaluations=self.database.num_evaluations,
                best_score=self._best_score(),
                improved=improved,
                duplicates=self._duplicates,
                in_flight=self._in_flight(),
                elapsed_s=time.monotonic() - started,
                duplicate_tokens=tokens,
                duplicate_cost_usd=cost_usd,
            )
        )

    def _is_duplicate(self, source: str) -> tuple[bool, str | None]:
        """Returns (whether `source` repeats a stored program or one being evaluated, its canonical hash).

        The hash is None when the islands config does not reject duplicates. Candidates in flight count too:
        a request with several answers, or proposers that converge, would otherwise have the same program
        evaluated several times before the first copy is stored.
        """
        if not self.database.config.reject_duplicates:
            return False, None
        key = canonical_hash(source)
        if self.database.find_duplicate(source) is not None:
            return True, key
        return any(pending.canonical_hash == key for pending in self._pending.values()), key

    def _remember_failure(self, parent_ids: tuple[int, ...], program: Program) -> None:
        """Keeps the outcome and the last lines of the error of a failed candidate, for its parents' next prompt."""
        text = f"{program.outcome}: {failure_summary(program.error or '')}".rstrip(": ")
        for parent_id in parent_ids:
            self._last_failure[parent_id] = text

    def _best_score(self) -> float | None:
        """The best score stored so far, tracked here: asking the database each time costs a scan."""
        if self._best is _UNKNOWN:
            best = self.database.best(1)
            self._best = best[0].score if best else None
        return self._best

    def _handle_proposal(self, proposal: Proposal, island_id: int, parent_ids: tuple[int, ...], propose_s: float, started: float) -> None:
        if not proposal.source.strip():
            candidate = Candidate(
                source=proposal.source,
                parent_ids=parent_ids,
                island_id=island_id,
                outcome="NO_CODE",
                error=proposal.error or "the proposer returned no code",
                proposer=proposal.proposer,
                tokens=proposal.tokens,
                cost_usd=proposal.cost_usd,
                timings={"propose": propose_s},
            )
            self._register(candidate, started, self._best_score())
            return
        duplicate, key = self._is_duplicate(proposal.source)
        if duplicate:
            self._duplicates += 1
            # Its tokens were paid for like any other answer's: they count in stats, panel and report.
            self.database.count_duplicate(island_id, tokens=proposal.tokens, cost_usd=proposal.cost_usd)
            self._tell(None, False, started, tokens=proposal.tokens, cost_usd=proposal.cost_usd)
            return
        job_id = self._next_job_id
        self._next_job_id += 1
        self._pending[job_id] = _Pending(proposal.source, parent_ids, island_id, proposal, propose_s, key)
        self.runner.submit(make_job(job_id, proposal.source, self.task.function_name))

    async def _propose(self, context: PromptContext) -> tuple[list[Proposal], float]:
        started = time.perf_counter()
        proposals = list(await self.proposer.propose(context))
        return proposals, time.perf_counter() - started

    async def run(self, budget: Budget) -> RunSummary:
        """Runs until a budget is reached or stop is requested; returns how it ended."""
        started = time.monotonic()
        evaluations_at_start = self.database.num_evaluations
        reason: str | None = None
        try:
            while True:
                reason = self._stop_reason(budget, started)
                if reason is not None:
                    break
                remaining = 0 if self.stop_requested else budget.max_evals - self.database.num_evaluations
                while self._in_flight() < self.max_in_flight and self._answers_in_flight() < remaining:
                    context = self._next_prompt()
                    if context is None:
                        break
                    parent_ids = tuple(shot.program_id for shot in context.shots)
                    task = asyncio.ensure_future(self._propose(context))
                    self._proposals[task] = (context.island_id, parent_ids, time.monotonic())
                if self._proposals:
                    done, _ = await asyncio.wait(list(self._proposals), timeout=0.001, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        island_id, parent_ids, _ = self._proposals.pop(task)
                        try:
                            proposals, propose_s = task.result()
                        except LLMBudgetExhausted as exhausted:
                            # A spending cap is a budget like --max-evals: finish what is in flight, then stop.
                            self.stop_requested = True
                            self._budget_message = f"LLM budget reached: {exhausted}"
                            continue
                        # Other LLMErrors (an invalid key, a server that stays down) propagate and stop the run.
                        for proposal in proposals:  # several when one request asked for several answers
                            self._handle_proposal(
                                proposal, island_id, proposal.parent_ids if proposal.parent_ids is not None
                                else parent_ids, propose_s / len(proposals), started,
                            )
                if self._pending:
                    results = await asyncio.to_thread(self.runner.results, 0.02)
                    for result in results:
                        pending = self._pending.pop(result.job_id, None)
                        if pending is None:
                            continue
                        candidate = to_candidate(
                            result,
                            source=pending.source,
                            parent_ids=pending.parent_ids,
                            island_id=pending.island_id,
                            proposer=pending.proposal.proposer,
                            tokens=pending.proposal.tokens,
                            cost_usd=pending.proposal.cost_usd,
                            propose_s=pending.propose_s,
                        )
                        program = self._register(candidate, started, self._best_score())
                        if program.score is None and pending.parent_ids:
                            self._remember_failure(pending.parent_ids, program)
                elif not self._proposals:
                    await asyncio.sleep(0.01)
        finally:
            for task in self._proposals:
                task.cancel()
            self._proposals.clear()
        best = self.database.best(1)
        return RunSummary(
            evaluations=self.database.num_evaluations,
            evaluations_this_session=self.database.num_evaluations - evaluations_at_start,
            best=best[0] if best else None,
            seed_score=self.database.stats().get("seed_score"),
            stopped_because=reason or "stopped",
            elapsed_s=time.monotonic() - started,
            duplicates=self._duplicates,
        )
