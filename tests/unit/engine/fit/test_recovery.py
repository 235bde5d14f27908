"""Parameter recovery: simulate from known parameters, fit, and recover them within stated tolerances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine.fit import ParamSpec, fit_maximum_likelihood, read_params
from engine.fit.ddm import wiener_log_density

# ---------------------------------------------------------------- two-armed bandit, the seed Q-learner


def sequence_neg_log_likelihood(agent):
    """NLL (nats) of choices under `agent`, the bandit task's per-trial learner, summed over sessions."""

    def neg_log_likelihood(params, data):
        def session(choices, rewards):
            def trial(carry, inputs):
                state, logits = carry
                choice, reward = inputs
                log_p = jax.nn.log_softmax(logits)[choice]
                logits, state = agent(params, state, choice, reward)
                return (state, logits), log_p

            _, log_p = jax.lax.scan(trial, (jnp.zeros(8), jnp.zeros(2)), (choices, rewards))
            return -jnp.sum(log_p)

        return jnp.sum(jax.vmap(session)(data["choice"], data["reward"]))

    return neg_log_likelihood


def simulate_bandit(agent, params, n_sessions, n_trials, seed):
    rng = np.random.default_rng(seed)
    step = jax.jit(jax.vmap(lambda state, c, r: agent(params, state, c, r)))
    state = jnp.zeros((n_sessions, 8))
    logits = np.zeros((n_sessions, 2))
    choices = np.zeros((n_sessions, n_trials), np.int32)
    rewards = np.zeros((n_sessions, n_trials), np.float32)
    for t in range(n_trials):
        p_second = 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))
        choice = (rng.random(n_sessions) < p_second).astype(np.int32)
        reward = (rng.random(n_sessions) < np.where(choice == 0, 0.7, 0.3)).astype(np.float32)
        logits, state = step(state, jnp.asarray(choice), jnp.asarray(reward))
        logits = np.asarray(logits, dtype=np.float64)
        choices[:, t], rewards[:, t] = choice, reward
    return {"choice": choices, "reward": rewards}


def test_recovers_the_seed_q_learner(repo):
    source = (repo / "tasks" / "bandit" / "seed.py").read_text()
    namespace = {}
    exec(source, namespace)
    agent, spec = namespace["agent"], read_params(source, "agent")
    truth = {"alpha": 0.3, "beta": 5.0}
    data = simulate_bandit(agent, {k: jnp.float32(v) for k, v in truth.items()}, 20, 250, seed=0)
    result = fit_maximum_likelihood(sequence_neg_log_likelihood(agent), spec, data, optimizer="lbfgs", restarts=8)
    # 5000 choices: standard errors are about 0.03 (alpha) and 0.3 (beta)
    assert result.params["alpha"] == pytest.approx(truth["alpha"], abs=0.1)
    assert result.params["beta"] == pytest.approx(truth["beta"], abs=1.0)
    assert result.converged


FOUR_PARAMETER_AGENT = '''
def agent(params, state, choice, reward):
    PARAMS = {"alpha_pos": (0.0, 1.0), "alpha_neg": (0.0, 1.0), "beta": (0.0, 20.0), "perseveration": (-5.0, 5.0)}
    q = state[:2]
    error = reward - q[choice]
    alpha = jnp.where(error > 0, params["alpha_pos"], params["alpha_neg"])
    q = q.at[choice].add(alpha * error)
    logits = params["beta"] * q + params["perseveration"] * jax.nn.one_hot(choice, 2)
    return logits, state.at[:2].set(q)
'''


@pytest.mark.slow
def test_recovers_a_four_parameter_q_learner():
    namespace = {"jax": jax, "jnp": jnp}
    exec(FOUR_PARAMETER_AGENT, namespace)
    agent, spec = namespace["agent"], read_params(FOUR_PARAMETER_AGENT, "agent")
    truth = {"alpha_pos": 0.4, "alpha_neg": 0.15, "beta": 5.0, "perseveration": 1.0}
    data = simulate_bandit(agent, {k: jnp.float32(v) for k, v in truth.items()}, 40, 250, seed=1)
    result = fit_maximum_likelihood(sequence_neg_log_likelihood(agent), spec, data, optimizer="lbfgs", restarts=8)
    tolerance = {"alpha_pos": 0.1, "alpha_neg": 0.1, "beta": 1.5, "perseveration": 0.3}
    for name, value in truth.items():
        assert result.params[name] == pytest.approx(value, abs=tolerance[name]), name


