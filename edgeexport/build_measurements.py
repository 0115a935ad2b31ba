"""A build's own measurements as calibration data: `edgeexport calibrate --from dist/<target>`.

Every sealed variant of the build (index.json) contributes its end-to-end mean latency per
precision, in one runtime, as measured (on the board when the build had one); the fit sees
exactly the numbers the build's report shows, with no CSV step between.
"""
from __future__ import annotations

from pathlib import Path

from edgeexport.artifacts import ArtifactError, Index, Profile, measurement_key, read_record
from edgeexport.errors import UserError
from edgeexport.fileio import safe_relative
from edgeexport.latency_model import Measurement


def build_measurements(root: Path, runtime: str) -> tuple[list[Measurement], str]:
    """(measurements, what they are: runtime, version, threads, where) from a build directory."""
    try:
        index = read_record(root, Index)
    except ArtifactError as e:
        raise UserError(f"--from {root}: not a build's output directory (dist/<target>): "
                        f"{e}") from None
    measurements, where = [], set()
    for row, entry in enumerate(index.variants, start=1):
        try:
            profile = read_record(safe_relative(root, entry.id), Profile)
        except ValueError as e:
            raise UserError(f"--from {root}: {e}") from None
        for precision in ("int8", "fp32"):
            m = profile.measurements.get(measurement_key(runtime, precision))
            if m is None:
                continue
            v = entry.variant
            measurements.append(Measurement(v.family, v.alpha, v.resolution, precision,
                                            m.end_to_end.mean_ms, row))
            e2e = m.end_to_end
            place = (f"on board {m.where['device']}" if m.where.get("device")
                     else "on the build host")
            where.add(f"{e2e.runtime} {e2e.runtime_version}, {e2e.threads} thread(s), mean "
                      f"latency, {place} ({m.where['cpu']})")
    if not measurements:
        raise UserError(f"--from {root}: no {runtime} measurements in the build")
    return measurements, "; ".join(sorted(where))
