"""Benchmark of the process sandbox: per-candidate overhead and throughput, fresh process vs warm forking worker.

Run:  .venv/bin/python bench/sandbox.py            (about 3 minutes on 2 cores)
      .venv/bin/python bench/sandbox.py --quick    (fewer repetitions)

Designs compared (both under bubblewrap when it is installed):
- fresh: a new bwrap + Python + numpy/jax/optax import + entry import for every candidate
  (`ProcessSandbox(max_jobs_per_worker=1)`, the start-up is paid inside the job);
- zygote: one warm worker per sandbox that forks a child per candidate (the default).

Workloads:
- trivial: `agent` returns a constant; the entry only calls it (pure sandbox overhead);
- jax fit: a Q-learning agent's likelihood on 10 sessions x 200 trials of a two-armed bandit (lax.scan over trials),
  fitted with optax Adam, 16 restarts (vmap) x 300 steps, jit-compiled in the child; the score is the mean
  log-likelihood per trial.
Throughput: 1 and 2 sandboxes in parallel, each driven by its own thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import Job, Limits, Outcome, ProcessSandbox, TaskContext, isolation  # noqa: E402

TRIVIAL_ENTRY = '''
def score(candidate, **payload):
    return {"score": float(candidate.agent())}
'''

FIT_ENTRY = '''
"""Fits a candidate bandit agent with optax Adam: 16 restarts x 300 steps; score = mean log-likelihood per trial."""
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax


def score(candidate, choices, rewards, n_restarts=16, n_steps=300):
    choices = jnp.asarray(choices)
    rewards = jnp.asarray(rewards)
    bounds = candidate.BOUNDS
    names = sorted(bounds)
    low = jnp.array([bounds[n][0] for n in names])
    high = jnp.array([bounds[n][1] for n in names])

    def constrain(raw):
        return dict(zip(names, low + (high - low) * jax.nn.sigmoid(raw)))

    def negative_log_likelihood(raw):
        params = constrain(raw)

        def session(session_choices, session_rewards):
            def step(state, trial):
                choice, reward = trial
                logits, new_state = candidate.agent(params, state, choice, reward)
                return new_state, jax.nn.log_softmax(logits)

            _, log_p = jax.lax.scan(step, jnp.zeros(8), (session_choices, session_rewards))
            return jnp.sum(jnp.take_along_axis(log_p[:-1], session_choices[1:, None], axis=1))

        return -jnp.sum(jax.vmap(session)(choices, rewards))

    optimizer = optax.adam(0.05)

    @jax.jit
    def fit(raw0):
        def one_restart(raw):
            def step(carry, _):
                raw, state = carry
                loss, grad = jax.value_and_grad(negative_log_likelihood)(raw)
                updates, state = optimizer.update(grad, state)
                return (optax.apply_updates(raw, updates), state), loss

            (raw, _), losses = jax.lax.scan(step, (raw, optimizer.init(raw)), None, length=n_steps)
            return raw, negative_log_likelihood(raw)

        return jax.vmap(one_restart)(raw0)

    started = time.perf_counter()
    raw0 = jax.random.normal(jax.random.PRNGKey(0), (n_restarts, len(names)))
    compiled = fit.lower(raw0).compile()
    compiled_at = time.perf_counter()
    raws, losses = compiled(raw0)
    best = int(jnp.argmin(losses))
    loss = float(losses[best])
    done = time.perf_counter()
    n_predicted = choices.shape[0] * (choices.shape[1] - 1)
    return {"score": -loss / n_predicted, "fitted_params": {k: float(v) for k, v in constrain(raws[best]).items()},
            "timings": {"compile": compiled_at - started, "fit": done - compiled_at}}
'''

TRIVIAL_CANDIDATE = "def agent():\n    return 1.0\n"

FIT_CANDIDATE = '''
import jax.numpy as jnp

BOUNDS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}


def agent(params, state, choice, reward):
    """Q-learning with a softmax choice rule."""
    q = state[:2]
    q = q.at[choice].add(params["alpha"] * (reward - q[choice]))
    return params["beta"] * q, state.at[:2].set(q)
'''


def bandit_data(n_sessions: int = 10, n_trials: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Simulated Q-learner choices and rewards, shapes (n_sessions, n_trials)."""
    rng = np.random.default_rng(seed)
    choices = np.zeros((n_sessions, n_trials), np.int32)
    rewards = np.zeros((n_sessions, n_trials), np.float32)
    for s in range(n_sessions):
        q = np.zeros(2)
        p_reward = np.array([0.8, 0.2]) if s % 2 else np.array([0.2, 0.8])
        for t in range(n_trials):
            p = np.exp(5 * q) / np.exp(5 * q).sum()
            c = rng.choice(2, p=p)
            r = float(rng.random() < p_reward[c])
            q[c] += 0.3 * (r - q[c])
            choices[s, t], rewards[s, t] = c, r
    return {"choices": choices, "rewards": rewards}


