"""The int8 records card.json carries: the per-layer error map (``int8_error_map``) and how
the shipped int8 files were made (``int8_repair``). Written by edgeexport.int8, read by the
reports, quant-report and the tests."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

WORST = 5  # layers highlighted as the worst
METRIC = ("SQNR dB: mean over images of 20·log10(‖fp32‖/‖int8 − fp32‖) of the layer's "
          "output tensor (onnxruntime qdq_loss_debug's SQNR), on calibration images evenly "
          "sampled; the local column weighs channel c by the norm g_c of the next Conv/Gemm's "
          "folded weights reading it: 10·log10(Σ g_c²‖fp32_c‖² / Σ g_c²‖noise_c‖²)")


def _round(v):
    """3 decimals (finite values); ±inf (a tensor int8 holds exactly) as None."""
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), 3)


@dataclass
class LayerError:
    layer: str
    op: str
    onnx_local_db: float | None = None
    onnx_db: float | None = None
    tflite_db: float | None = None
    latency_ms: float | None = None


@dataclass
class ErrorMap:
    """card.json → int8_error_map (a field of artifacts.Card)."""
    layers: list[LayerError]
    images: int
    worst: list[str] = field(default_factory=list)  # lowest local SQNR first
    metric: str = METRIC
    latency_source: str | None = None

    @classmethod
    def of(cls, layers: list[LayerError], images: int) -> "ErrorMap":
        for row in layers:
            for name in ("onnx_local_db", "onnx_db", "tflite_db"):
                setattr(row, name, _round(getattr(row, name)))
        scored = sorted((x for x in layers if x.onnx_local_db is not None),
                        key=lambda x: (x.onnx_local_db, x.layer))
        return cls(layers, images, [x.layer for x in scored[:WORST]])

    def with_latency(self, per_layer_ms: dict[str, float], source: str) -> "ErrorMap":
        for row in self.layers:
            row.latency_ms = per_layer_ms.get(row.layer)
        self.latency_source = source
        return self


FULL_INT8 = "full int8"
MIXED = "mixed: int8 weights, 16-bit activations for the kept layers' outputs"


@dataclass
class Attempt:
    """One quantization tried: its range method, how many layers it kept, its cosine and top-1
    agreement, and the best cosine of any attempt up to it (never decreasing)."""
    ranges: str
    kept: int
    cosine_mean: float
    top1_agreement: float
    best_so_far: float
    in_float: int = 0  # layers left out of quantization (the ladder's float rungs)
    weight_rounding: str = "nearest"  # or "GPTQ" (edgeexport.int8.weight_rounding)


@dataclass
class RepairRecord:
    """What one format's int8 step did, for card.json → int8_repair: which range setting and
    how many kept layers were shipped, and every attempt on the way."""
    format: str
    ranges: str
    kept: list[str]
    precision: str
    cosine_before: float
    cosine_after: float
    attempts: list[Attempt]
    rung: int = 0  # the ladder's n that held (0: a range method held, nothing kept)
    every_layer: bool = False  # the last rung: every activation 16-bit, not only ``kept``
    wide_io: bool = False  # TFLite: input and output int16 too (the int8 interface capped it)
    float_layers: list[str] = field(default_factory=list)  # left out of quantization
    weight_rounding: str = "nearest"  # of the shipped file's int8 conv weights
    float_output: bool = False  # the app file: its output widened to float32
    budget: str = ("range methods in turn (each with the weights rounded to nearest, then "
                   "by GPTQ), then 1, 2, 4, … layers kept at 16-bit activations, up to every "
                   "layer")

    @property
    def mixed(self) -> bool:
        return bool(self.kept)


@dataclass
class RepairCost:
    """What one format's mixed file costs: p50 latency of the last full-int8 file (before)
    and of the shipped one (after), measured on the build host (``note``: how). A measurement,
    so it is written beside card.json (artifacts.RepairCosts), never into it: the same inputs
    give the same card bytes."""
    format: str
    before_ms: float
    after_ms: float
    note: str


@dataclass
class RepairSummary:
    """card.json → int8_repair (a field of artifacts.Card): how the shipped int8 files were
    made. ``precision``: "full int8" when no format kept a layer at 16 bits, else "mixed"
    (app developers on integer-only NPUs need to know); ``formats`` empty: the first range
    method held in every format, or int8 was not enforced."""
    enabled: bool
    kept_layers: int  # the most any format kept
    hard_sigmoid_range_0_1: list[str]
    formats: list[RepairRecord] = field(default_factory=list)
    mode: str = "repair"
    precision: str = FULL_INT8

    @classmethod
    def of(cls, mode: str, unit_range, records: list[RepairRecord]) -> "RepairSummary":
        kept = max((len(r.kept) for r in records), default=0)
        return cls(mode == "repair", kept, list(unit_range), list(records), mode,
                   "mixed" if kept else FULL_INT8)

