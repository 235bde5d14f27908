"""Data for the neuron task: current-step sweeps of rat cortical neurons (Blue Brain Project), or a synthetic twin
simulated from an adaptive exponential integrate-and-fire neuron at the same currents.

Cells B6 and B8 have five step amplitudes each (cell B95 has one and is not used: nothing to hold out). Per cell,
the sweeps sorted by amplitude go 1st, 3rd, 5th -> train, 2nd -> selection, 4th -> test, so held-out sweeps are
other current amplitudes of the same cell.

Each split is a dict of numpy arrays; the leading axis is the cell, the second the sweep:
    current_pA:  (n_cells, n_sweeps, n_steps) float32, the injected current at each 0.5 ms step of the window
                 (holding current plus the step, as a clean step: the recorded current's noise is left out)
    voltage_mV:  (n_cells, n_sweeps, n_steps) float32, recorded voltage at the end of each step
    spikes:      (n_cells, n_sweeps, n_steps) float32, recorded spikes (upward 0 mV crossings) in each step
    v_start_mV:  (n_cells, n_sweeps) float32, median voltage in the 20 ms before the window (the initial state)
    step_pA:     (n_cells, n_sweeps) float32, step amplitude above the holding current, pA
The window runs from WINDOW_START_MS (100 ms before the step) to WINDOW_END_MS (100 ms after it).
"""

from __future__ import annotations

import numpy as np

DT_MS = 0.5  # simulation and comparison step
RECORDING_DT_MS = 0.25
WINDOW_START_MS = 600.0
WINDOW_END_MS = 2800.0
STEP_ONSET_MS = 700.0
STEP_OFFSET_MS = 2700.0
CELLS = ("B6", "B8")
ROLES = ("train", "selection", "train", "test", "train")  # by rank of step amplitude within a cell
SYNTHETIC_NOISE_MV = 0.5

# The synthetic twin's generating model: AdEx (baselines/adex.py), one parameter set per simulated cell.
GROUND_TRUTH: dict[str, dict[str, float]] = {
    "B6": {"c_pF": 180.0, "g_l_nS": 3.5, "e_l_mV": -70.0, "v_t_mV": -53.0, "delta_t_mV": 2.0,
           "tau_w_ms": 120.0, "a_nS": 1.0, "b_pA": 40.0, "v_reset_mV": -52.0},
    "B8": {"c_pF": 120.0, "g_l_nS": 2.5, "e_l_mV": -70.0, "v_t_mV": -58.0, "delta_t_mV": 1.5,
           "tau_w_ms": 200.0, "a_nS": 0.0, "b_pA": 30.0, "v_reset_mV": -55.0},
}
SYNTHETIC_PEAK_MV = 20.0  # the synthetic voltage shows this value at the sample where a spike is declared


def detect_spikes(voltage_mV: np.ndarray, threshold_mV: float = 0.0) -> np.ndarray:
    """Returns the sample indices of upward crossings of threshold_mV, (n_spikes,)."""
    above = voltage_mV >= threshold_mV
    return np.flatnonzero(above[1:] & ~above[:-1]) + 1


def simulate_adex_numpy(params: dict[str, float], current_pA: np.ndarray, v_start_mV: np.ndarray,
                        dt_ms: float) -> np.ndarray:
    """Simulates the ground-truth AdEx with Euler steps (the arithmetic of baselines/adex.py, at any dt).

    Args:
        current_pA: (n_sweeps, n_samples) injected current.
        v_start_mV: (n_sweeps,) initial voltage; w starts at 0.

    Returns:
        (n_sweeps, n_samples) voltage after each step, SYNTHETIC_PEAK_MV at the samples where a spike occurred.
    """
    p = params
    v = v_start_mV.astype(float).copy()
    w = np.zeros_like(v)
    out = np.zeros(current_pA.shape)
    for i in range(current_pA.shape[1]):
        drive = np.exp(np.minimum((v - p["v_t_mV"]) / p["delta_t_mV"], 10.0))
        dv = (-p["g_l_nS"] * (v - p["e_l_mV"]) + p["g_l_nS"] * p["delta_t_mV"] * drive - w + current_pA[:, i]) / p["c_pF"]
        dw = (p["a_nS"] * (v - p["e_l_mV"]) - w) / p["tau_w_ms"]
        v_next, w_next = v + dt_ms * dv, w + dt_ms * dw
        spike = v_next >= 0.0
        out[:, i] = np.where(spike, SYNTHETIC_PEAK_MV, v_next)
        v = np.where(spike, p["v_reset_mV"], v_next)
        w = np.where(spike, w + p["b_pA"], w_next)
    return out


def _step_current(holding_pA: float, step_pA: float, time_ms: np.ndarray) -> np.ndarray:
    inside = (time_ms >= STEP_ONSET_MS) & (time_ms < STEP_OFFSET_MS)
    return holding_pA + step_pA * inside


def _recorded_sweeps(n_cells: int) -> list[list[dict]]:
    """Returns per cell the sweeps sorted by step amplitude: full-resolution voltage and the clean step."""
    from tasks.data import load_bbp_current_clamp

    sweeps = load_bbp_current_clamp(subset=5 * n_cells)
    cells = []
    for cell in CELLS[:n_cells]:
        mine = sorted((s for s in sweeps if s.cell == cell), key=lambda s: s.step_amplitude_pA)
        cells.append([{"voltage_mV": s.voltage_mV, "holding_pA": s.holding_current_pA,
                       "step_pA": s.step_amplitude_pA, "dt_ms": s.dt_ms} for s in mine])
    return cells


