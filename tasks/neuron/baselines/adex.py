import jax
import jax.numpy as jnp


def membrane(params, state, current_pA):
    """Adaptive exponential integrate-and-fire neuron (Brette & Gerstner 2005).

    C dv/dt = -g_L (v - E_L) + g_L Delta_T exp((v - V_T) / Delta_T) - w + I
    tau_w dw/dt = a (v - E_L) - w
    at v = 0 mV: v -> v_reset, w -> w + b.   state = (v mV, w pA, unused, unused).

    Returns dstate_dt (4,) per ms, v_peak_mV (scalar) and reset (4,).
    """
    PARAMS = {
        "c_pF": (20.0, 500.0),
        "g_l_nS": (1.0, 30.0),
        "e_l_mV": (-85.0, -55.0),
        "v_t_mV": (-65.0, -30.0),
        "delta_t_mV": (0.5, 6.0),
        "tau_w_ms": (10.0, 600.0),
        "a_nS": (-5.0, 20.0),
        "b_pA": (0.0, 200.0),
        "v_reset_mV": (-80.0, -35.0),
    }
    v, w = state[0], state[1]
    spike_drive = jnp.exp(jnp.minimum((v - params["v_t_mV"]) / params["delta_t_mV"], 10.0))
    leak = -params["g_l_nS"] * (v - params["e_l_mV"])
    dv = (leak + params["g_l_nS"] * params["delta_t_mV"] * spike_drive - w + current_pA) / params["c_pF"]
    dw = (params["a_nS"] * (v - params["e_l_mV"]) - w) / params["tau_w_ms"]
    dstate_dt = jnp.zeros(4, state.dtype).at[0].set(dv).at[1].set(dw)
    reset = state.at[0].set(params["v_reset_mV"]).at[1].add(params["b_pA"])
    return dstate_dt, jnp.asarray(0.0, state.dtype), reset
