"""`discover run` with the real OpenAI and Anthropic SDKs against a loopback server: end to end, 429, 401, budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.llm_server import LLMServer, Reply, vary_best_shot

pytestmark = pytest.mark.slow


def discover(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=900, env=environment
    )


def base_url(server: LLMServer, provider: str) -> str:
    return server.openai_base_url if provider == "openai" else server.anthropic_base_url


def openai_preset(path: Path, server: LLMServer, model: str) -> Path:
    """Writes a config preset for one model (a YAML flow mapping) on the loopback server, one request at a time."""
    path.write_text(
        "llm:\n  provider: openai\n  base_url: " + server.openai_base_url + "\n"
        f"  models: [{model}]\n  max_in_flight: 1\nrun: {{proposer: llm}}\n"
    )
    return path


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_run_end_to_end_through_the_sdk_with_a_rate_limit_on_the_way(provider, small_bandit_task: Path, tmp_path: Path):
    with LLMServer(answer=vary_best_shot) as server:
        server.push(Reply.rate_limited(retry_after_s=0.3))  # the first request is rate-limited, then retried
        db = tmp_path / "run.db"
        run = discover("run", str(small_bandit_task), "--db", str(db), "--max-evals", "5", "--workers", "1", "--runner", "local",
                       "--proposer", provider, "--model", "test-model", "--base-url", base_url(server, provider), "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["evaluations"] == 5
        assert len(server.requests) >= 6  # the 429 and at least five answers
    stats = json.loads(discover("stats", str(db), "--json").stdout)
    assert stats["tokens"] > 0
    proposers = {p["proposer"] for p in json.loads(discover("best", str(db), "--n", "100", "--json").stdout)}
    assert "llm:test-model" in proposers


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_an_invalid_key_stops_at_once_with_a_clear_message(provider, small_bandit_task: Path, tmp_path: Path):
    with LLMServer(answer=lambda request: Reply.unauthorized()) as server:
        key_name = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
        run = discover("run", str(small_bandit_task), "--db", str(tmp_path / "run.db"), "--max-evals", "5",
                       "--workers", "1", "--runner", "local", "--proposer", provider, "--model", "test-model",
                       "--base-url", base_url(server, provider), env={key_name: "sk-test-SECRET-123"})
        assert run.returncode == 1
        assert key_name in run.stderr
        assert "SECRET" not in run.stdout + run.stderr  # the key itself is never shown
        # No retries on 401: only the requests already in flight (two per worker) reached the server.
        assert len(server.requests) <= 2


def test_the_cost_budget_stops_the_run_and_keeps_what_was_paid_for(small_bandit_task: Path, tmp_path: Path):
    with LLMServer(answer=vary_best_shot) as server:
        preset = openai_preset(tmp_path / "priced.yaml", server,
                               "{name: test-model, input_usd_per_mtok: 1000.0, output_usd_per_mtok: 1000.0}")
        db = tmp_path / "run.db"
        run = discover("run", str(small_bandit_task), "--db", str(db), "--config", str(preset),
                       "--max-evals", "50", "--max-cost-usd", "2.5", "--workers", "1", "--runner", "local")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "LLM budget reached" in run.stdout
    stats = json.loads(discover("stats", str(db), "--json").stdout)
    assert 0 < stats["evaluations"] < 50
    assert 2.5 <= stats["cost_usd"] < 2.5 + 2.0  # one request may be in flight when the cap is reached


def test_several_answers_per_request_are_several_candidates(small_bandit_task: Path, tmp_path: Path):
    with LLMServer(answer=vary_best_shot) as server:
        preset = openai_preset(tmp_path / "samples.yaml", server, "{name: test-model, samples: 3}")
        db = tmp_path / "run.db"
        run = discover("run", str(small_bandit_task), "--db", str(db), "--config", str(preset), "--max-evals", "7",
                       "--workers", "1", "--runner", "local", "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        summary = json.loads(run.stdout)
        requests = list(server.requests)
    assert requests and all(request.body.get("n") == 3 for request in requests)
    # Seven candidates (the seed is not counted) need three requests of three answers, four if answers repeat.
    # No request is made that the budget has no room for, and no answer that came back is dropped, so the run
    # ends at most two evaluations past --max-evals.
    assert 3 <= len(requests) <= 4
    assert 7 <= summary["evaluations"] <= 7 + 2
    stats = json.loads(discover("stats", str(db), "--json").stdout)
    assert stats["evaluations"] + stats["duplicates"] == 3 * len(requests)


def test_the_plain_command_works_against_a_server_that_answers_one_request_at_a_time(small_bandit_task: Path, tmp_path: Path):
    """No config file: the request limit adapts to a one-slot server slower than the timeout, and the requests
    that timed out in its queue are cancelled there instead of being computed for nobody."""
    with LLMServer(answer=vary_best_shot, delay_s=1.5, one_at_a_time=True) as server:
        db = tmp_path / "run.db"
        run = discover("run", str(small_bandit_task), "--db", str(db), "--max-evals", "3", "--workers", "1",
                       "--runner", "local", "--proposer", "openai", "--model", "local-model", "--base-url",
                       server.openai_base_url, "--timeout-s", "2", "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["evaluations"] == 3
        assert server.cancelled >= 1 and "sending at most 1 at once" in " ".join(run.stderr.split())
        assert server.requests[0].body["temperature"] == 1.0  # a temperature by default
        system = server.requests[0].system
        assert ".at[i].set(v)" in system and "jnp.where" in system and "Returns:" in system
