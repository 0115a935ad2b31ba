"""An export directory's int8 error map and repair record (card.json), with the per-layer
latency of its profile.json when the directory was profiled (a build variant). report.html
shows the same map per variant (report_page: the layer view)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeexport.contracts.artifacts import PROFILE, Card, Profile, RepairCosts, read_record
from edgeexport.contracts.int8 import RepairCost, RepairSummary
from edgeexport.core.errors import UserError
from edgeexport.int8.error_map import profile_latency

NO_LATENCY = "not measured: the directory has no profile.json"


def load_quant_report(directory: Path) -> dict:
    card = read_record(directory, Card)
    if card.int8_error_map is None or card.int8_repair is None:
        raise UserError(f"{directory}/card.json: no int8 error map (exported by an older "
                        "edgeexport; export again)")
    emap = card.int8_error_map
    if (directory / PROFILE).is_file():
        profiled = profile_latency(read_record(directory, Profile))
        if profiled is not None:
            emap.with_latency(*profiled)
    return {"directory": str(directory), "variant_id": card.variant_id,
            "int8_error_map": dataclasses.asdict(emap),
            "int8_repair": dataclasses.asdict(card.int8_repair),
            "int8_repair_cost": [dataclasses.asdict(c) for c in
                                 RepairCosts.in_directory(directory).values()]}


def repair_lines(repair: RepairSummary, costs: dict[str, RepairCost] | None = None) -> list[str]:
    """How the shipped int8 files were made, one line per fact: the precision shipped, then
    each format's repair (range method, layers kept at 16 bits, cosine, measured cost)."""
    first = f"int8 precision: {repair.precision}" + (
        " (16-bit activation islands: an integer-only NPU cannot run this file)"
        if repair.precision != "full int8" else "")
    steps = [f"{r.format}: {r.ranges} ranges, weights {rounding_words(r.weight_rounding)}, "
             f"{len(r.kept)} layer(s) kept at 16-bit "
             f"activations ({', '.join(r.kept)})"
             + (f", {len(r.float_layers)} left in float" if r.float_layers else "")
             + f", cosine {r.cosine_before:.4f} → "
             f"{r.cosine_after:.4f}" + cost_text((costs or {}).get(r.format))
             for r in repair.formats]
    if not steps:
        steps = ["repair: none needed (every layer plain int8)" if repair.enabled else
                 "repair: off (--no-repair, or no --weights: int8 drift not enforced)"]
    return [first, *steps]


def rounding_words(rounding: str) -> str:
    """How a repair record's weights were rounded, in the reports' words."""
    return "rounded by GPTQ" if rounding == "GPTQ" else "rounded to nearest"


def cost_text(cost: RepairCost | None) -> str:
    return "" if cost is None else (f", p50 {cost.before_ms:.3f} → {cost.after_ms:.3f} ms "
                                    f"({cost.note})")

