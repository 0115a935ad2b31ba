"""The export's int8 step for both formats: range setting chosen by measurement, validation,
repair when the tolerance is missed (repair), and the per-layer error map of the shipped files.

One repair order serves both formats: it comes from the int8 ONNX error map of the default
plan (local SQNR per layer), computed once, when a repair first needs it. The card's map has
no latency column (a measurement would make card.json differ run to run); quant-report and
report.html join the per-layer latency of profile.json.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgeexport.contracts.int8 import ErrorMap, RepairCost, RepairRecord, RepairSummary
from edgeexport.contracts.variant import Analysis
from edgeexport.core.validate import Comparison, int8_holds
from edgeexport.int8.error_map import measure_error_map
from edgeexport.int8.precision_plan import PrecisionPlan
from edgeexport.int8.repair import (
    RANGE_METHODS,
    TIMING_RUNS,
    TIMING_WARMUP,
    quantize_validated,
    repair_order,
)
from edgeexport.int8.weight_rounding import ROUNDINGS


class Int8Stage:
    def __init__(self, model, analysis: Analysis, staging: Path, calibration: np.ndarray,
                 min_cosine: float, mode: str, enforced: bool, ranges: str | None) -> None:
        """``mode``: repair, strict or off (repair); ``enforced``: the tolerance applies
        (trained weights); ``ranges``: the user's range method, None to choose by
        measurement. Not enforced, only the first method is tried and nothing repaired."""
        self.plan = PrecisionPlan.defaults(model)
        self.analysis = analysis.to_json()
        self.staging = staging
        self.calibration = calibration
        self.min_cosine = min_cosine
        self.mode = mode if enforced else "off"
        self.enforced = enforced
        self.ranges = ranges
        self.records: list[RepairRecord] = []
        self.costs: list[RepairCost] = []  # of the mixed files: measured, not in the card
        self._order: tuple[list[str], ErrorMap] | None = None

    def onnx(self, quantize: Callable[[PrecisionPlan], Path],
             evaluate: Callable[[Path], Comparison]
             ) -> tuple[Path, Comparison, PrecisionPlan]:
        return self._validated("onnx", "onnxruntime", quantize, evaluate)

    def tflite(self, quantize: Callable[[PrecisionPlan], Path],
               evaluate: Callable[[Path], Comparison]
               ) -> tuple[Path, Comparison, PrecisionPlan]:
        return self._validated("tflite", "litert", quantize, evaluate)

    def app(self, quantize: Callable[[PrecisionPlan], Path],
            evaluate: Callable[[Path], Comparison], plan: PrecisionPlan
            ) -> tuple[Path, Comparison, PrecisionPlan]:
        """The app file (pixels in), first with ``plan``, the int8 TFLite file's (but its
        I/O width). It is
        calibrated through its normalisation ops, so it can miss the tolerance where that
        file held (measured: a seed-2 trained network, 0.9791): then the ladder climbs on
        from the rung after the TFLite file's."""
        # Its input is pixels, its widening a float output (repair.WIDER), which its own
        # ladder reaches before any float island: a TFLite plan with float islands (which
        # leave the last layer, so the output, in float) comes with it.
        plan = replace(plan, wide_io=False,
                       float_output=plan.float_output or bool(plan.float_layers))
        path = quantize(plan)
        result = evaluate(path)
        if not self.enforced or int8_holds(result, self.min_cosine):
            return path, result, plan
        rung = max((r.rung for r in self.records if r.format == "tflite"), default=0)
        path, result, record, cost = quantize_validated(
            "app", self.plan, quantize, evaluate, self.min_cosine, self.mode, (plan.ranges,),
            self._repair_order, p50_timer("litert"),
            [row["name"] for row in self.analysis["layers"]], 2 * rung, ROUNDINGS)
        return path, result, self._shipped(record, cost, (plan.ranges,))

    def _validated(self, fmt, runtime, quantize, evaluate):
        """(file, its comparison, the precision plan it was quantized with). Not enforced:
        the first method's file, whatever its drift (the caller reports it)."""
        methods = (self.ranges,) if self.ranges else RANGE_METHODS[fmt]
        if not self.enforced:
            plan = self.plan.with_ranges(methods[0])
            path = quantize(plan)
            return path, evaluate(path), plan
        # The second format starts its ladder at the rung where the first one held.
        start = max((r.rung for r in self.records), default=0)
        path, result, record, cost = quantize_validated(
            fmt, self.plan, quantize, evaluate, self.min_cosine, self.mode, methods,
            self._repair_order, p50_timer(runtime),
            [row["name"] for row in self.analysis["layers"]], start, ROUNDINGS)
        return path, result, self._shipped(record, cost, methods)

    def _shipped(self, record: RepairRecord | None, cost: RepairCost | None,
                 methods: tuple[str, ...]) -> PrecisionPlan:
        """The plan of the shipped file, its record and cost kept for the card."""
        if record is None:
            return self.plan.with_ranges(methods[0])
        self.records.append(record)
        if cost is not None:
            self.costs.append(cost)
        return replace(self.plan.with_ranges(record.ranges).with_keep(record.kept)
                       .with_rounding(record.weight_rounding),
                       every_layer=record.every_layer, wide_io=record.wide_io,
                       float_layers=tuple(record.float_layers),
                       float_output=record.float_output)

    def _repair_order(self) -> tuple[list[str], ErrorMap]:
        """(repair order, error map) from the int8 ONNX the ladder starts from. The ONNX step
        runs first, and this is first called when its range methods are spent, so
        ``model.int8.onnx`` in staging is still full int8."""
        if self._order is None:
            plain = self.staging / "model.int8.onnx"
            emap = measure_error_map(self.analysis["layers"],
                                   (self.staging / "model.fp32.onnx", plain), None,
                                   self.calibration)
            self._order = repair_order(emap, self.analysis["layers"]), emap
        return self._order

    def error_map(self, fp32_onnx: Path, int8_onnx: Path, with_tflite: bool) -> ErrorMap:
        """The map of the files being shipped."""
        tflite = ((self.staging / "model.fp32.tflite", self.staging / "model.int8.tflite")
                  if with_tflite else None)
        return measure_error_map(self.analysis["layers"], (fp32_onnx, int8_onnx), tflite,
                               self.calibration)

    def summary(self) -> RepairSummary:
        return RepairSummary.of(self.mode, self.plan.unit_range, self.records)


def p50_timer(runtime: str) -> Callable[[Path], float]:
    """p50 of one thread's runs: what a repair costs, stated in the card."""
    import numpy as np

    from edgeexport.measure.profile import time_litert, time_onnx
    time_fn = time_onnx if runtime == "onnxruntime" else time_litert
    return lambda path: float(np.percentile(time_fn(path, 1, TIMING_RUNS, TIMING_WARMUP), 50))