def _synthetic_sweeps(n_cells: int, seed: int) -> list[list[dict]]:
    """The ground-truth AdEx at the recorded sweeps' holding and step currents, plus white voltage noise.

    The model is simulated with the scoring's own Euler steps (DT_MS), and the comparison window starts from the
    state the scoring's simulation starts from (the voltage `_window` reads as v_start_mV, the adaptation current
    at 0), so that the ground truth reproduces its spike times exactly when scored; each step's voltage fills the
    two recording samples of that step.
    """
    rng = np.random.default_rng(seed)
    stride = int(round(DT_MS / RECORDING_DT_MS))
    before = int(round(WINDOW_START_MS / DT_MS))  # steps before the window
    first = int(round(WINDOW_START_MS / RECORDING_DT_MS))  # the window's first recording sample
    baseline = int(round(20.0 / RECORDING_DT_MS))  # the samples v_start_mV is the median of (`_window`)
    cells = []
    for cell, recorded in zip(CELLS, _recorded_sweeps(n_cells)):
        n_steps = recorded[0]["voltage_mV"].shape[0] // stride
        time_ms = np.arange(n_steps) * DT_MS  # the start of each step
        current = np.stack([_step_current(s["holding_pA"], s["step_pA"], time_ms) for s in recorded])
        noise = SYNTHETIC_NOISE_MV * rng.standard_normal((len(recorded), n_steps * stride))
        # start at the model's own rest under the holding current: run 1 s of holding current first
        rest = simulate_adex_numpy(GROUND_TRUTH[cell], current[:, :1].repeat(int(1000 / DT_MS), axis=1),
                                   np.full(len(recorded), GROUND_TRUTH[cell]["e_l_mV"]), DT_MS)[:, -1]
        early = simulate_adex_numpy(GROUND_TRUTH[cell], current[:, :before], rest, DT_MS)  # end of each step
        # the window starts as the scoring's simulation does: at the recorded (noisy) baseline's median, w = 0
        early_samples = _samples(early, rest, stride) + noise[:, : before * stride]
        v_start = np.median(early_samples[:, first - baseline : first], axis=1).astype(np.float32)
        window = simulate_adex_numpy(GROUND_TRUTH[cell], current[:, before:], v_start.astype(float), DT_MS)
        voltage = _samples(np.concatenate([early, window], axis=1), rest, stride) + noise
        cells.append([{**s, "voltage_mV": v} for s, v in zip(recorded, voltage)])
    return cells


def _samples(stepped: np.ndarray, start: np.ndarray, stride: int) -> np.ndarray:
    """Recording samples (n_sweeps, n_steps * stride) of simulated steps: sample i lies at i * RECORDING_DT_MS,
    so samples stride * k + 1 .. stride * (k + 1) hold step k's end value, and sample 0 holds `start`."""
    return np.concatenate([start[:, None], np.repeat(stepped, stride, axis=1)[:, :-1]], axis=1)


def _window(sweep: dict) -> dict[str, np.ndarray]:
    """Cuts the comparison window at DT_MS resolution out of one full-resolution sweep."""
    dt = sweep["dt_ms"]
    voltage = sweep["voltage_mV"]
    stride = int(round(DT_MS / dt))
    first, last = int(round(WINDOW_START_MS / dt)), int(round(WINDOW_END_MS / dt))
    n_steps = (last - first) // stride
    spikes_full = np.zeros(voltage.shape[0])
    spikes_full[detect_spikes(voltage)] = 1.0
    # step k of the simulation ends at WINDOW_START_MS + (k + 1) * DT_MS; it holds the spikes of its samples
    spikes = spikes_full[first + 1 : first + 1 + n_steps * stride].reshape(n_steps, stride).sum(axis=1)
    time_ms = WINDOW_START_MS + np.arange(n_steps) * DT_MS  # the time at the start of each step
    return {
        "current_pA": _step_current(sweep["holding_pA"], sweep["step_pA"], time_ms).astype(np.float32),
        "voltage_mV": voltage[first + stride : first + stride + n_steps * stride : stride].astype(np.float32),
        "spikes": spikes.astype(np.float32),
        "v_start_mV": np.float32(np.median(voltage[first - int(round(20.0 / dt)) : first])),
        "step_pA": np.float32(sweep["step_pA"]),
    }


def load(source: str = "bbp", seed: int = 0, subset: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Returns {"train", "selection", "test"} splits: per cell, sweeps of other step amplitudes are held out.

    Args:
        source: "bbp" (the recordings, through the dataset registry) or "synthetic" (the ground-truth AdEx at the
            recorded currents, with SYNTHETIC_NOISE_MV of white voltage noise; deterministic given seed).
        seed: seed of the synthetic noise.
        subset: number of cells to keep (1 = B6 only, for small CI runs); None = both.
    """
    n_cells = len(CELLS) if subset is None else subset
    if not 1 <= n_cells <= len(CELLS):
        raise ValueError(f"subset = {subset}; expected 1 or 2 cells (or None for both).")
    if source == "bbp":
        cells = _recorded_sweeps(n_cells)
    elif source == "synthetic":
        cells = _synthetic_sweeps(n_cells, seed)
    else:
        raise ValueError(f"data source '{source}' is unknown; expected 'bbp' or 'synthetic'.")
    splits = {}
    for role in ("train", "selection", "test"):
        windows = [[_window(s) for s, r in zip(sweeps, ROLES) if r == role] for sweeps in cells]
        splits[role] = {key: np.stack([np.stack([w[key] for w in row]) for row in windows]) for key in windows[0][0]}
    return splits