# ---------------------------------------------------------------- drift-diffusion model


def simulate_ddm(drift, boundary_separation, starting_point, non_decision_time_s, n_trials, seed, dt_s=2e-4):
    """Euler simulation of the diffusion (unit noise); returns rt_s (n_trials,) and upper (n_trials,) bool."""
    rng = np.random.default_rng(seed)
    x = np.full(n_trials, starting_point * boundary_separation)
    rt_s = np.zeros(n_trials)
    upper = np.zeros(n_trials, bool)
    running = np.arange(n_trials)
    t = 0.0
    while running.size:
        t += dt_s
        x[running] += drift * dt_s + np.sqrt(dt_s) * rng.standard_normal(running.size)
        done = (x[running] <= 0.0) | (x[running] >= boundary_separation)
        finished = running[done]
        rt_s[finished] = t + non_decision_time_s
        upper[finished] = x[finished] >= boundary_separation
        running = running[~done]
    return {"rt_s": rt_s.astype(np.float32), "upper": upper}


def ddm_neg_log_likelihood(params, data):
    return -jnp.sum(wiener_log_density(data["rt_s"], data["upper"], params["drift"], params["boundary"],
                                       params["start"], params["non_decision_s"]))


@pytest.mark.slow
def test_recovers_drift_diffusion_parameters():
    truth = {"drift": 1.2, "boundary": 1.5, "start": 0.45, "non_decision_s": 0.3}
    data = simulate_ddm(truth["drift"], truth["boundary"], truth["start"], truth["non_decision_s"], 2000, seed=0)
    spec = ParamSpec.from_bounds({"drift": (-4.0, 4.0), "boundary": (0.3, 4.0), "start": (0.1, 0.9),
                                  "non_decision_s": (0.0, 0.5)})
    result = fit_maximum_likelihood(ddm_neg_log_likelihood, spec, data, optimizer="lbfgs", restarts=8)
    # 2000 trials; the tolerances are about 3 standard errors plus the Euler simulation's boundary overshoot
    tolerance = {"drift": 0.2, "boundary": 0.08, "start": 0.04, "non_decision_s": 0.03}
    for name, value in truth.items():
        assert result.params[name] == pytest.approx(value, abs=tolerance[name]), name


# ---------------------------------------------------------------- leaky integrate-and-fire, subthreshold


def lif_voltage_mv(params, current_na, dt_ms):
    """Euler integration of tau dV/dt = -(V - E_L) + R I from V = E_L; returns V (n_steps,) in mV."""

    def step(v, current):
        v = v + dt_ms / params["tau_ms"] * (-(v - params["rest_mv"]) + params["resistance_mohm"] * current)
        return v, v

    _, voltage = jax.lax.scan(step, params["rest_mv"], current_na)
    return voltage


def test_recovers_a_leaky_integrate_and_fire_neuron_by_gradient_through_the_simulation():
    dt_ms, noise_mv = 0.1, 0.5
    rng = np.random.default_rng(0)
    # piecewise-constant current steps of 20 ms, small enough to stay below threshold
    current_na = np.repeat(rng.uniform(-0.1, 0.3, size=15), 200).astype(np.float32)
    truth = {"tau_ms": 15.0, "rest_mv": -68.0, "resistance_mohm": 60.0}
    clean = lif_voltage_mv({k: jnp.float32(v) for k, v in truth.items()}, jnp.asarray(current_na), dt_ms)
    observed = np.asarray(clean) + rng.normal(0.0, noise_mv, size=clean.shape).astype(np.float32)

    def neg_log_likelihood(params, data):
        residual = lif_voltage_mv(params, data["current_na"], dt_ms) - data["voltage_mv"]
        return jnp.sum(residual**2) / (2.0 * noise_mv**2)

    spec = ParamSpec.from_bounds({"tau_ms": (2.0, 50.0), "rest_mv": (-90.0, -50.0), "resistance_mohm": (5.0, 200.0)})
    result = fit_maximum_likelihood(neg_log_likelihood, spec, {"current_na": current_na, "voltage_mv": observed},
                                    optimizer="lbfgs", restarts=8)
    assert result.params["tau_ms"] == pytest.approx(truth["tau_ms"], rel=0.05)
    assert result.params["rest_mv"] == pytest.approx(truth["rest_mv"], abs=0.3)
    assert result.params["resistance_mohm"] == pytest.approx(truth["resistance_mohm"], rel=0.05)
