"""Times the engine's inner loop against scipy on a Q-learning two-armed-bandit likelihood.

For 2 and 4 free parameters it fits 10 sessions x 500 simulated trials from 16 restarts and scores 5 held-out
sessions, and prints compile, run and total seconds and the final training NLL for:

    JAX adam / lbfgs with the optimizer on the host around one compiled evaluation (loop="host", the default),
    JAX adam / lbfgs with the whole fit in one compiled while loop (loop="device"),
    scipy L-BFGS-B on the same likelihood written in numpy (finite-difference gradients), same restart points.

Each JAX row fits a fresh copy of the likelihood, so it pays the full compile a new candidate pays; the process
is warmed up first, as a worker is after its first candidate. Times are medians over --repeats; "total cpu s"
is the process's CPU time (both threads), steadier than wall time on a shared machine.

    .venv/bin/python bench/fit.py                  # the table
    .venv/bin/python bench/fit.py --gpu            # 4096 restarts x 100 sessions x 1000 trials; restart-fits/s
    .venv/bin/python bench/fit.py --sweep          # L-BFGS compile and fit seconds under XLA CPU options
    .venv/bin/python bench/fit.py --neuron         # the neuron task's per-candidate fit (engine.fit.fit_spiking)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# run as a script, bench/ comes first on sys.path, where bench/engine.py would shadow the engine package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from engine.fit import fit_maximum_likelihood, read_params

AGENT_2 = '''
import jax
import jax.numpy as jnp

def agent(params, state, choice, reward):
    """Q-learning with a softmax choice rule."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
    q = state[:2]
    q = q.at[choice].add(params["alpha"] * (reward - q[choice]))
    return params["beta"] * q, state.at[:2].set(q)
'''

AGENT_4 = '''
import jax
import jax.numpy as jnp

def agent(params, state, choice, reward):
    """Q-learning with separate learning rates for positive and negative errors, and choice perseveration."""
    PARAMS = {"alpha_pos": (0.0, 1.0), "alpha_neg": (0.0, 1.0), "beta": (0.0, 20.0), "perseveration": (-5.0, 5.0)}
    q = state[:2]
    error = reward - q[choice]
    alpha = jnp.where(error > 0, params["alpha_pos"], params["alpha_neg"])
    q = q.at[choice].add(alpha * error)
    logits = params["beta"] * q + params["perseveration"] * jax.nn.one_hot(choice, 2)
    return logits, state.at[:2].set(q)
