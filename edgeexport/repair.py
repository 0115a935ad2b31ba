"""Automatic int8 repair: when an int8 model misses the cosine tolerance, keep its most
sensitive layers at 16-bit activations until it holds, within a stated budget.

Sensitivity: the layer's local int8 SQNR from the error map (the noise its own int8 range adds,
quant_error). Order: most sensitive first, and within a 3 dB band of sensitivity the cheapest
first. Cheapest by the analysis' int8 activation bytes of the layer (input + output), not by a
per-layer timing: a kept tensor doubles in size and its producer and consumers leave the fused
int8 kernels, which scales with those bytes; a timing would reorder layers of similar cost
from run to run and make the exported model differ (same inputs → same bytes). The measured
cost of the repair as a whole is recorded (p50 before/after). Attempts keep a growing prefix
of that order, REPAIR_STEPS layers, so a repair
costs at most len(REPAIR_STEPS) re-quantizations; the smallest prefix that holds is shipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeexport.errors import ValidationError
from edgeexport.precision_plan import PrecisionPlan
from edgeexport.quant_error import ErrorMap
from edgeexport.validate import Comparison

REPAIR_STEPS = (1, 2, 4, 8, 16)  # cumulative layers kept per attempt
SENSITIVITY_BAND_DB = 3.0
TIMING_RUNS, TIMING_WARMUP = 30, 5


@dataclass
class RepairRecord:
    """What the repair of one format did, for card.json → int8_repair."""
    format: str
    kept: list[str]
    precision: str
    cosine_before: float
    cosine_after: float
    attempts: list[dict]
    latency_before_ms: float | None = None
    latency_after_ms: float | None = None
    latency_note: str = ""
    budget: str = (f"at most {REPAIR_STEPS[-1]} layers kept, in {len(REPAIR_STEPS)} attempts "
                   f"of {', '.join(map(str, REPAIR_STEPS))} layers")



@dataclass
class RepairSummary:
    """card.json → int8_repair (a field of artifacts.Card): the default plan and each
    format's repair (``formats`` empty: plain int8 held the tolerance, or was not enforced)."""
    enabled: bool
    kept_layers: int  # the most any format kept
    hard_sigmoid_range_0_1: list[str]
    formats: list[RepairRecord] = field(default_factory=list)

    @classmethod
    def of(cls, enabled: bool, unit_range, records: list[RepairRecord]) -> "RepairSummary":
        return cls(enabled, max((len(r.kept) for r in records), default=0), list(unit_range),
                   list(records))


def repair_order(error_map: ErrorMap, analysis_rows: list[dict]) -> list[str]:
    """Layers to keep, most sensitive first; within a sensitivity band, cheapest first."""
    cost = {r["name"]: r["activation_bytes_int8"] for r in analysis_rows}
    scored = [x for x in error_map.layers if x.onnx_local_db is not None]
    return [x.layer for x in sorted(scored, key=lambda x: (
        math.floor(x.onnx_local_db / SENSITIVITY_BAND_DB), cost.get(x.layer, 0), x.layer))]


def quantize_validated(fmt: str, plan: PrecisionPlan,
                       quantize: Callable[[PrecisionPlan], Path],
                       evaluate: Callable[[Path], Comparison], min_cosine: float,
                       enabled: bool, order: Callable[[], list[str]],
                       timer: Callable[[Path], float],
                       ) -> tuple[Path, Comparison, RepairRecord | None]:
    """Quantize with ``plan``; when that misses ``min_cosine`` and repair is ``enabled``,
    repair it (raising ValidationError if the budget runs out). Without repair the caller's
    own check refuses the drifting model."""
    path = quantize(plan)
    first = evaluate(path)
    if first.cosine_mean >= min_cosine or not enabled:
        return path, first, None
    return repair(fmt, plan, order(), first, timer(path), quantize, evaluate, min_cosine,
                  timer)


def repair(fmt: str, plan: PrecisionPlan, order: list[str], first: Comparison,
           before_ms: float, quantize: Callable[[PrecisionPlan], Path],
           evaluate: Callable[[Path], Comparison], min_cosine: float,
           timer: Callable[[Path], float]) -> tuple[Path, Comparison, RepairRecord]:
    """Re-quantize with growing prefixes of ``order`` kept until ``evaluate`` holds."""
    attempts = []
    for n in REPAIR_STEPS:
        if n > len(order):
            break
        path = quantize(plan.with_keep(order[:n]))
        result = evaluate(path)
        attempts.append({"kept": n, "cosine_mean": result.cosine_mean})
        if result.cosine_mean >= min_cosine:
            record = RepairRecord(
                fmt, order[:n], "int8 weights, 16-bit activations for the kept layers' outputs",
                first.cosine_mean, result.cosine_mean, attempts)
            record.latency_before_ms, record.latency_after_ms = before_ms, timer(path)
            record.latency_note = (f"measured on the build host: p50 of {TIMING_RUNS} runs "
                                   f"after {TIMING_WARMUP} warm-up, 1 thread, plain int8 "
                                   "before, repaired after")
            return path, result, record
    tried = ", ".join(f"{a['kept']} layers → {a['cosine_mean']:.4f}" for a in attempts)
    raise ValidationError(f"{fmt} int8 drifts: mean cosine {first.cosine_mean:.4f} < "
                          f"{min_cosine}, and keeping up to {REPAIR_STEPS[-1]} sensitive layers "
                          f"at 16-bit activations did not repair it ({tried})")


def p50_timer(runtime: str) -> Callable[[Path], float]:
    import numpy as np

    from edgeexport.profile import time_litert, time_onnx
    time_fn = time_onnx if runtime == "onnxruntime" else time_litert
    return lambda path: float(np.percentile(time_fn(path, 1, TIMING_RUNS, TIMING_WARMUP), 50))
