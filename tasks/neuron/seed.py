import jax
import jax.numpy as jnp


def membrane(params, state, current_pA):
    """Right-hand side of a point-neuron membrane model driven by an injected current.

    The engine integrates dstate_dt with Euler steps of 0.5 ms from a state of zeros with state[0] set to the
    recorded resting voltage. After each step, if the voltage reaches v_peak_mV, a spike is recorded at that
    step and the whole state is replaced by `reset` (computed from the state before the step).

    Args:
        params: dict of free parameters (constrained values, scalars), declared in PARAMS below.
        state: (4,) float array; state[0] is the membrane voltage v (mV), state[1:] are whatever the model needs
            (adaptation currents in pA, gating variables, a refractory clock in ms, ...).
        current_pA: float scalar, the injected current, pA (holding current plus the step).

    Returns:
        dstate_dt: (4,) float array, time derivative of each state variable, per ms (mV/ms for v).
        v_peak_mV: float scalar, the voltage at which a spike is declared.
        reset: (4,) float array, the state right after a spike.

    Seed model: leaky integrate-and-fire with an absolute refractory period (state[1] counts it down, in ms).
    """
    PARAMS = {
        "tau_m_ms": (2.0, 80.0),
        "r_mohm": (20.0, 600.0),
        "v_rest_mV": (-85.0, -55.0),
        "v_threshold_mV": (-65.0, -30.0),
        "v_reset_mV": (-85.0, -40.0),
        "refractory_ms": (0.5, 20.0),
    }
    v = state[0]
    refractory = state[1] > 0.0
    dv = (-(v - params["v_rest_mV"]) + params["r_mohm"] * current_pA * 1e-3) / params["tau_m_ms"]
    dv = jnp.where(refractory, 0.0, dv)
    dclock = jnp.where(refractory, -1.0, 0.0)
    dstate_dt = jnp.zeros(4, state.dtype).at[0].set(dv).at[1].set(dclock)
    reset = jnp.zeros(4, state.dtype).at[0].set(params["v_reset_mV"]).at[1].set(params["refractory_ms"])
    return dstate_dt, params["v_threshold_mV"], reset
