"""Whole-cell current-clamp step responses of rat somatosensory cortex neurons (Blue Brain Project).

Upstream: the test data of GitHub BlueBrain/BluePyEfe at commit 11a1e0c5 (tests/exp_data/), recordings from
the Neocortical Microcircuit Collaboration portal (Markram et al. 2015). Three cells (B6, B8, B95), 11 sweeps
of the "IDRest" protocol: 3 s at 0.25 ms per sample (12,000 samples), a holding current throughout, and a
2,000 ms current step from 700 ms to 2,700 ms. Each sweep is two Igor binary waves: channel 0 holds the
injected current (pA), channel 3 the membrane voltage (mV). The protocol timing is read from the wave note
(P0DUR1..6 in ms, P0AMP1..6: the epoch whose amplitude is non-zero is the step).

Cells and sweeps: B6 sweeps 181-185 (steps of about +119 to +353 pA), B8 sweeps 145-149 (+94 to +275 pA),
B95 sweep 107 (+37.5 pA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.data.igor import IgorWave, read_ibw
from tasks.data.subsets import check_subset
from engine.task.datasets import DataFile, Dataset, DatasetError, fetch, github_raw_url

__all__ = ["BBP_RAT_CORTEX", "CurrentClampSweep", "load_bbp_current_clamp"]

_REPOSITORY = "BlueBrain/BluePyEfe"
_COMMIT = "11a1e0c59e2541362e22279f6c78edbff44db975"

# (cell, sweep number) in a fixed order: the order of the loader's output and of `subset`.
SWEEPS: tuple[tuple[str, int], ...] = (
    *(("B6", sweep) for sweep in range(181, 186)),
    *(("B8", sweep) for sweep in range(145, 150)),
    ("B95", 107),
)

_SHA256 = {
    "raw_ibw/B6/B6_Ch0_IDRest_181.ibw": "b070ee18e65c7cf8e9dc6af95483847e39b8af5677a8d5e1f626916ccce3abe4",
    "raw_ibw/B6/B6_Ch0_IDRest_182.ibw": "69226d1ae905c39dc7d92f33fb34f79886b13a31d66893c99f9ae55db1183436",
    "raw_ibw/B6/B6_Ch0_IDRest_183.ibw": "0a086841f5baffe5c8cc8c695231f878704bb547bb8071a181f667cf0ce8c964",
    "raw_ibw/B6/B6_Ch0_IDRest_184.ibw": "a7385d62bf7555b810e01d752fab765a84324eb6a86f50d146e261a979dd66ca",
    "raw_ibw/B6/B6_Ch0_IDRest_185.ibw": "488ae31e8ed54b4f554dd54c144910d785916692780deb268770bd917044816e",
    "raw_ibw/B6/B6_Ch3_IDRest_181.ibw": "0644c485239822c9a697288b3d3e5384d013deaa936fc5b2b2e3612f324d0752",
    "raw_ibw/B6/B6_Ch3_IDRest_182.ibw": "ebe4aaf7e290cf460320108d4455917f9a212f2c2e43a5fcb09ed4a24e7af666",
    "raw_ibw/B6/B6_Ch3_IDRest_183.ibw": "971d4674d88ea8b38089fde4eb6abb2d96d0cdc08f52cc7211b549526c2dc4d4",
    "raw_ibw/B6/B6_Ch3_IDRest_184.ibw": "e45c081b25716a27ae44acbdf8b92251b201a5d321d04abf06186acf8021e900",
    "raw_ibw/B6/B6_Ch3_IDRest_185.ibw": "53e978b161b79299018a65547496363e4001ab2c61de3d4c2fd498dcb63bc0ae",
    "raw_ibw/B8/B8_Ch0_IDRest_145.ibw": "c4f621cf2eafc79c1e195a85986b0e77eac487231896aaca21d0db2f90e5d90f",
    "raw_ibw/B8/B8_Ch0_IDRest_146.ibw": "aa12c8a83d718bb887cb2f158326738a0139c2c6bd12422b39c2cc613a520f1b",
    "raw_ibw/B8/B8_Ch0_IDRest_147.ibw": "affebda42fb60595ac57f56d3d151e0d86e37de6b10055106a87575ec26f7d20",
    "raw_ibw/B8/B8_Ch0_IDRest_148.ibw": "7dc5f4a204d6046cf7a4cfb7885afceaec29117da4726c7b7aa34c2a9b297c14",
    "raw_ibw/B8/B8_Ch0_IDRest_149.ibw": "b21b1308264154d013665e768670950a90ba1af91a9ca67eefcb2eaae1ad056c",
    "raw_ibw/B8/B8_Ch3_IDRest_145.ibw": "3f14d62a2b745424958302d847006725820f8cc24a842fce94d940d10d093760",
    "raw_ibw/B8/B8_Ch3_IDRest_146.ibw": "cceb4f9aabcfa3a5f9ceeeddf61cf7d36a9cb4728d2ad707a634f0989611d76c",
    "raw_ibw/B8/B8_Ch3_IDRest_147.ibw": "24889a77c46100e6c8be1d26578343173024ab83a8145e48b1036b8d2702dc27",
    "raw_ibw/B8/B8_Ch3_IDRest_148.ibw": "52f879199a88831cef91fa983c7a63dc26506667b2a94e687ee55f9df81a76d0",
    "raw_ibw/B8/B8_Ch3_IDRest_149.ibw": "52faf33a0a4d7ea94afd68bdadb6d005dbe60d1ef3e3d2536b21eb119e96c51c",
    "raw_ibw/B95_Ch0_IDRest_107.ibw": "7efabbbb65667f9c7dbd352dec7332768a1644967d3417bea04220bca9bde719",
    "raw_ibw/B95_Ch3_IDRest_107.ibw": "02b750928fd4d90602e527543fabf5f2462b70b4c01fc6c01f8f9fdc6209bd82",
}


def _file_name(cell: str, channel: int, sweep: int) -> str:
    # B6 and B8 sit in a folder per cell upstream; B95 sits directly in tests/exp_data/.
    folder = f"{cell}/" if cell in ("B6", "B8") else ""
    return f"raw_ibw/{folder}{cell}_Ch{channel}_IDRest_{sweep}.ibw"


BBP_RAT_CORTEX = Dataset(
    name="bbp-rat-cortex-ccamp",
    files=tuple(
        DataFile(
            name=name,
            url=github_raw_url(_REPOSITORY, _COMMIT, "tests/exp_data/" + name.removeprefix("raw_ibw/")),
            sha256=sha256,
        )
        for name, sha256 in _SHA256.items()
    ),
    licence="BluePyEfe test data, BSD-licensed (LICENSE.txt of BlueBrain/BluePyEfe); recordings from the "
    "Blue Brain Project NMC portal: cite it.",
    citation="Markram, H., Muller, E., Ramaswamy, S., et al. (2015). Reconstruction and simulation of neocortical "
    "microcircuitry. Cell, 163(2), 456-492. Data via BluePyEfe (doi:10.5281/zenodo.3728191).",
)


@dataclass(frozen=True, slots=True)
class CurrentClampSweep:
    """One current-clamp sweep: the membrane voltage and the injected current, sampled every dt_ms.

    Attributes:
        cell: "B6", "B8" or "B95".
        sweep_number: the upstream sweep number, e.g. 181.
        voltage_mV: (n_samples,) float64 membrane voltage, mV.
        current_pA: (n_samples,) float64 injected current as recorded, pA (holding current + step + noise).
        dt_ms: the sample interval, ms (0.25).
        stimulus_onset_ms: start of the current step, ms from the start of the sweep (700.0).
        stimulus_offset_ms: end of the current step, ms (2700.0).
        holding_current_pA: median of current_pA before the step, pA.
        step_amplitude_pA: median of current_pA inside the step (100 ms in from each edge) minus
            holding_current_pA, pA.
        nominal_amplitude: the step size the protocol asked for (P0AMP3 in the wave note), in the protocol's
            relative unit; within one cell step_amplitude_pA is proportional to it.
        recorded_at: the recording time in the wave note, e.g. "6/5/2000 15.59.33".
    """

    cell: str
    sweep_number: int
    voltage_mV: np.ndarray
    current_pA: np.ndarray
    dt_ms: float
    stimulus_onset_ms: float
    stimulus_offset_ms: float
    holding_current_pA: float
    step_amplitude_pA: float
    nominal_amplitude: float
    recorded_at: str

    @property
    def time_ms(self) -> np.ndarray:
        """(n_samples,) time of each sample from the start of the sweep, ms."""
        return np.arange(self.voltage_mV.shape[0]) * self.dt_ms


def _note_fields(wave: IgorWave) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in wave.note.split(";"):
        key, separator, value = item.partition(":")
        if separator and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def _step_epoch_ms(fields: dict[str, str], source: str) -> tuple[float, float, float]:
    """Returns (onset_ms, offset_ms, amplitude) of the first protocol epoch with a non-zero amplitude."""
    start_ms = 0.0
    for epoch in range(1, 7):
        try:
            duration_ms = float(fields[f"P0DUR{epoch}"])
            amplitude = float(fields[f"P0AMP{epoch}"])
        except (KeyError, ValueError) as error:
            raise DatasetError(
                f"{source}: expected protocol fields P0DUR{epoch} and P0AMP{epoch} in the wave note; "
                f"found note keys {sorted(fields)}."
            ) from error
        if amplitude != 0.0:
            return start_ms, start_ms + duration_ms, amplitude
        start_ms += duration_ms
    raise DatasetError(f"{source}: the wave note's protocol (P0AMP1..6) has no epoch with a non-zero amplitude.")


def _expect_units(wave: IgorWave, expected: str, source: str) -> None:
    if wave.data_units != expected:
        raise DatasetError(f"{source}: expected data in {expected}; the wave's units are {wave.data_units!r}.")


def _load_sweep(cell: str, sweep_number: int) -> CurrentClampSweep:
    current_name = _file_name(cell, 0, sweep_number)
    voltage_name = _file_name(cell, 3, sweep_number)
    current = read_ibw(fetch(BBP_RAT_CORTEX, current_name))
    voltage = read_ibw(fetch(BBP_RAT_CORTEX, voltage_name))
    _expect_units(current, "pA", current_name)
    _expect_units(voltage, "mV", voltage_name)
    if current.values.shape != voltage.values.shape or current.x_step != voltage.x_step:
        raise DatasetError(
            f"{cell} sweep {sweep_number}: current and voltage differ in length or sampling: "
            f"{current.values.shape} at {current.x_step} s vs {voltage.values.shape} at {voltage.x_step} s."
        )
    dt_ms = current.x_step * 1000.0  # Igor's x-scaling is in seconds here (SI: sample interval in µs in the note)
    fields = _note_fields(current)
    if "SI" in fields and abs(float(fields["SI"]) / 1000.0 - dt_ms) > 1e-9:
        raise DatasetError(
            f"{current_name}: x-scaling gives dt = {dt_ms} ms but the note says SI = {fields['SI']} µs."
        )
    onset_ms, offset_ms, nominal_amplitude = _step_epoch_ms(fields, current_name)
    current_pA = current.values.astype(np.float64)
    onset, offset = round(onset_ms / dt_ms), round(offset_ms / dt_ms)
    margin = round(100.0 / dt_ms)
    holding_current_pA = float(np.median(current_pA[:onset]))
    step_level_pA = float(np.median(current_pA[onset + margin : offset - margin]))
    return CurrentClampSweep(
        cell=cell,
        sweep_number=sweep_number,
        voltage_mV=voltage.values.astype(np.float64),
        current_pA=current_pA,
        dt_ms=dt_ms,
        stimulus_onset_ms=onset_ms,
        stimulus_offset_ms=offset_ms,
        holding_current_pA=holding_current_pA,
        step_amplitude_pA=step_level_pA - holding_current_pA,
        nominal_amplitude=nominal_amplitude,
        recorded_at=fields.get("TIME", ""),
    )


def load_bbp_current_clamp(subset: int | None = None) -> tuple[CurrentClampSweep, ...]:
    """Returns the current-clamp sweeps, B6 181-185, B8 145-149, B95 107, in that order.

    Args:
        subset: keep only the first `subset` sweeps in that order (only their files are fetched); None = all 11.
    """
    chosen = SWEEPS[: check_subset(subset, "sweeps", len(SWEEPS))]
    return tuple(_load_sweep(cell, sweep_number) for cell, sweep_number in chosen)
