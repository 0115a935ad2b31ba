"""int8 that holds: the range setting is chosen by measurement, and when no range setting
holds the tolerance, a ladder keeps the most sensitive layers at 16-bit activations until it
does.

1. Ranges. Each candidate way of setting the activation ranges (``RANGE_METHODS``: the true
   min/max, then ranges that clip the rare outliers a heavy-tailed tensor has, searched per
   tensor or averaged over images) is quantized
   and measured; the first that holds is shipped, full int8. Only when the user
   names none (``--calib-method``): a named method is the only one tried.
2. Ladder. Sensitivity: the layer's local int8 SQNR from the error map (the noise its own int8
   range adds, edgeexport.int8.error_map), most sensitive first, and within a 3 dB band of sensitivity the
   cheapest first (the analysis' int8 activation bytes, not a timing: a timing would reorder
   layers of similar cost from run to run and make the exported model differ). Rung n keeps
   the n most sensitive layers and the n last layers of the network at 16-bit activations
   (``rung`` says why), for n = 1, 2, 4, … and last every layer: each rung keeps what the one
   before kept and more, every attempt is recorded with the best cosine so far, and the first
   rung that holds is shipped (the fewest layers kept). The error of a heavy-tailed network is
   spread over its whole tail, so a ladder capped at a few layers could not converge; the last
   rung (every activation 16-bit, weights int8) held for every network measured
   (bench/int8_robustness.py).
3. Refusal. ``strict`` (full int8 or nothing) and ``off`` (``--no-repair``) refuse a model that
   misses the tolerance in one line naming its worst layers.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Callable

from edgeexport.contracts.int8 import (
    FULL_INT8,
    MIXED,
    Attempt,
    ErrorMap,
    RepairCost,
    RepairRecord,
)
from edgeexport.core.errors import ValidationError
from edgeexport.core.validate import INT8_MIN_TOP1_AGREEMENT, Comparison, int8_holds
from edgeexport.int8.precision_plan import PrecisionPlan

# Tried in this order when none is named: the true min/max; per tensor the range of least
# squared error relative to each image's values (edgeexport.int8.range_search); the mean of
# the per-image minima and maxima; then (onnxruntime) the 99.999th percentile of |x|. No one
# method is best for every network (bench/int8_robustness.py, trained V3-Large, ONNX full
# int8: seed 0 MinMax 0.83, MovingAverage 0.97, MSE 0.994; seed 1 0.52, 0.955, 0.83).
RANGE_METHODS = {"onnx": ("MinMax", "MSE", "MovingAverage", "Percentile"),
                 "tflite": ("MinMax", "MSE", "MovingAverage")}
MODES = ("repair", "strict", "off")  # --int8 repair|strict, --no-repair
# After every activation at 16 bits, what a format can still widen: TFLite its int8 I/O
# (PrecisionPlan.wide_io); onnxruntime's QDQ files have float I/O already.
# The app file's input is pixels, exact at 8 bits (wide I/O requantized its int16 input to an
# int8 twin of step 2: every other pixel value lost, 0.965 → 0.936 measured); it widens its
# output instead, to float (PrecisionPlan.float_output).
WIDER = {"onnx": (), "tflite": ({"wide_io": True},), "app": ({"float_output": True},)}
SENSITIVITY_BAND_DB = 3.0
WORST_NAMED = 3  # layers a refusal names
TIMING_RUNS, TIMING_WARMUP = 30, 5


def ladder(layers: int) -> list[int]:
    """Layers kept at each rung: 1, 2, 4, … and last every layer."""
    steps, n = [], 1
    while n < layers:
        steps.append(n)
        n *= 2
    return steps + [layers] if layers else []


def repair_order(error_map: ErrorMap, analysis_rows: list[dict]) -> list[str]:
    """Layers to keep, most sensitive first; within a sensitivity band, cheapest first."""
    cost = {r["name"]: r["activation_bytes_int8"] for r in analysis_rows}
    scored = [x for x in error_map.layers if x.onnx_local_db is not None]
    return [x.layer for x in sorted(scored, key=lambda x: (
        math.floor(x.onnx_local_db / SENSITIVITY_BAND_DB), cost.get(x.layer, 0), x.layer))]


def rung(order: list[str], tail: list[str], n: int) -> list[str]:
    """The layers rung ``n`` keeps: the ``n`` most sensitive, and the ``n`` last (``tail``:
    the same layers from the output backwards). Why the tail: an isolated sensitive layer
    (one outlier channel) is repaired by keeping it alone, but in a heavy-tailed network
    the noise of every upstream int8 layer reaches the kept one, and its 8-bit range had
    been rounding part of that noise away. Measured on a trained V3-Large (Percentile
    ranges, full int8 cosine 0.934): keeping its most sensitive layer, features.15.add, at
    16 bits gave 0.897, the 28 most sensitive 0.926, the 28 last 0.981, the 55 most
    sensitive 0.987. A kept island that runs to the output has no int8 layer after it."""
    chosen = order[:n] + tail[:n]
    return list(dict.fromkeys(chosen))


def worst_layers(error_map: ErrorMap, count: int = WORST_NAMED) -> str:
    """"features.13.block.1.0 (12.1 dB), …": the lowest local SQNR first."""
    local = {x.layer: x.onnx_local_db for x in error_map.layers}
    return ", ".join(f"{layer} ({local[layer]:.1f} dB)" for layer in error_map.worst[:count])


class Ladder:
    """Attempts of one format, each recorded with the best cosine so far."""

    def __init__(self, fmt: str, quantize: Callable[[PrecisionPlan], Path],
                 evaluate: Callable[[Path], Comparison], min_cosine: float) -> None:
        self.fmt, self.quantize, self.evaluate = fmt, quantize, evaluate
        self.min_cosine = min_cosine
        self.attempts: list[Attempt] = []

    def attempt(self, plan: PrecisionPlan) -> tuple[Path, Comparison]:
        path = self.quantize(plan)
        result = self.evaluate(path)
        best = max([a.cosine_mean for a in self.attempts] + [result.cosine_mean])
        self.attempts.append(Attempt(plan.ranges, len(plan.keep), result.cosine_mean,
                                     result.top1_agreement, best, len(plan.float_layers),
                                     plan.weight_rounding))
        return path, result

    def holds(self, result: Comparison) -> bool:
        return int8_holds(result, self.min_cosine)

    def tried(self) -> str:
        return ", ".join(f"{a.ranges}" + ("+GPTQ" if a.weight_rounding == "GPTQ" else "")
                         + f" {a.kept} kept" + (f", {a.in_float} float" if a.in_float else "")
                         + f" → {a.cosine_mean:.4f}, {a.top1_agreement:.3f}"
                         for a in self.attempts)


def quantize_validated(fmt: str, plan: PrecisionPlan,
                       quantize: Callable[[PrecisionPlan], Path],
                       evaluate: Callable[[Path], Comparison], min_cosine: float,
                       mode: str, methods: tuple[str, ...],
                       order: Callable[[], tuple[list[str], ErrorMap]],
                       timer: Callable[[Path], float], topological: list[str],
                       start: int = 0, roundings: tuple[str, ...] = ("nearest",)
                       ) -> tuple[Path, Comparison, RepairRecord | None, RepairCost | None]:
    """Quantize with each range method in turn, each with each weight rounding of
    ``roundings``, until one holds ``min_cosine``; when none does,
    climb the ladder (``mode`` "repair"), or refuse naming the worst layers ("strict", "off").
    ``topological``: every layer from input to output. ``start``: begin the ladder at the
    rung of this many layers (the other format's: both formats drift alike). Returns the
    shipped file, its comparison, when more than the first method was tried the record of
    what was done, and for a mixed file what it costs (measured)."""
    steps = Ladder(fmt, quantize, evaluate, min_cosine)
    best = None
    for method in methods:
        for rounding in roundings:
            tried = plan.with_ranges(method).with_rounding(rounding)
            path, result = steps.attempt(tried)
            if steps.holds(result):
                if len(steps.attempts) == 1:
                    return path, result, None, None
                return path, result, _record(fmt, tried, steps, result), None
            if best is None or result.cosine_mean > best[1].cosine_mean:
                best = (tried, result)
    base, first = best
    if mode != "repair":
        layers, error_map = order()
        raise ValidationError(
            f"{fmt} int8 drifts: mean cosine {first.cosine_mean:.4f}, top-1 agreement "
            f"{first.top1_agreement:.3f} (tolerances {min_cosine}, {INT8_MIN_TOP1_AGREEMENT}) "
            f"({steps.tried()}); worst layers (local SQNR): {worst_layers(error_map)}; "
            + ("--int8 strict ships full int8 or nothing" if mode == "strict" else
               "--no-repair refuses it (without it, those layers would be kept at 16 bits)"))
    # The last full-int8 file, timed to state what the repair costs (ranges barely move it).
    before_ms = timer(path)
    # The int8 layers keep the best range method and weight rounding, the kept ones take the
    # true min/max (PrecisionPlan.true_ranges): a range that clips clips at 16 bits too. On a
    # trained V3-Large with MovingAverage ranges, measured: full int8 0.9728, every layer at
    # 16 bits 0.9725; with MinMax ranges 0.829 and 0.995. With MinMax for the int8 layers
    # too, a seed-1 V3-Large's rungs of 39 and 77 layers gave 0.83, under its MovingAverage
    # full int8 (0.953).
    layers, _ = order()
    tail = [layer for layer in reversed(topological) if layer in set(layers)]
    for n, kept in _rungs(fmt, base, layers, tail, start, topological):
        path, result = steps.attempt(kept)
        if steps.holds(result):
            record = _record(fmt, kept, steps, result)
            record.cosine_before, record.rung = first.cosine_mean, n
            record.every_layer, record.wide_io = kept.every_layer, kept.wide_io
            record.float_layers = list(kept.float_layers)
            record.float_output = kept.float_output
            cost = RepairCost(fmt, before_ms, timer(path),
                              f"measured on the build host: p50 of {TIMING_RUNS} runs after "
                              f"{TIMING_WARMUP} warm-up, 1 thread, full int8 "
                              f"({methods[-1]} ranges) before, mixed after")
            return path, result, record, cost
    raise ValidationError(f"{fmt} int8 drifts: mean cosine {first.cosine_mean:.4f} "
                          f"(tolerance {min_cosine}) even with every layer at 16-bit activations "
                          f"and then in float ({steps.tried()})")


def _rungs(fmt: str, base: PrecisionPlan, layers: list[str], tail: list[str], start: int,
           everything: list[str]):
    """(n, plan) the ladder tries, each plan keeping more than the one before: rung n for n = 1,
    2, 4, … (from ``start``), every activation (ops of no analysed layer too), then what the
    format can widen beyond that (``WIDER``), then float islands: the n most sensitive and
    n last layers left out of quantization, n = 1, 2, 4, … up to every layer, where the file
    computes what the fp32 one does."""
    for n in ladder(len(layers)):
        if n < start and n != len(layers):
            continue
        kept = base.with_keep(rung(layers, tail, n))
        if n == len(layers):
            kept = replace(kept, every_layer=True)
            yield n, kept
            for widen in WIDER[fmt]:
                kept = replace(kept, **widen)
                yield n, kept
            for m in ladder(len(layers))[:-1]:
                yield n, kept.with_float(rung(layers, tail, m))
            yield n, kept.with_float(everything)  # every module
        else:
            yield n, kept


def _record(fmt: str, plan: PrecisionPlan, steps: Ladder, result: Comparison) -> RepairRecord:
    return RepairRecord(fmt, plan.ranges, list(plan.keep), MIXED if plan.keep else FULL_INT8,
                        steps.attempts[0].cosine_mean, result.cosine_mean, list(steps.attempts),
                        weight_rounding=plan.weight_rounding)
