"""Per-layer latency cost model for targets not attached, and its calibration.

Each layer's time is linear in four counts from the static analysis (dense MACs, depthwise
MACs, bytes moved, kernels launched), with per-target, per-precision coefficients fitted by
non-negative least squares on relative error to whole-network measurements. Fitting on totals
and predicting per layer works because the model is additive over layers.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeexport.errors import UserError
from edgeexport.models import family_of_alias
from edgeexport.records import COMPUTE_OPS, DENSE_OPS, ELEMENTWISE_OPS, LayerCost
from edgeexport.targets import LatencyCoefficients

KERNEL_OPS = COMPUTE_OPS + ELEMENTWISE_OPS
REQUIRED_COLUMNS = ("model_family", "width_multiplier", "resolution", "quantized",
                    "mean_latency_ms")


def layer_features(layer: LayerCost, precision: str) -> np.ndarray:
    """[dense GMACs, depthwise GMACs, MB moved, kernels]."""
    op = layer.op
    moved = (getattr(layer, f"weight_bytes_{precision}")
             + getattr(layer, f"activation_bytes_{precision}"))
    return np.array([layer.macs / 1e9 if op in DENSE_OPS else 0.0,
                     layer.macs / 1e9 if op == "depthwise" else 0.0,
                     moved / 1e6, 1.0 if op in KERNEL_OPS else 0.0])


def layer_ms(layer: LayerCost, c: LatencyCoefficients, precision: str) -> float:
    f = layer_features(layer, precision)
    return float(f @ np.array([c.ms_per_gmac_dense, c.ms_per_gmac_depthwise, c.ms_per_mb,
                               c.us_per_kernel / 1e3]))


def network_features(layers: list[LayerCost], precision: str) -> np.ndarray:
    return np.sum([layer_features(x, precision) for x in layers], axis=0)


@dataclass
class Measurement:
    family: str
    alpha: float
    resolution: int
    precision: str
    latency_ms: float
    row: int


def read_measurements(path: Path) -> list[Measurement]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read it as CSV ({e.__class__.__name__})") from None
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            fam = family_of_alias(r["model_family"])
            quantized = r["quantized"].strip().lower()
            if quantized not in ("true", "false"):
                raise ValueError("quantized must be true or false")
            m = Measurement(fam, float(r["width_multiplier"]), int(r["resolution"]),
                            "int8" if quantized == "true" else "fp32",
                            float(r["mean_latency_ms"]), i)
            if not m.latency_ms > 0:
                raise ValueError("mean_latency_ms must be > 0")
        except (ValueError, TypeError) as e:
            raise UserError(f"{path}: row {i}: {e}") from None
        out.append(m)
    if not out:
        raise UserError(f"{path}: no measurement rows")
    return out


def _nnls_relative(features: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error: min ‖(Xw − y) / y‖, w ≥ 0."""
    from scipy.optimize import nnls
    X = np.hstack([features, np.ones((len(features), 1))]) / measured[:, None]
    w, _ = nnls(X, np.ones(len(measured)))
    return w


def to_coefficients(w: np.ndarray) -> LatencyCoefficients:
    return LatencyCoefficients(float(w[0]), float(w[1]), float(w[2]), float(w[3] * 1e3),
                               float(w[4]))


def predict(features: np.ndarray, c: LatencyCoefficients) -> float:
    return float(features @ np.array([c.ms_per_gmac_dense, c.ms_per_gmac_depthwise,
                                      c.ms_per_mb, c.us_per_kernel / 1e3]) + c.fixed_ms)


@dataclass
class Fit:
    precision: str
    coefficients: LatencyCoefficients
    rows: list[dict]          # per measurement: measured, fitted, leave-one-out prediction

    @property
    def loo_median_abs_error(self) -> float:
        return float(np.median([abs(r["loo_error"]) for r in self.rows]))

    @property
    def loo_max_abs_error(self) -> float:
        return float(np.max([abs(r["loo_error"]) for r in self.rows]))

    def to_json(self) -> dict:
        return {"precision": self.precision, "coefficients": asdict(self.coefficients),
                "loo_median_abs_error": self.loo_median_abs_error,
                "loo_max_abs_error": self.loo_max_abs_error, "rows": self.rows}


def fit(measurements: list[Measurement], features: list[np.ndarray]) -> list[Fit]:
    fits = []
    for precision in ("fp32", "int8"):
        idx = [i for i, m in enumerate(measurements) if m.precision == precision]
        if not idx:
            continue
        if len(idx) < 3:
            raise UserError(f"{precision}: {len(idx)} measurement(s); need ≥ 3 to fit and "
                            "cross-validate")
        X = np.array([features[i] for i in idx])
        y = np.array([measurements[i].latency_ms for i in idx])
        coeffs = to_coefficients(_nnls_relative(X, y))
        rows = []
        for k, i in enumerate(idx):
            keep = [j for j in range(len(idx)) if j != k]
            loo = to_coefficients(_nnls_relative(X[keep], y[keep]))
            m = measurements[i]
            fitted, held_out = predict(X[k], coeffs), predict(X[k], loo)
            rows.append({"row": m.row, "variant": f"{m.family}_{m.alpha:g}_{m.resolution}",
                         "precision": precision, "measured_ms": m.latency_ms,
                         "fitted_ms": fitted, "loo_predicted_ms": held_out,
                         "loo_error": (held_out - m.latency_ms) / m.latency_ms})
        fits.append(Fit(precision, coeffs, rows))
    return fits


def toml_block(fits: list[Fit], runtime: str, source: str) -> str:
    """The [latency_model] tables for a target file."""
    errors = "; ".join(f"{f.precision}: leave-one-out median |error| "
                       f"{100 * f.loo_median_abs_error:.1f}%, max {100 * f.loo_max_abs_error:.1f}%"
                       f" over {len(f.rows)} networks" for f in fits)
    lines = ["[latency_model]", f'runtime = "{runtime}"', f'source = "{source}"',
             f'known_error = "{errors}"']
    for f in fits:
        lines += ["", f"[latency_model.{f.precision}]"]
        lines += [f"{k} = {v:.6g}" for k, v in asdict(f.coefficients).items()]
    return "\n".join(lines) + "\n"