def make_context(folder: Path, workload: str) -> tuple[TaskContext, str]:
    if workload == "trivial":
        (folder / "trivial_entry.py").write_text(textwrap.dedent(TRIVIAL_ENTRY))
        return TaskContext(entry="trivial_entry.py:score", payload={}, function_name="agent", root=str(folder),
                           limits=Limits(timeout_s=120, memory_mb=2048)), TRIVIAL_CANDIDATE
    (folder / "fit_entry.py").write_text(FIT_ENTRY)
    return TaskContext(entry="fit_entry.py:score", payload=bandit_data(), function_name="agent", root=str(folder),
                       limits=Limits(timeout_s=300, memory_mb=2048)), FIT_CANDIDATE


def measure(context: TaskContext, source: str, design: str, n_parallel: int, n_jobs: int) -> dict[str, float]:
    """Runs `n_jobs` candidates on each of `n_parallel` sandboxes (one thread each); returns rates and phases."""
    max_jobs = 1 if design == "fresh" else 10_000
    sandboxes = [ProcessSandbox(context, max_jobs_per_worker=max_jobs) for _ in range(n_parallel)]
    if design == "zygote":  # warm up: the worker start-up is paid once per sandbox, not per candidate
        for sandbox in sandboxes:
            assert sandbox.run(Job(0, source)).outcome is Outcome.OK
    results = []
    lock = threading.Lock()

    def drive(sandbox: ProcessSandbox) -> None:
        for job_id in range(n_jobs):
            result = sandbox.run(Job(job_id, source))
            if result.outcome is not Outcome.OK:
                raise RuntimeError(f"benchmark candidate failed: {result.outcome.name}: {result.error}")
            with lock:
                results.append(result)

    started = time.perf_counter()
    threads = [threading.Thread(target=drive, args=(s,)) for s in sandboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for sandbox in sandboxes:
        sandbox.close()
    if len(results) != n_jobs * n_parallel:
        raise RuntimeError("a benchmark thread failed; see its traceback above")

    def median(phase: str) -> float:
        return statistics.median(r.timings.get(phase, 0.0) for r in results)

    return {"jobs": len(results), "per_candidate_s": statistics.median(r.wall_time_s for r in results),
            "cpu_s": statistics.median(r.timings.get("startup_cpu", 0.0) + r.timings.get("child_cpu", 0.0)
                                       for r in results),
            "throughput_per_s": len(results) / elapsed, "startup_s": median("startup"),
            "compile_s": median("compile"), "fit_s": median("fit"),
            "score": results[0].scores["score"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    plan = {  # (workload, design): jobs per sandbox
        ("trivial", "fresh"): 3 if args.quick else 6,
        ("trivial", "zygote"): 10 if args.quick else 30,
        ("jax fit", "fresh"): 2 if args.quick else 3,
        ("jax fit", "zygote"): 2 if args.quick else 4,
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for (workload, design), n_jobs in plan.items():
            context, source = make_context(Path(folder), workload)
            for n_parallel in (1, 2):
                row = measure(context, source, design, n_parallel, n_jobs)
                rows.append((workload, design, n_parallel, row))
                print(f"  measured {workload} / {design} / {n_parallel} sandbox(es): {row}", file=sys.stderr,
                      flush=True)
        isolated = isolation.find_bwrap() is not None
    print(f"\nProcessSandbox benchmark ({'bubblewrap' if isolated else 'plain subprocess'}, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    header = (f"{'workload':<9} {'design':<7} {'sandboxes':>9} {'jobs':>5} {'per cand. s':>11} {'CPU s':>6} "
              f"{'cand./s':>8} {'startup s':>9} {'compile s':>9} {'fit s':>6}")
    print(header)
    print("-" * len(header))
    for workload, design, n_parallel, row in rows:
        print(f"{workload:<9} {design:<7} {n_parallel:>9} {row['jobs']:>5} {row['per_candidate_s']:>11.3f} "
              f"{row['cpu_s']:>6.2f} {row['throughput_per_s']:>8.2f} {row['startup_s']:>9.3f} {row['compile_s']:>9.3f} "
              f"{row['fit_s']:>6.3f}")
    print("\nper cand. s: median wall time of one candidate (dispatch to result), start-up included; CPU s: median"
          " CPU seconds per candidate (worker start-up + child, all threads; independent of other load);"
          " cand./s: candidates finished per second over all sandboxes; phases are medians (wall).")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
