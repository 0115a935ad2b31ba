"""The export's int8 step for both formats: the default precision plan, validation, repair
when the tolerance is missed, and the per-layer error map of the shipped files.

One repair order serves both formats: it comes from the int8 ONNX error map of the default
plan (local SQNR per layer), computed once, when a repair first needs it. The card's map has
no latency column (a measurement would make card.json differ run to run); quant-report and
report.html join the per-layer latency of profile.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgeexport.precision_plan import PrecisionPlan
from edgeexport.quant_error import ErrorMap, build_error_map
from edgeexport.records import Analysis
from edgeexport.repair import (RepairRecord, RepairSummary, p50_timer, quantize_validated,
                               repair_order)
from edgeexport.validate import Comparison


class Int8Stage:
    def __init__(self, model, analysis: Analysis, staging: Path, calibration: np.ndarray,
                 min_cosine: float, repair: bool) -> None:
        self.plan = PrecisionPlan.defaults(model)
        self.analysis = analysis.to_json()
        self.staging = staging
        self.calibration = calibration
        self.min_cosine = min_cosine
        self.repair = repair
        self.records: list[RepairRecord] = []
        self._order: list[str] | None = None

    def onnx(self, quantize: Callable[[PrecisionPlan], Path],
             evaluate: Callable[[Path], Comparison]
             ) -> tuple[Path, Comparison, PrecisionPlan]:
        return self._validated("onnx", "onnxruntime", quantize, evaluate)

    def tflite(self, quantize: Callable[[PrecisionPlan], Path],
               evaluate: Callable[[Path], Comparison]
               ) -> tuple[Path, Comparison, PrecisionPlan]:
        return self._validated("tflite", "litert", quantize, evaluate)

    def _validated(self, fmt, runtime, quantize, evaluate):
        """(file, its comparison, the precision plan it was quantized with)."""
        path, result, record = quantize_validated(
            fmt, self.plan, quantize, evaluate, self.min_cosine, self.repair, self._repair_order,
            p50_timer(runtime))
        if record is None:
            return path, result, self.plan
        self.records.append(record)
        return path, result, self.plan.with_keep(record.kept)

    def _repair_order(self) -> list[str]:
        """From the error map of the default plan's int8 ONNX. The ONNX step runs first, and
        this is first called before any repair attempt, so ``model.int8.onnx`` in staging is
        still the default plan's."""
        if self._order is None:
            plain = self.staging / "model.int8.onnx"
            emap = build_error_map(self.analysis["layers"],
                                   (self.staging / "model.fp32.onnx", plain), None,
                                   self.calibration)
            self._order = repair_order(emap, self.analysis["layers"])
        return self._order

    def error_map(self, fp32_onnx: Path, int8_onnx: Path, with_tflite: bool) -> ErrorMap:
        """The map of the files being shipped."""
        tflite = ((self.staging / "model.fp32.tflite", self.staging / "model.int8.tflite")
                  if with_tflite else None)
        return build_error_map(self.analysis["layers"], (fp32_onnx, int8_onnx), tflite,
                               self.calibration)

    def summary(self) -> RepairSummary:
        return RepairSummary.of(self.repair, self.plan.unit_range, self.records)
