import jax
import jax.numpy as jnp


def membrane(params, state, current_pA):
    """Leaky integrate-and-fire neuron (Lapicque 1907; Stein 1965) with an absolute refractory period: the
    voltage relaxes to v_rest_mV with time constant tau_m_ms, driven by r_mohm * current; at v_threshold_mV a spike
    resets it to v_reset_mV and holds it there for refractory_ms (state[1] counts down). The same model as the seed.

    Returns dstate_dt (4,) per ms, v_peak_mV (scalar) and reset (4,).
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