'''

TRUE_PARAMS = {
    2: {"alpha": 0.3, "beta": 4.0},
    4: {"alpha_pos": 0.4, "alpha_neg": 0.15, "beta": 4.0, "perseveration": 0.8},
}
REWARD_PROBABILITIES = (0.75, 0.25)


def numpy_logits(params: dict[str, float], q: np.ndarray, choice: np.ndarray, reward: np.ndarray):
    """The agents above in numpy, vectorized over sessions; q (n_sessions, 2) -> logits, new q."""
    rows = np.arange(len(choice))
    error = reward - q[rows, choice]
    if "alpha" in params:
        alpha = params["alpha"]
    else:
        alpha = np.where(error > 0, params["alpha_pos"], params["alpha_neg"])
    q = q.copy()
    q[rows, choice] += alpha * error
    logits = params["beta"] * q
    if "perseveration" in params:
        logits[rows, choice] += params["perseveration"]
    return logits, q


def simulate(params: dict[str, float], n_sessions: int, n_trials: int, seed: int) -> dict[str, np.ndarray]:
    """Returns {"choice": int32 (n_sessions, n_trials), "reward": float32 (n_sessions, n_trials)}."""
    rng = np.random.default_rng(seed)
    choices = np.zeros((n_sessions, n_trials), np.int32)
    rewards = np.zeros((n_sessions, n_trials), np.float32)
    q = np.zeros((n_sessions, 2))
    logits = np.zeros((n_sessions, 2))
    for trial in range(n_trials):
        p_second = 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))
        choice = (rng.random(n_sessions) < p_second).astype(np.int32)
        reward = (rng.random(n_sessions) < np.take(REWARD_PROBABILITIES, choice)).astype(np.float32)
        logits, q = numpy_logits(params, q, choice, reward)
        choices[:, trial], rewards[:, trial] = choice, reward
    return {"choice": choices, "reward": rewards}


def numpy_neg_log_likelihood(params: dict[str, float], data: dict[str, np.ndarray]) -> float:
    """Total NLL (nats) of the sessions in data."""
    n_sessions, n_trials = data["choice"].shape
    q = np.zeros((n_sessions, 2))
    logits = np.zeros((n_sessions, 2))
    total = 0.0
    rows = np.arange(n_sessions)
    for trial in range(n_trials):
        choice = data["choice"][:, trial]
        shifted = logits - logits.max(axis=1, keepdims=True)
        total -= np.sum(shifted[rows, choice] - np.log(np.exp(shifted).sum(axis=1)))
        logits, q = numpy_logits(params, q, choice, data["reward"][:, trial])
    return float(total)


def jax_neg_log_likelihood(agent):
    """Returns a fresh (params, data) -> total NLL built on `agent` (a new function: a new compile)."""

    def neg_log_likelihood(params, data):
        def session(choices, rewards):
            def trial(carry, inputs):
                state, logits = carry
                choice, reward = inputs
                log_p = jax.nn.log_softmax(logits)[choice]
                logits, state = agent(params, state, choice, reward)
                return (state, logits), log_p

            initial = (jnp.zeros(8, jnp.float32), jnp.zeros(2, jnp.float32))
            _, log_p = jax.lax.scan(trial, initial, (choices, rewards))
            return -jnp.sum(log_p)

        return jnp.sum(jax.vmap(session)(data["choice"], data["reward"]))

    return neg_log_likelihood


def load_agent(source: str):
    namespace: dict = {}
    exec(source, namespace)
    return namespace["agent"], read_params(source, "agent")


def time_jax(agent, spec, train, held_out, optimizer, loop, restarts, max_steps):
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fit_maximum_likelihood(jax_neg_log_likelihood(agent), spec, train, held_out=held_out,
                                    restarts=restarts, max_steps=max_steps, optimizer=optimizer, loop=loop)
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    compile_s = result.timings["compile_s"]
    return compile_s, total - compile_s, total, total_cpu, result.neg_log_likelihood


def time_scipy(spec, train, held_out, restarts):
    rng = np.random.default_rng(0)  # the same restart points as the JAX fits (seed 0)
    z0 = rng.uniform(-2.0, 2.0, size=(1, restarts, spec.size))[0]
    lows, highs = np.array(spec.lows), np.array(spec.highs)
    starts = lows + (highs - lows) / (1.0 + np.exp(-z0))

    def objective(x):
        return numpy_neg_log_likelihood(dict(zip(spec.names, x)), train)

    start, start_cpu = time.perf_counter(), time.process_time()
    fits = [scipy.optimize.minimize(objective, x0, method="L-BFGS-B", bounds=list(zip(lows, highs)))
            for x0 in starts]
    best = min(fits, key=lambda fit: fit.fun)
    numpy_neg_log_likelihood(dict(zip(spec.names, best.x)), held_out)
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return 0.0, total, total, total_cpu, float(best.fun)


def table(repeats: int, restarts: int, max_steps: int) -> None:
    warm_agent, warm_spec = load_agent(AGENT_2)
    warm = simulate(TRUE_PARAMS[2], 2, 50, seed=99)
    for optimizer in ("adam", "lbfgs"):  # warm the process up as a worker is after its first candidate
        fit_maximum_likelihood(jax_neg_log_likelihood(warm_agent), warm_spec, warm, held_out=warm, restarts=restarts,
                               max_steps=5, optimizer=optimizer)
    print(f"{'params':>6} {'method':<24} {'compile s':>9} {'run s':>7} {'total s':>8} {'total cpu s':>11} "
          f"{'final NLL':>11}")
    for n_params, source in ((2, AGENT_2), (4, AGENT_4)):
        agent, spec = load_agent(source)
        train = simulate(TRUE_PARAMS[n_params], 10, 500, seed=1)
        held_out = simulate(TRUE_PARAMS[n_params], 5, 500, seed=2)

        def jax_fit(optimizer, loop):
            return lambda: time_jax(agent, spec, train, held_out, optimizer, loop, restarts, max_steps)

        methods = {
            "jax adam (host loop)": jax_fit("adam", "host"),
            "jax lbfgs (host loop)": jax_fit("lbfgs", "host"),
            "jax adam (device loop)": jax_fit("adam", "device"),
            "jax lbfgs (device loop)": jax_fit("lbfgs", "device"),
            "scipy L-BFGS-B (numpy)": lambda: time_scipy(spec, train, held_out, restarts),
        }
        for name, run in methods.items():
            rows = [run() for _ in range(repeats if "scipy" not in name else 1)]
            compile_s, run_s, total_s, total_cpu_s, nll = (statistics.median(column) for column in zip(*rows))
            print(f"{n_params:>6} {name:<24} {compile_s:>9.2f} {run_s:>7.2f} {total_s:>8.2f} {total_cpu_s:>11.2f} "
                  f"{nll:>11.3f}", flush=True)


def large_batch(restarts: int, n_sessions: int, n_trials: int, *, max_steps: int) -> None:
    agent, spec = load_agent(AGENT_2)
    train = simulate(TRUE_PARAMS[2], n_sessions, n_trials, seed=1)
    print(f"backend {jax.default_backend()}: {restarts} restarts x {n_sessions} sessions x {n_trials} trials")
    print(jax.devices())
    for optimizer, loop in (("lbfgs", "host"), ("lbfgs", "device"), ("adam", "host"), ("adam", "device")):
        result = fit_maximum_likelihood(jax_neg_log_likelihood(agent), spec, train, restarts=restarts,
                                        max_steps=max_steps, optimizer=optimizer, loop=loop)
        fit_s = result.timings["fit_s"]
        print(f"{optimizer:<6} {loop:<6} compile {result.timings['compile_s']:.2f} s, fit {fit_s:.2f} s, "
              f"{result.steps} steps, {restarts / fit_s:.0f} restart-fits/s, NLL {result.neg_log_likelihood:.2f}, "
              f"{result.restarts_ok} finite restarts", flush=True)


def sweep(repeats: int, restarts: int) -> None:
    """Compile and fit seconds (wall and CPU) of L-BFGS under XLA CPU options and gradient modes."""
    from engine.fit import gradient

    option_sets = {
        "defaults": {},
        "no fusion emitters": {"xla_cpu_use_fusion_emitters": False},
        "O1": {"xla_backend_optimization_level": 1},
        "O0": {"xla_backend_optimization_level": 0},
    }
    print(f"{'params':>6} {'gradient':<8} {'XLA options':<20} {'compile s':>9} {'cpu':>6} {'fit s':>6} {'cpu':>6} "
          f"{'final NLL':>10}")
    for n_params, source in ((2, AGENT_2), (4, AGENT_4)):
        agent, spec = load_agent(source)
        train = simulate(TRUE_PARAMS[n_params], 10, 500, seed=1)
        held_out = simulate(TRUE_PARAMS[n_params], 5, 500, seed=2)
        fit_maximum_likelihood(jax_neg_log_likelihood(agent), spec, held_out, held_out=held_out, max_steps=3)
        for mode, max_forward in (("forward", 8), ("reverse", 0)):
            for label, options in option_sets.items():
                gradient.FORWARD_MODE_MAX_PARAMS, gradient.CPU_COMPILER_OPTIONS = max_forward, options
                gradient._UNSUPPORTED_OPTIONS.clear()
                rows = []
                for _ in range(repeats):
                    result = fit_maximum_likelihood(jax_neg_log_likelihood(agent), spec, train, held_out=held_out,
                                                    restarts=restarts, optimizer="lbfgs")
                    t = result.timings
                    rows.append((t["compile_s"], t["compile_cpu_s"], t["fit_s"], t["fit_cpu_s"],
                                 result.neg_log_likelihood))
                if set(options) & gradient._UNSUPPORTED_OPTIONS:
                    label += " (unsupported)"
                values = [statistics.median(column) for column in zip(*rows)]
                print(f"{n_params:>6} {mode:<8} {label:<20} {values[0]:>9.2f} {values[1]:>6.2f} {values[2]:>6.2f} "
                      f"{values[3]:>6.2f} {values[4]:>10.3f}", flush=True)


def neuron(repeats: int) -> None:
    """Prints the neuron task's per-candidate cost: its score (fit on the twin's training sweeps, both cells, then
    the held-out sweeps) for the seed and AdEx, built as the exported candidates a run's scorer receives."""
    from engine.task.spec import load_task
    from tests.tasks.candidates import candidate_from

    folder = Path(__file__).resolve().parents[1] / "tasks" / "neuron"
    task = load_task(folder / "synthetic.yaml")
    splits = task.load_splits()
    score = task.score.load()
    print(f"neuron twin, 2 cells x 3 training sweeps x 4400 steps, median of {repeats}")
    print(f"{'model':<8}{'params':>7}{'compile s':>11}{'fit s':>8}{'score s':>9}{'total s':>9}{'cpu s':>8}"
          f"{'train score':>13}")
    for name, path in (("seed", folder / "seed.py"), ("adex", folder / "baselines" / "adex.py")):
        candidate = candidate_from(path, folder / "task.yaml")
        rows = []
        for _ in range(repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            result = score(candidate, splits["train"], splits["selection"])
            rows.append((result.timings["compile_s"], result.timings["fit_s"], result.timings["score_s"],
                         time.perf_counter() - started, time.process_time() - started_cpu, result.train_score))
        compile_s, fit_s, score_s, total_s, cpu_s, train = (statistics.median(column) for column in zip(*rows))
        print(f"{name:<8}{len(candidate.PARAMS):>7}{compile_s:>11.1f}{fit_s:>8.1f}{score_s:>9.1f}{total_s:>9.1f}"
              f"{cpu_s:>8.1f}{train:>13.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="large batch: 4096 restarts x 100 sessions x 1000 trials")
    parser.add_argument("--repeats", type=int, default=3, help="JAX timings are medians over this many fits")
    parser.add_argument("--restarts", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--gpu-shape", type=int, nargs=3, default=(4096, 100, 1000),
                        metavar=("RESTARTS", "SESSIONS", "TRIALS"), help="the --gpu batch")
    parser.add_argument("--sweep", action="store_true", help="compile/fit times under XLA options, gradient modes")
    parser.add_argument("--all-tasks", action="store_true",
                        help="each bundled task's seed through the task's own score (bench/task_costs.py)")
    parser.add_argument("--baselines", action="store_true", help="--all-tasks: the baselines too")
    parser.add_argument("--tasks", nargs="+", help="--all-tasks: only these task folders under tasks/")
    parser.add_argument("--neuron", action="store_true", help="the neuron task's per-candidate fit and score")
    args = parser.parse_args()
    if args.neuron:
        neuron(args.repeats)
    elif args.all_tasks:
        from bench.task_costs import ROOT, candidate_costs, print_table

        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; medians of {args.repeats}")
        folders = sorted(p.parent for p in (ROOT / "tasks").glob("*/task.yaml"))
        print_table([])
        for folder in folders:  # each task's rows when they are done: a run cut off at a time limit shows those
            if args.tasks and folder.name not in args.tasks:
                continue
            print_table(candidate_costs(folder / "task.yaml", "all" if args.baselines else "seed", args.repeats),
                        header=False)
    elif args.sweep:
        sweep(args.repeats, args.restarts)
    elif args.gpu:
        large_batch(*args.gpu_shape, max_steps=args.max_steps)
    else:
        table(args.repeats, args.restarts, args.max_steps)


if __name__ == "__main__":
    main()
