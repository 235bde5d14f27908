"""A minimal reader for Igor Pro binary waves (.ibw), versions 2 and 5, one-dimensional real waves.

The layout follows WaveMetrics' Technical Note 003 ("Igor Binary Format"). A file starts with a BinHeader
(16 bytes in version 2, 64 bytes in version 5) and a WaveHeader (110 bytes in version 2, 320 in version 5,
up to the data), followed by the wave data, then optional sections, among them the wave note (free text).
The byte order is that of the machine that wrote the file: the first 2-byte field is the version, small in
the right byte order. Only what the current-clamp loader needs is read: the values, their units, the
x-scaling (the sample interval, in the x units, usually seconds) and the note.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.task.datasets import DatasetError

__all__ = ["IgorWave", "read_ibw"]

# Igor number-type codes (WaveHeader.type) of real waves; 0x01 marks complex, 0x40 unsigned integers.
_NUMBER_TYPES = {
    0x02: "f4",
    0x04: "f8",
    0x08: "i1",
    0x10: "i2",
    0x20: "i4",
    0x48: "u1",
    0x50: "u2",
    0x60: "u4",
}


@dataclass(frozen=True, slots=True)
class IgorWave:
    """A one-dimensional Igor wave.

    Attributes:
        name: the wave's name inside Igor, e.g. "tempB6_IDRest_Ch3_181".
        values: (n_points,) the data, in `data_units`, converted to native byte order.
        data_units: the unit string of the values, e.g. "mV" or "pA" (empty when not set).
        x_step: the x-scaling step, sample interval in `x_units`.
        x_start: the x value of the first point.
        x_units: the unit string of x (often empty; Igor's default x unit for time series is seconds).
        note: the wave note, decoded as Latin-1 (empty when absent).
        version: the file's format version, 2 or 5.
    """

    name: str
    values: np.ndarray
    data_units: str
    x_step: float
    x_start: float
    x_units: str
    note: str
    version: int


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


def read_ibw(path: Path) -> IgorWave:
    """Returns the wave stored in the Igor binary wave file at `path`.

    Raises:
        DatasetError: the file is not a version 2 or 5 binary wave, holds a complex or text wave, has more
            than one dimension, or is shorter than its headers say.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 2:
        raise DatasetError(f"{path}: expected an Igor binary wave (.ibw); the file has {len(raw)} bytes.")
    for order in (">", "<"):
        (version,) = struct.unpack_from(order + "h", raw, 0)
        if version in (2, 5):
            break
    else:
        raise DatasetError(
            f"{path}: expected an Igor binary wave of version 2 or 5; the first two bytes are {raw[:2].hex()}. "
            "Versions 1 and 3 are not supported; re-save the wave in Igor as version 5."
        )
    return (_read_version2 if version == 2 else _read_version5)(path, raw, order)


def _values(path: Path, raw: bytes, order: str, number_type: int, n_points: int, offset: int) -> np.ndarray:
    if number_type not in _NUMBER_TYPES:
        kind = "a text wave" if number_type == 0 else f"number type 0x{number_type:02x}"
        raise DatasetError(f"{path}: expected a real numeric wave; found {kind} (complex and text are not supported).")
    dtype = np.dtype(order + _NUMBER_TYPES[number_type])
    end = offset + n_points * dtype.itemsize
    if end > len(raw):
        raise DatasetError(
            f"{path}: the header says {n_points} points ending at byte {end}, but the file has {len(raw)}."
        )
    return np.frombuffer(raw, dtype=dtype, count=n_points, offset=offset).astype(dtype.newbyteorder("="))


def _read_version2(path: Path, raw: bytes, order: str) -> IgorWave:
    # BinHeader2: version, wfmSize, noteSize, pictSize, checksum (16 bytes).
    _, wave_size, note_size, _, _ = struct.unpack_from(order + "hllLh", raw, 0)
    header = 16
    (number_type,) = struct.unpack_from(order + "h", raw, header)
    name = _text(raw[header + 6 : header + 26])
    data_units = _text(raw[header + 34 : header + 38])
    x_units = _text(raw[header + 38 : header + 42])
    (n_points,) = struct.unpack_from(order + "l", raw, header + 42)
    x_step, x_start = struct.unpack_from(order + "dd", raw, header + 48)
    values = _values(path, raw, order, number_type, n_points, offset=header + 110)
    # The wave note follows the wave record (WaveHeader2 + data + 16 bytes of padding, wfmSize bytes in all).
    note_start = header + wave_size
    note = _text(raw[note_start : note_start + note_size]) if note_size > 0 else ""
    return IgorWave(name, values, data_units, float(x_step), float(x_start), x_units, note, version=2)


def _read_version5(path: Path, raw: bytes, order: str) -> IgorWave:
    # BinHeader5: version, checksum, wfmSize, formulaSize, noteSize, dataEUnitsSize, dimEUnitsSize[4],
    # dimLabelsSize[4], sIndicesSize, optionsSize1, optionsSize2 (64 bytes).
    fields = struct.unpack_from(order + "hhlll" + "l" * 12, raw, 0)
    wave_size, formula_size, note_size = fields[2], fields[3], fields[4]
    header = 64
    (n_points,) = struct.unpack_from(order + "l", raw, header + 12)
    (number_type,) = struct.unpack_from(order + "h", raw, header + 16)
    name = _text(raw[header + 28 : header + 60])
    dimension_sizes = struct.unpack_from(order + "4l", raw, header + 68)
    if any(size > 0 for size in dimension_sizes[1:]):
        raise DatasetError(f"{path}: expected a one-dimensional wave; found dimension sizes {dimension_sizes}.")
    x_step = struct.unpack_from(order + "4d", raw, header + 84)[0]
    x_start = struct.unpack_from(order + "4d", raw, header + 116)[0]
    data_units = _text(raw[header + 148 : header + 152])
    extended_units_size = fields[5]
    if extended_units_size > 0:  # units longer than 3 characters follow the note
        units_start = header + wave_size + formula_size + note_size
        data_units = _text(raw[units_start : units_start + extended_units_size])
    x_units = _text(raw[header + 152 : header + 156])
    values = _values(path, raw, order, number_type, n_points, offset=header + 320)
    # After the wave record (wfmSize bytes: WaveHeader5 + data) come the formula, then the note.
    note_start = header + wave_size + formula_size
    note = _text(raw[note_start : note_start + note_size]) if note_size > 0 else ""
    return IgorWave(name, values, data_units, float(x_step), float(x_start), x_units, note, version=5)
