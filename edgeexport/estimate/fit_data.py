"""A build's own measurements as calibration data: `edgeexport fit-latency --from dist/<target>`.

Every sealed variant of the build (index.json) contributes its end-to-end mean latency per
precision, in one runtime, as measured (on the board when the build had one), at the clock
and thread count the measuring process recorded; the fit (latency_model.fit_measurements)
sees exactly the numbers the build's report shows, with no CSV step between.
"""
from __future__ import annotations

from pathlib import Path

from edgeexport.contracts.artifacts import (
    ArtifactError,
    Index,
    Measured,
    Profile,
    measurement_key,
    read_record,
)
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import safe_relative
from edgeexport.estimate.latency_model import Measurement
from edgeexport.targets import Target

MODEL_NAMES = {"litert": "litert-xnnpack", "onnxruntime": "onnxruntime"}


def _clock_mhz(m: Measured, target: Target, given: float | None) -> float | None:
    """--clock-mhz, else the clock the board reported when the runs started, else its
    maximum, else the target file's nominal clock."""
    if given is not None:
        return given
    if m.board is not None and (m.board.clock_mhz or m.board.max_clock_mhz):
        return m.board.clock_mhz or m.board.max_clock_mhz
    freq = target.cpu.get("freq_ghz")
    return freq * 1e3 if freq else None


def measurements_of_build(root: Path, runtime: str, target: Target, name: str | None = None,
                       clock_mhz: float | None = None) -> tuple[list[Measurement], str]:
    """(measurements, what they are in words) from a build directory."""
    try:
        index = read_record(root, Index)
    except ArtifactError as e:
        raise UserError(f"--from {root}: not a build's output directory (dist/<target>): "
                        f"{e}") from None
    measurements, where = [], set()
    for entry in index.variants:
        try:
            profile = read_record(safe_relative(root, entry.id), Profile)
        except ValueError as e:
            raise UserError(f"--from {root}: {e}") from None
        for precision in ("int8", "fp32"):
            key = measurement_key(runtime, precision)
            m = profile.measurements.get(key)
            if m is None:
                continue
            clock = _clock_mhz(m, target, clock_mhz)
            if clock is None:
                raise UserError(f"--from {root}: no clock recorded for {entry.id} and none in "
                                f"target {target.name}: give --clock-mhz")
            v, e2e = entry.variant, m.end_to_end
            measurements.append(Measurement(
                v.family, v.alpha, v.resolution, precision, e2e.mean_ms,
                name or MODEL_NAMES[runtime], clock, e2e.threads,
                label=f"{root / entry.id / Profile.FILE} {key}").check())
            place = (f"on board {m.where['device']}" if m.where.get("device")
                     else "on the build host")
            where.add(f"{e2e.runtime_version}, {e2e.threads} thread(s), mean latency, {place} "
                      f"({m.where['cpu']})")
    if not measurements:
        raise UserError(f"--from {root}: no {runtime} measurements in the build")
    return measurements, "; ".join(sorted(where))
