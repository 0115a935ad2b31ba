"""A build's own measurements as calibration data: `edgeexport calibrate --from dist/<target>`.

Every sealed variant of the build (index.json) contributes its end-to-end mean latency per
precision, in one runtime, as measured (on the board when the build had one); the fit sees
exactly the numbers the build's report shows, with no CSV step between.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgeexport.errors import UserError
from edgeexport.fileio import safe_relative
from edgeexport.latency_model import Measurement

INDEX = "index.json"


def build_measurements(root: Path, runtime: str) -> tuple[list[Measurement], str]:
    """(measurements, what they are: runtime, version, threads, where) from a build directory."""
    try:
        index = json.loads((root / INDEX).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"--from {root}: no readable {INDEX} (is it a build's output "
                        "directory, dist/<target>?)") from None
    measurements, where = [], set()
    for row, entry in enumerate(index.get("variants", []), start=1):
        try:
            directory = safe_relative(root, entry["id"])
        except ValueError as e:
            raise UserError(f"--from {root}: {e}") from None
        profile = json.loads((directory / "profile.json").read_text())
        variant = entry["variant"]
        for precision in ("int8", "fp32"):
            report = profile.get(f"{runtime}_{precision}")
            if report is None:
                continue
            e2e = report["end_to_end"]
            measurements.append(Measurement(variant["family"], float(variant["alpha"]),
                                            int(variant["resolution"]), precision,
                                            float(e2e["mean_ms"]), row))
            place = (f"on board {report['where']['device']}" if report["where"].get("device")
                     else "on the build host")
            where.add(f"{e2e['runtime']} {e2e['runtime_version']}, {e2e['threads']} thread(s), "
                      f"mean latency, {place} ({report['where']['cpu']})")
    if not measurements:
        raise UserError(f"--from {root}: no {runtime} measurements in the build")
    return measurements, "; ".join(sorted(where))
